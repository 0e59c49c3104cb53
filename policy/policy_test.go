package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fullPolicy uses every key.
var fullPolicy = `version: 1
listen: 127.0.0.1:7432
admin: 127.0.0.1:7433
tls:
  mode: require
  cert_file: server.crt
  key_file: server.key
upstream:
  dsn_file: dsn.txt
  statement_timeout: 2m
  max_conns: 4
ledger:
  backend: redis
  redis:
    addrs: [r1:6379, r2:6379]
    master_name: mymaster
    username: dpproxy
    password_env: REDIS_PW
defaults:
  epsilon: 0.2
  max_epsilon: 0.8
  delta: 1e-8
  accounting: rdp
  cache_window: 10m
analysts:
  - &alice
    name: alice
    password: "` + testVerifier + `"
    budget: {epsilon: 0.8, delta: 1e-6, period: monthly}
    max_epsilon: 0.5
    max_delta: 1e-7
    tables: [visits, public.patients]
  - <<: *alice
    name: bob
    tables: [patients]
teams:
  - name: research
    members: [alice, bob]
    budget: {epsilon: 5, period: yearly}
datasets:
  - name: clinical
    tables: [patients, visits]
    budget: {epsilon: 8, delta: 1e-6}
tables:
  - name: patients
    privacy: row
    columns:
      - {name: patient_id, type: int4, hidden: true}
      - {name: sex, type: text, domain: [F, M]}
      - {name: income, type: numeric, bounds: [0, 250000], granularity: 100}
  - name: visits
    schema: public
    privacy: unit
    unit: patient_id
    max_rows_per_unit: 10
    max_groups_per_unit: 3
    columns:
      - {name: patient_id, type: integer}
      - {name: visited, type: date, range: ['2024-01-01', '2026-01-01']}
      - {name: cost, type: double precision, bounds: [0, 5000]}
      - {name: urgent, type: boolean, domain: [true, false]}
  - {name: icd10, schema: ref, privacy: public}
`

func writeCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dpproxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

func TestFullPolicy(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "dsn.txt"), []byte("host=db dbname=app\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(fullPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_PW", "s3cret")
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
	if p.Listen != "127.0.0.1:7432" || p.Admin != "127.0.0.1:7433" {
		t.Errorf("listen %q admin %q", p.Listen, p.Admin)
	}
	if p.TLS.Mode != TLSRequire || p.TLS.Certificate == nil || p.TLS.CertFile != filepath.Join(dir, "server.crt") {
		t.Errorf("tls = %+v", p.TLS)
	}
	if p.Upstream.DSN != "host=db dbname=app" || p.Upstream.StatementTimeout != 2*time.Minute || p.Upstream.MaxConns != 4 {
		t.Errorf("upstream = %+v", p.Upstream)
	}
	r := p.Ledger.Redis
	if p.Ledger.Backend != "redis" || len(r.Addrs) != 2 || r.MasterName != "mymaster" || r.Username != "dpproxy" || r.Password != "s3cret" {
		t.Errorf("ledger = %+v", p.Ledger)
	}
	want := Defaults{Epsilon: 0.2, MaxEpsilon: 0.8, Delta: 1e-8, Accounting: AccountingRDP, CacheWindow: 10 * time.Minute}
	if p.Defaults != want {
		t.Errorf("defaults = %+v", p.Defaults)
	}
	alice, bob := p.Analyst("alice"), p.Analyst("bob")
	if alice.Budget != (Budget{Epsilon: 0.8, Delta: 1e-6, Period: PeriodMonthly}) || alice.MaxEpsilon != 0.5 || alice.MaxDelta != 1e-7 || alice.Team != "research" {
		t.Errorf("alice = %+v", alice)
	}
	if bob.Budget != alice.Budget || bob.Verifier == nil || strings.Join(bob.Tables, ",") != "public.patients" {
		t.Errorf("bob (merged from alice) = %+v", bob)
	}
	visits := p.Table("public", "visits")
	if !alice.MayQuery(visits) || bob.MayQuery(visits) || !bob.MayQuery(p.Table("", "patients")) {
		t.Error("MayQuery")
	}
	if got := p.DeltaCap(alice); got != 1e-7 {
		t.Errorf("DeltaCap(alice) = %g", got)
	}
	if tm := p.Team("research"); tm == nil || tm.Budget.EpsilonPerYear() != 5 || len(tm.Members) != 2 {
		t.Errorf("team = %+v", tm)
	}
	if ds := p.DatasetOf(visits); ds == nil || ds.Name != "clinical" || ds.Budget.Period != PeriodLifetime {
		t.Errorf("dataset = %+v", ds)
	}
	if visits.MaxRowsPerUnit != 10 || visits.MaxGroupsPerUnit != 3 || visits.Unit != "patient_id" {
		t.Errorf("visits = %+v", visits)
	}
	rg := visits.Column("visited").Range
	if rg == nil || rg.Lower.Format("2006-01-02") != "2024-01-01" || rg.Upper.Year() != 2026 {
		t.Errorf("range = %+v", rg)
	}
	if c := visits.Column("urgent"); strings.Join(c.Domain, ",") != "true,false" {
		t.Errorf("urgent domain = %v", c.Domain)
	}
	if c := p.Table("", "patients").Column("patient_id"); c.Type != "integer" || !c.Hidden {
		t.Errorf("patient_id = %+v", c)
	}
	if tb := p.Table("ref", "icd10"); tb == nil || tb.IsPrivate() {
		t.Errorf("icd10 = %+v", tb)
	}
}

func TestDemoPolicyIsValidWithoutWarnings(t *testing.T) {
	data, err := os.ReadFile("../demo/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, errs, warns := Check("demo/policy.yaml", data, testEnvWith("DPPROXY_UPSTREAM_DSN", "host=db"))
	if len(errs) > 0 || len(warns) > 0 {
		t.Fatalf("errors:\n%v\nwarnings:\n%v", errs, warns)
	}
	if p.Analyst("alice") == nil || p.Analyst("bob") == nil || p.Table("", "patients") == nil {
		t.Fatal("demo policy lost alice, bob or patients")
	}
}

func testEnvWith(name, value string) Env {
	return Env{Getenv: func(n string) string {
		if n == name {
			return value
		}
		return ""
	}}
}

// TestWarnings lists risky but valid choices and the warning each gets.
func TestWarnings(t *testing.T) {
	cases := []struct {
		name  string
		edits []string
		want  []string
	}{
		{"epsilon per query above 1", []string{"epsilon: 0.5\n  max_epsilon: 1", "epsilon: 2\n  max_epsilon: 3"}, []string{
			"9:12: warning: default epsilon 2 per query is above 1: each answer may change the odds of guessing anything about one person by a factor up to e^2 ≈ 7.39; 0.1 to 1 is usual",
			"10:16: warning: max_epsilon 3 per query is above 1: each answer may change the odds of guessing anything about one person by a factor up to e^3 ≈ 20.1; 0.1 to 1 is usual"}},
		{"analyst cap above 1", []string{"delta: 1e-6}", "delta: 1e-6}\n    max_epsilon: 1.5"}, []string{
			"15:18: warning: max_epsilon 1.5 per query is above 1: each answer may change the odds of guessing anything about one person by a factor up to e^1.5 ≈ 4.48; 0.1 to 1 is usual"}},
		{"lifetime budget above 10", []string{"epsilon: 5, delta", "epsilon: 20, delta"}, []string{
			"14:23: warning: analyst \"alice\" has a lifetime budget epsilon 20, above 10: over all its queries it offers little protection; 1 to 10 is usual"}},
		{"monthly budget above 10 a year", []string{"delta: 1e-6}", "delta: 1e-6, period: monthly}"}, []string{
			"14:23: warning: analyst \"alice\" has a monthly budget epsilon 5, i.e. 60 per year, above 10: over a year it offers little protection; lower the budget or lengthen the period"}},
		{"large delta", []string{"delta: 1e-6}", "delta: 1e-4}"}, []string{
			"14:33: warning: budget delta 0.0001 is above 1e-5: with that probability an answer may reveal a person outright; keep delta well below 1/(number of people), e.g. 1e-7"}},
		{"integer bounds beyond int32", []string{"bounds: [0, 100]", "bounds: [0, 5e9]"}, []string{
			"22:44: warning: bounds [0, 5e+09] are wider than an integer column can hold ([-2.147483648e+09, 2.147483647e+09]); bounds should be what the column plausibly holds, e.g. [0, 120] for an age"}},
		{"absurd numeric bounds", []string{"domain: [F, M]", "domain: [F, M]}\n      - {name: income, type: numeric, bounds: [-1e15, 1e15]"}, []string{
			"24:47: warning: bounds [-1e+15, 1e+15] of \"income\" are absurdly wide: noise on sums and averages scales with them, so answers will be useless; choose the range values plausibly take"}},
		{"many rows per unit", []string{"max_rows_per_unit: 5", "max_rows_per_unit: 500"}, []string{
			"19:24: warning: max_rows_per_unit 500: noise grows with it, so sums and counts over table \"patients\" will be very noisy; most analyses need 10 or fewer"}},
		{"bounds on a hidden column", []string{"hidden: true", "hidden: true, bounds: [0, 9]"}, []string{
			"21:57: warning: hidden column \"patient_id\" has bounds, which are never used: hidden columns cannot appear in queries at all"}},
		{"network listen without TLS", []string{"listen: 127.0.0.1:6432", "listen: 0.0.0.0:6432"}, []string{
			"2:9: warning: dpproxy listens on 0.0.0.0:6432 without TLS, so statements and answers cross the network in clear; set `tls: {mode: require, cert_file: ..., key_file: ...}`"}},
		{"public admin", []string{"listen: 127.0.0.1:6432", "listen: 127.0.0.1:6432\nadmin: 0.0.0.0:6433"}, []string{
			"3:8: warning: the admin endpoint 0.0.0.0:6433 is reachable from the network and serves the ledger report (who spent what); bind it to 127.0.0.1 or a private network"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, errs, warns := Check("p.yaml", []byte(edit(t, basePolicy, tc.edits...)), testEnv)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			var got []string
			for _, w := range warns {
				got = append(got, strings.TrimPrefix(w.String(), "p.yaml:"))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if len(p.Warnings) != len(warns) {
				t.Errorf("Policy.Warnings = %v", p.Warnings)
			}
		})
	}
}

func TestVersionIsHashOfBytes(t *testing.T) {
	p1, err := Parse("p.yaml", []byte(basePolicy), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := Parse("p.yaml", []byte(basePolicy+"# comment\n"), testEnv)
	if p1.Version == p2.Version || len(p1.Version) != 16 {
		t.Errorf("versions %q %q", p1.Version, p2.Version)
	}
}

func TestAliasBombIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 {x: 1}\n")
	for i := 1; i < 40; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " {<<: [*a" + itoa(i-1) + ", *a" + itoa(i-1) + "]}\n")
	}
	b.WriteString("version: 1\ndefaults: *a39\n")
	start := time.Now()
	_, errs, _ := Check("p.yaml", []byte(b.String()), testEnv)
	if len(errs) == 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("errors %v after %v", errs, time.Since(start))
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }
