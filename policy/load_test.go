package policy

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// testVerifier is a valid SCRAM verifier (for the password "secret").
var testVerifier = func() string {
	v, err := NewVerifier("secret", []byte("policy-test-salt"), 4096)
	if err != nil {
		panic(err)
	}
	return v.String()
}()

// basePolicy is valid; each broken case edits it. Line numbers in the cases
// refer to this text.
var basePolicy = `version: 1
listen: 127.0.0.1:6432
upstream:
  dsn_env: DSN
ledger:
  backend: bolt
  path: ledger.db
defaults:
  epsilon: 0.5
  max_epsilon: 1
analysts:
  - name: alice
    password: "` + testVerifier + `"
    budget: {epsilon: 5, delta: 1e-6}
tables:
  - name: patients
    privacy: unit
    unit: patient_id
    max_rows_per_unit: 5
    columns:
      - {name: patient_id, type: integer, hidden: true}
      - {name: age, type: integer, bounds: [0, 100]}
      - {name: sex, type: text, domain: [F, M]}
      - {name: visit_date, type: date, range: ['2024-01-01', '2026-01-01']}
`

var testEnv = Env{
	Getenv: func(name string) string {
		if name == "DSN" {
			return "host=db dbname=app user=reader"
		}
		return ""
	},
	ReadFile: func(name string) ([]byte, error) {
		if name == "dsn.txt" {
			return []byte("host=db dbname=app\n"), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	},
}

// edit replaces old by new in basePolicy, failing when old is absent.
func edit(t *testing.T, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("base policy lacks %q", pairs[i])
		}
		text = strings.Replace(text, pairs[i], pairs[i+1], 1)
	}
	return text
}

func TestBasePolicyIsValid(t *testing.T) {
	p, errs, warns := Check("p.yaml", []byte(basePolicy), testEnv)
	if len(errs) > 0 || len(warns) > 0 {
		t.Fatalf("errors:\n%v\nwarnings:\n%v", errs, warns)
	}
	if p.Table("", "patients").Column("visit_date").Range == nil {
		t.Error("range not decoded")
	}
}

func TestCacheHitAudit(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"", CacheHitAuditSync},
		{"\n  cache_hit_audit: sync", CacheHitAuditSync},
		{"\n  cache_hit_audit: batched", CacheHitAuditBatched},
	} {
		p, errs, _ := Check("p.yaml", []byte(edit(t, basePolicy, "path: ledger.db", "path: ledger.db"+tc.line)), testEnv)
		if len(errs) > 0 || p.Ledger.CacheHitAudit != tc.want {
			t.Errorf("%q: got %q (%v), want %q", tc.line, p.Ledger.CacheHitAudit, errs, tc.want)
		}
	}
}

// TestBrokenPolicies lists broken policies with every problem they must
// report: position (line:column in the edited text) and exact message.
func TestBrokenPolicies(t *testing.T) {
	for _, tc := range brokenCases {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if text == "" {
				text = edit(t, basePolicy, tc.edits...)
			}
			p, errs, _ := Check("p.yaml", []byte(text), testEnv)
			if p != nil {
				t.Fatalf("accepted a broken policy")
			}
			var got []string
			for _, e := range errs {
				got = append(got, strings.TrimPrefix(e.String(), "p.yaml:"))
			}
			if os.Getenv("PRINT") != "" {
				t.Logf("%#v", got)
				return
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			// The error form is the same list.
			_, err := Parse("p.yaml", []byte(text), testEnv)
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != len(errs) {
				t.Errorf("Parse returned %v", err)
			}
		})
	}
}

type brokenCase struct {
	name  string
	text  string   // whole file, or
	edits []string // old, new pairs applied to basePolicy
	want  []string // "line:col: message"
}

var brokenCases = []brokenCase{
	{name: "unclosed flow mapping", edits: []string{"delta: 1e-6}", "delta: 1e-6"},
		want: []string{"15:1: YAML syntax: ',' or '}' must be specified"}},
	{name: "tab indentation", edits: []string{"  path: ledger.db", "\tpath: ledger.db"},
		want: []string{"7:1: YAML syntax: found character '\t' that cannot start any token"}},
	{name: "empty file", text: "# nothing\n",
		want: []string{"1:1: the policy file is empty; start it with `version: 1` and see docs/policy.md"}},
	{name: "two documents", edits: []string{"listen: 127.0.0.1:6432\n", "listen: 127.0.0.1:6432\n---\nlisten: x\n"},
		want: []string{"1:1: the policy needs an `upstream:` section with dsn_env or dsn_file naming the database dpproxy fronts", "1:1: the policy needs a `ledger:` section, e.g. `ledger: {backend: bolt, path: /var/lib/dpproxy/ledger.db}`", "1:1: no analysts: add an `analysts:` list with at least one name, password and budget", "4:1: the policy must be one YAML document; remove the second one (after ---)"}},
	{name: "no version", edits: []string{"version: 1\n", ""},
		want: []string{"1:1: the policy needs `version: 1` at the top"}},
	{name: "version 2", edits: []string{"version: 1", "version: 2"},
		want: []string{"1:10: version 2 is unknown: this dpproxy reads `version: 1`"}},
	{name: "version not a number", edits: []string{"version: 1", "version: one"},
		want: []string{"1:10: version must be a whole number such as 1, not \"one\""}},
	{name: "unknown top-level key", edits: []string{"analysts:", "analyst:"},
		want: []string{"1:1: no analysts: add an `analysts:` list with at least one name, password and budget", "11:1: unknown key \"analyst\" in the policy; did you mean \"analysts\"?"}},
	{name: "listen without port", edits: []string{"listen: 127.0.0.1:6432", "listen: 6432"},
		want: []string{"2:9: listen must be host:port such as 127.0.0.1:6432, not \"6432\""}},
	{name: "no upstream", edits: []string{"upstream:\n  dsn_env: DSN\n", ""},
		want: []string{"1:1: the policy needs an `upstream:` section with dsn_env or dsn_file naming the database dpproxy fronts"}},
	{name: "inline dsn password", edits: []string{"dsn_env: DSN", `dsn: "host=db user=reader password=hunter2"`},
		want: []string{"4:8: the upstream password must not be written inline: use dsn_env: VAR or dsn_file: PATH"}},
	{name: "inline URL password", edits: []string{"dsn_env: DSN", `dsn: "postgres://reader:hunter2@db/app"`},
		want: []string{"4:8: the upstream password must not be written inline: use dsn_env: VAR or dsn_file: PATH"}},
	{name: "dsn twice", edits: []string{"dsn_env: DSN", "dsn_env: DSN\n  dsn_file: dsn.txt"},
		want: []string{"5:3: give only one of dsn, dsn_env and dsn_file (found dsn_env and dsn_file)"}},
	{name: "dsn_env unset", edits: []string{"dsn_env: DSN", "dsn_env: NOPE"},
		want: []string{"4:12: environment variable NOPE is empty or unset; export it with the upstream connection string"}},
	{name: "dsn_file unreadable", edits: []string{"dsn_env: DSN", "dsn_file: missing.dsn"},
		want: []string{"4:13: cannot read dsn_file missing.dsn: file does not exist"}},
	{name: "statement_timeout without unit", edits: []string{"dsn_env: DSN", "dsn_env: DSN\n  statement_timeout: 30"},
		want: []string{"5:22: statement_timeout must be a duration such as 30s (units ms, s, m, h), not \"30\""}},
	{name: "statement_timeout negative", edits: []string{"dsn_env: DSN", "dsn_env: DSN\n  statement_timeout: -1s"},
		want: []string{"5:22: statement_timeout must be a positive duration such as 30s or 2m"}},
	{name: "max_conns zero", edits: []string{"dsn_env: DSN", "dsn_env: DSN\n  max_conns: 0"},
		want: []string{"5:14: max_conns must be between 1 and 10000, e.g. 16"}},
	{name: "max_conns fraction", edits: []string{"dsn_env: DSN", "dsn_env: DSN\n  max_conns: 1.5"},
		want: []string{"5:14: max_conns must be a whole number such as 16, not \"1.5\""}},
	{name: "unknown cache_hit_audit", edits: []string{"path: ledger.db", "path: ledger.db\n  cache_hit_audit: async"},
		want: []string{"8:20: unknown cache_hit_audit \"async\": write sync (each cache hit is written before it is answered) or batched (hits are written in batches just after)"}},
	{name: "unknown ledger backend", edits: []string{"backend: bolt", "backend: sqlite"},
		want: []string{"6:12: unknown ledger backend \"sqlite\": write bolt (one node) or redis (several nodes)"}},
	{name: "bolt without path", edits: []string{"  path: ledger.db\n", ""},
		want: []string{"6:3: the bolt ledger needs a path, e.g. `path: /var/lib/dpproxy/ledger.db`"}},
	{name: "redis without addrs", edits: []string{"backend: bolt\n  path: ledger.db", "backend: redis\n  redis: {master_name: m}"},
		want: []string{"7:10: the redis ledger needs `addrs: [host:port, ...]`"}},
	{name: "redis inline password", edits: []string{"backend: bolt\n  path: ledger.db", "backend: redis\n  redis:\n    addrs: [r1:6379]\n    password: hunter2"},
		want: []string{"9:5: the redis password must not be written inline: use password_env: VAR or password_file: PATH"}},
	{name: "redis address without port", edits: []string{"backend: bolt\n  path: ledger.db", "backend: redis\n  redis:\n    addrs: [r1:6379, r2]"},
		want: []string{"8:22: each redis address must be host:port such as redis-1:6379, not \"r2\""}},
	{name: "negative default epsilon", edits: []string{"epsilon: 0.5", "epsilon: -1"},
		want: []string{"9:12: epsilon must be a positive finite number, e.g. 0.1"}},
	{name: "default epsilon not a number", edits: []string{"epsilon: 0.5", "epsilon: half"},
		want: []string{"9:12: epsilon must be a number such as 0.1, not \"half\""}},
	{name: "default epsilon above cap", edits: []string{"epsilon: 0.5", "epsilon: 2"},
		want: []string{"9:12: the default epsilon 2 exceeds max_epsilon 1; lower epsilon or raise max_epsilon"}},
	{name: "unknown accounting", edits: []string{"max_epsilon: 1", "max_epsilon: 1\n  accounting: advanced"},
		want: []string{"11:15: unknown accounting \"advanced\": write basic (epsilons add up) or rdp (Rényi-DP, tighter over many queries)"}},
	{name: "cache_window in words", edits: []string{"max_epsilon: 1", "max_epsilon: 1\n  cache_window: 10 minutes"},
		want: []string{"11:17: cache_window must be a duration such as 10m (units ms, s, m, h), not \"10 minutes\""}},
	{name: "default delta above 1", edits: []string{"max_epsilon: 1", "max_epsilon: 1\n  delta: 1.5"},
		want: []string{"11:10: delta must be in [0, 1), typically 1e-7 or less"}},
	{name: "misspelt defaults key", edits: []string{"epsilon: 0.5", "epsilom: 0.5"},
		want: []string{"9:3: unknown key \"epsilom\" in defaults; did you mean \"epsilon\"?"}},
	{name: "empty analysts", edits: []string{"analysts:\n  - name: alice\n    password: \"" + testVerifier + "\"\n    budget: {epsilon: 5, delta: 1e-6}\n", "analysts: []\n"},
		want: []string{"11:1: no analysts: add an `analysts:` list with at least one name, password and budget"}},
	{name: "analyst without name", edits: []string{"  - name: alice\n    password:", "  - password:"},
		want: []string{"12:5: analyst needs a name, e.g. `name: alice`"}},
	{name: "analyst twice", edits: []string{"tables:\n", "  - name: alice\n    password: \"" + testVerifier + "\"\n    budget: {epsilon: 1}\ntables:\n"},
		want: []string{"15:11: analyst \"alice\" is declared twice; keep one entry"}},
	{name: "plain password", edits: []string{`password: "` + testVerifier + `"`, "password: hunter2"},
		want: []string{"13:15: password must be a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>), never a plain password; generate one with `dpproxy passwd`"}},
	{name: "analyst without budget", edits: []string{"    budget: {epsilon: 5, delta: 1e-6}\n", ""},
		want: []string{"12:5: analyst \"alice\" needs `budget: {epsilon: N}`"}},
	{name: "zero budget", edits: []string{"budget: {epsilon: 5,", "budget: {epsilon: 0,"},
		want: []string{"14:23: budget epsilon must be a positive finite number, e.g. 5"}},
	{name: "weekly budget period", edits: []string{"delta: 1e-6}", "delta: 1e-6, period: weekly}"},
		want: []string{"14:47: unknown budget period \"weekly\": write lifetime, daily, monthly or yearly"}},
	{name: "negative budget delta", edits: []string{"delta: 1e-6}", "delta: -1}"},
		want: []string{"14:33: budget delta must be in [0, 1), typically 1e-6 or less"}},
	{name: "max_delta above budget delta", edits: []string{"delta: 1e-6}", "delta: 1e-6}\n    max_delta: 1e-5"},
		want: []string{"15:16: max_delta 1e-05 exceeds alice's budget delta 1e-06; raise `budget: {delta: ...}` or lower max_delta"}},
	{name: "analyst table unknown", edits: []string{"delta: 1e-6}", "delta: 1e-6}\n    tables: [patient]"},
		want: []string{"15:14: analyst \"alice\" lists table patient, which the policy does not declare; did you mean \"patients\"?"}},
	{name: "team member unknown", edits: []string{"tables:\n", "teams:\n  - name: research\n    members: [alcie]\n    budget: {epsilon: 3}\ntables:\n"},
		want: []string{"17:15: team \"research\" lists analyst \"alcie\", who is not declared; did you mean \"alice\"?"}},
	{name: "analyst in two teams", edits: []string{"tables:\n", "teams:\n  - {name: a, members: [alice], budget: {epsilon: 3}}\n  - {name: b, members: [alice], budget: {epsilon: 3}}\ntables:\n"},
		want: []string{"17:25: analyst \"alice\" is already in team \"a\"; an analyst belongs to at most one team"}},
	{name: "dataset of unknown table", edits: []string{"tables:\n", "datasets:\n  - {name: clinical, tables: [visits], budget: {epsilon: 3}}\ntables:\n"},
		want: []string{"16:31: dataset \"clinical\" lists table visits, which the policy does not declare; declare it under tables: or remove it"}},
	{name: "team without budget", edits: []string{"tables:\n", "teams:\n  - {name: a, members: [alice]}\ntables:\n"},
		want: []string{"16:5: team \"a\" needs `budget: {epsilon: N}`"}},
	{name: "table without privacy", edits: []string{"    privacy: unit\n    unit: patient_id\n    max_rows_per_unit: 5\n", ""},
		want: []string{"16:5: table \"patients\" needs `privacy: row`, `privacy: unit` or `privacy: public`"}},
	{name: "unknown privacy", edits: []string{"privacy: unit", "privacy: private"},
		want: []string{"17:14: unknown privacy \"private\": write row, unit or public"}},
	{name: "unit table without unit", edits: []string{"    unit: patient_id\n", ""},
		want: []string{"16:5: a `privacy: unit` table needs `unit: <column>` naming the privacy unit, e.g. patient_id"}},
	{name: "unit column not declared", edits: []string{"unit: patient_id", "unit: patientid"},
		want: []string{"18:11: privacy unit column \"patientid\" is not among the table's columns; did you mean \"patient_id\"?"}},
	{name: "zero max_rows_per_unit", edits: []string{"max_rows_per_unit: 5", "max_rows_per_unit: 0"},
		want: []string{"19:24: max_rows_per_unit must be a whole number between 1 and 1000000, e.g. 10"}},
	{name: "unit on a row table", edits: []string{"privacy: unit", "privacy: row"},
		want: []string{"18:5: unit is only for `privacy: unit` tables; table \"patients\" has privacy row", "19:5: max_rows_per_unit is only for `privacy: unit` tables; table \"patients\" has privacy row"}},
	{name: "schema in the table name", edits: []string{"- name: patients", "- name: public.patients"},
		want: []string{"16:11: write the schema apart: `schema: public` and `name: patients`"}},
	{name: "table twice", text: basePolicy + "  - {name: patients, privacy: public}\n",
		want: []string{"25:12: table public.patients is declared twice; keep one entry"}},
	{name: "unknown column type", edits: []string{"name: sex, type: text", "name: sex, type: string"},
		want: []string{"23:27: unknown column type \"string\": write integer, bigint, numeric, double precision, text, date, timestamp, timestamptz, boolean or uuid"}},
	{name: "column without type", edits: []string{"name: sex, type: text,", "name: sex,"},
		want: []string{"23:9: column \"sex\" needs a type: integer, bigint, numeric, double precision, text, date, timestamp, timestamptz, boolean or uuid"}},
	{name: "reversed bounds", edits: []string{"bounds: [0, 100]", "bounds: [100, 0]"},
		want: []string{"22:44: the lower bound 100 is above the upper bound 0; write [0, 100]"}},
	{name: "one bound", edits: []string{"bounds: [0, 100]", "bounds: [100]"},
		want: []string{"22:44: bounds must be two numbers [lower, upper], e.g. [0, 120]; found 1"}},
	{name: "bounds on text", edits: []string{"domain: [F, M]", "bounds: [0, 1]"},
		want: []string{"23:41: bounds apply to numeric columns; \"sex\" is text (use domain or range for group keys)"}},
	{name: "bounds still TODO", edits: []string{"bounds: [0, 100]", "bounds: TODO"},
		want: []string{"22:44: bounds of column \"age\" are still TODO: write [lower, upper] from what the column can hold (not from the data), e.g. [0, 120]"}},
	{name: "fractional integer bounds", edits: []string{"bounds: [0, 100]", "bounds: [0, 99.5]"},
		want: []string{"22:44: bounds of integer column \"age\" must be whole numbers, e.g. [0, 100]"}},
	{name: "negative granularity", edits: []string{"bounds: [0, 100]", "bounds: [0, 100], granularity: -1"},
		want: []string{"22:67: granularity must be a positive number such as 1 or 0.01"}},
	{name: "integer domain with text", edits: []string{"bounds: [0, 100]", "domain: [1, two]"},
		want: []string{"22:48: domain value \"two\" of integer column \"age\" is not a whole number"}},
	{name: "domain value twice", edits: []string{"domain: [F, M]", "domain: [F, M, F]"},
		want: []string{"23:48: domain value \"F\" of \"sex\" is listed twice"}},
	{name: "empty domain", edits: []string{"domain: [F, M]", "domain: []"},
		want: []string{"23:41: domain of \"sex\" is empty; list every value the column can take, e.g. [F, M], or leave domain out"}},
	{name: "range on an integer", edits: []string{"bounds: [0, 100]", "range: [0, 100]"},
		want: []string{"22:36: range applies to date and timestamp columns; \"age\" is integer (use bounds for numbers)"}},
	{name: "range not a date", edits: []string{"'2026-01-01'", "'next year'"},
		want: []string{"24:62: \"next year\" is not a date such as '2024-01-01' or a timestamp such as '2024-01-01T00:00:00Z'"}},
	{name: "reversed range", edits: []string{"['2024-01-01', '2026-01-01']", "['2026-01-01', '2024-01-01']"},
		want: []string{"24:47: range must start before it ends: [from, until), e.g. ['2024-01-01', '2026-01-01']"}},
	{name: "hidden yes", edits: []string{"hidden: true", "hidden: yes"},
		want: []string{"21:51: hidden must be true or false, not \"yes\""}},
	{name: "tls require without files", edits: []string{"listen: 127.0.0.1:6432\n", "listen: 127.0.0.1:6432\ntls:\n  mode: require\n"},
		want: []string{"4:3: tls mode require needs cert_file: PATH (a PEM certificate chain)", "4:3: tls mode require needs key_file: PATH (the PEM private key of cert_file)"}},
	{name: "unknown tls mode", edits: []string{"listen: 127.0.0.1:6432\n", "listen: 127.0.0.1:6432\ntls: {mode: on}\n"},
		want: []string{"3:13: unknown tls mode \"on\": write disable, prefer or require"}},
	{name: "trust on a network address", edits: []string{"listen: 127.0.0.1:6432\n", "listen: 0.0.0.0:6432\ntrust_local_analysts: true\n"},
		want: []string{"3:23: trust_local_analysts lets analysts in without a password, so listen must be a loopback address such as 127.0.0.1:6432, not 0.0.0.0:6432; remove trust_local_analysts and give every analyst a password"}},
	{name: "undefined alias", edits: []string{"budget: {epsilon: 5, delta: 1e-6}", "budget: *b"},
		want: []string{"14:13: alias *b names no anchor; define &b before using it"}},
	{name: "columns not a list", edits: []string{"    columns:\n", "    columns: age\n    cols:\n"},
		want: []string{"20:14: columns must be a list such as [{name: age, type: integer, bounds: [0, 120]}], not \"age\"", "21:5: unknown key \"cols\" in a table; valid keys: columns, max_groups_per_unit, max_rows_per_unit, name, privacy, schema, shadow, unit"}},
	{name: "two tables sharing a shadow copy", edits: []string{"  - name: patients\n    privacy: unit\n",
		"  - {name: c, schema: a__b, privacy: unit, unit: u, max_rows_per_unit: 1, shadow: true, columns: [{name: u, type: integer}]}\n" +
			"  - {name: b__c, schema: a, privacy: unit, unit: u, max_rows_per_unit: 1, shadow: true, columns: [{name: u, type: integer}]}\n" +
			"  - name: patients\n    privacy: unit\n"},
		want: []string{"17:83: tables a__b.c and a.b__c would share the shadow copy dpproxy_shadow.a__b__c; keep shadow: true on one of them"}},
	{name: "a shadow copy name beyond 63 bytes", edits: []string{"  - name: patients\n    privacy: unit\n",
		"  - {name: " + strings.Repeat("t", 52) + ", privacy: unit, unit: u, max_rows_per_unit: 1, shadow: true, columns: [{name: u, type: integer}]}\n" +
			"  - name: patients\n    privacy: unit\n"},
		want: []string{"16:120: the shadow copy of public.tttttttttttttttttttttttttttttttttttttttttttttttttttt would be named public__tttttttttttttttttttttttttttttttttttttttttttttttttttt (65 bytes with the refresh's suffix __new), beyond PostgreSQL's 63; shorten the schema or table name, or drop shadow: true"}},
	{name: "many problems at once", edits: []string{"epsilon: 0.5", "epsilon: -1", "privacy: unit", "privacy: secret", "bounds: [0, 100]", "bounds: [0]"},
		want: []string{"9:12: epsilon must be a positive finite number, e.g. 0.1", "17:14: unknown privacy \"secret\": write row, unit or public", "22:44: bounds must be two numbers [lower, upper], e.g. [0, 120]; found 1"}},
}

func TestWithUniqueUnits(t *testing.T) {
	p, errs, _ := Check("p.yaml", []byte(basePolicy), testEnv)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	patients := p.Table("", "patients")
	marked := p.WithUniqueUnits(map[string]bool{"public.patients": true, "public.nosuch": true})
	if !marked.UnitUnique(patients) || marked.CatalogTag() != "public.patients" {
		t.Errorf("marked: unique %v, tag %q", marked.UnitUnique(patients), marked.CatalogTag())
	}
	if p.UnitUnique(patients) || p.CatalogTag() != "" {
		t.Error("WithUniqueUnits changed the policy it was called on")
	}
	if cleared := marked.WithUniqueUnits(nil); cleared.UnitUnique(patients) || cleared.CatalogTag() != "" {
		t.Error("WithUniqueUnits(nil) kept a mark")
	}
}
