package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/policy"
)

// cmdPolicyInit drafts a policy from the upstream schema. It reads only the
// catalogs (tables, columns, types, keys, CHECK constraints and enum labels),
// never a row of data.
func cmdPolicyInit(args []string) error {
	fs := flag.NewFlagSet("policy init", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "upstream connection string to read the schema from (default: $DPPROXY_UPSTREAM_DSN)")
	out := fs.String("out", "", "write the draft to this file (default: stdout); an existing file is not overwritten")
	dsnEnv := fs.String("dsn-env", "DPPROXY_UPSTREAM_DSN", "environment variable the draft reads the upstream DSN from")
	schemas := fs.String("schemas", "", "comma-separated schemas to include (default: all but the system schemas)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{"usage: dpproxy policy init --dsn DSN [--out FILE] [--schemas a,b]"}
	}
	if *dsn == "" {
		*dsn = os.Getenv("DPPROXY_UPSTREAM_DSN")
	}
	if *dsn == "" {
		return usageError{"--dsn is required (or set DPPROXY_UPSTREAM_DSN)"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(*dsn)
	if err != nil {
		return fmt.Errorf("--dsn: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connecting to the upstream: %w", err)
	}
	defer conn.Close(context.Background())
	only := []string{} // not nil: pgx sends nil as NULL
	if *schemas != "" {
		only = strings.Split(*schemas, ",")
	}
	sch, err := readSchema(ctx, conn, only)
	if err != nil {
		return fmt.Errorf("reading the schema: %w", err)
	}
	where := fmt.Sprintf("database %s on %s:%d as %s", cfg.Database, cfg.Host, cfg.Port, cfg.User)
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if err := writeDraft(w, sch, where, *dsnEnv); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(os.Stderr, "wrote %s: %d tables; fill in every TODO, then run `dpproxy policy check %s`\n", *out, len(sch.tables), *out)
	}
	return nil
}

// Schema as read from the catalogs.
type dbSchema struct{ tables []*dbTable }

type dbTable struct {
	oid          uint32
	schema, name string
	kind         string // r, p, v, m, f
	columns      []*dbColumn
	pk           []string
	fks          []dbFK
	checks       []string
	referencedBy []string // "table.column" of foreign keys pointing here
}

type dbColumn struct {
	num     int16
	name    string
	pgType  string   // format_type
	labels  []string // enum labels
	notNull bool
}

type dbFK struct {
	column           string
	refTable, refCol string // qualified table name, column
	refOID           uint32
}

func readSchema(ctx context.Context, conn *pgx.Conn, only []string) (*dbSchema, error) {
	rows, err := conn.Query(ctx, `
SELECT c.oid, n.nspname, c.relname, c.relkind::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1))
ORDER BY n.nspname, c.relname`, only)
	if err != nil {
		return nil, err
	}
	sch := &dbSchema{}
	byOID := map[uint32]*dbTable{}
	for rows.Next() {
		t := &dbTable{}
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &t.kind); err != nil {
			return nil, err
		}
		sch.tables = append(sch.tables, t)
		byOID[t.oid] = t
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	oids := make([]uint32, 0, len(byOID))
	for oid := range byOID {
		oids = append(oids, oid)
	}
	rows, err = conn.Query(ctx, `
SELECT a.attrelid, a.attnum, a.attname,
       pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, a.atttypmod),
       COALESCE((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid), '{}'),
       a.attnotnull
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum`, oids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var oid uint32
		c := &dbColumn{}
		if err := rows.Scan(&oid, &c.num, &c.name, &c.pgType, &c.labels, &c.notNull); err != nil {
			return nil, err
		}
		byOID[oid].columns = append(byOID[oid].columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = conn.Query(ctx, `
SELECT conrelid, contype::text, conkey, COALESCE(confrelid, 0), COALESCE(confkey, '{}'), pg_catalog.pg_get_constraintdef(oid)
FROM pg_catalog.pg_constraint
WHERE conrelid = ANY($1) AND contype IN ('p', 'f', 'c')
ORDER BY conrelid, contype, conname`, oids)
	if err != nil {
		return nil, err
	}
	type con struct {
		rel, frel  uint32
		typ, def   string
		keys, fkey []int16
	}
	var cons []con
	for rows.Next() {
		var c con
		if err := rows.Scan(&c.rel, &c.typ, &c.keys, &c.frel, &c.fkey, &c.def); err != nil {
			return nil, err
		}
		cons = append(cons, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	colName := func(t *dbTable, num int16) string {
		for _, c := range t.columns {
			if c.num == num {
				return c.name
			}
		}
		return ""
	}
	for _, c := range cons {
		t := byOID[c.rel]
		switch c.typ {
		case "p":
			for _, k := range c.keys {
				t.pk = append(t.pk, colName(t, k))
			}
		case "c":
			t.checks = append(t.checks, c.def)
		case "f":
			ref := byOID[c.frel]
			if ref == nil || len(c.keys) != 1 || len(c.fkey) != 1 {
				continue // composite keys or tables outside the chosen schemas
			}
			fk := dbFK{column: colName(t, c.keys[0]), refTable: ref.qualified(), refCol: colName(ref, c.fkey[0]), refOID: ref.oid}
			t.fks = append(t.fks, fk)
			ref.referencedBy = append(ref.referencedBy, t.qualified()+"."+fk.column)
		}
	}
	return sch, nil
}

func (t *dbTable) qualified() string { return t.schema + "." + t.name }

// unitFK picks the foreign key that most likely names a person: one that
// references a table's single-column primary key, preferring surrogate ids
// (an integer or uuid key, a column named *_id) and referenced tables with no
// foreign keys of their own (a root entity such as patients) over lookup
// tables keyed by text (departments). Ties go to column order.
func unitFK(t *dbTable, byOID map[uint32]*dbTable) (dbFK, []dbFK, bool) {
	var cands []dbFK
	score := map[string]int{}
	for _, fk := range t.fks {
		ref := byOID[fk.refOID]
		if ref == nil || len(ref.pk) != 1 || ref.pk[0] != fk.refCol {
			continue
		}
		cands = append(cands, fk)
		for _, c := range ref.columns {
			if typ, _ := policy.CanonicalType(c.pgType); c.name == fk.refCol && (typ == "integer" || typ == "bigint" || typ == "uuid") {
				score[fk.column] += 4
			}
		}
		if strings.HasSuffix(fk.column, "_id") {
			score[fk.column] += 2
		}
		if len(ref.fks) == 0 {
			score[fk.column]++
		}
	}
	if len(cands) == 0 {
		return dbFK{}, nil, false
	}
	sort.SliceStable(cands, func(i, j int) bool { return score[cands[i].column] > score[cands[j].column] })
	return cands[0], cands[1:], true
}

var plainYAML = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// yq writes s as a YAML scalar, quoted unless it is a plain word that YAML
// would not read as something else.
func yq(s string) string {
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "y", "n", "todo":
		return strconv.Quote(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

// writeDraft writes the commented draft policy.
func writeDraft(w io.Writer, sch *dbSchema, where, dsnEnv string) error {
	byOID := map[uint32]*dbTable{}
	for _, t := range sch.tables {
		byOID[t.oid] = t
	}
	// An unusable placeholder verifier (its password is thrown away), so the
	// draft is valid but grants nobody access until the DBA replaces it.
	pw := make([]byte, 32)
	salt := make([]byte, 16)
	_, _ = rand.Read(pw)
	_, _ = rand.Read(salt)
	placeholder, err := policy.NewVerifier(string(pw), salt, 4096)
	if err != nil {
		return err
	}

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`# dpproxy policy: a draft written by "dpproxy policy init" from the schema of
# %s.
# Only the catalogs were read (tables, columns, types, keys, CHECK constraints,
# enum labels); no row of data was looked at.
#
# Before serving it:
#   1. Replace every "bounds: TODO" with [lower, upper]. Bounds are left to you on
#      purpose: bounds taken from the data (its min and max) would themselves
#      reveal private values, such as the largest income or the oldest person, and
#      noise calibrated on them would no longer be differentially private. Choose
#      them from what the column can plausibly hold (an age: [0, 120]); values
#      outside are clamped.
#   2. Check each table's privacy (row, unit or public) and privacy unit.
#   3. Replace the placeholder analyst with real ones ("dpproxy passwd").
#   4. Run "dpproxy policy check FILE". docs/policy.md documents every key.
version: 1
listen: 127.0.0.1:6432
admin: 127.0.0.1:6433
tls:
  mode: disable              # require, with cert_file and key_file, when analysts connect over a network

upstream:
  # The connection string is a secret: export it (ideally for a read-only role),
  #   export %s='%s'
  # or write it to a file readable only by dpproxy and use dsn_file: PATH.
  dsn_env: %s
  statement_timeout: 30s

ledger:
  backend: bolt              # one node; redis (with addrs) when several proxies share budgets
  path: /var/lib/dpproxy/ledger.db

defaults:
  epsilon: 0.1               # per query, unless the analyst runs SET dp.epsilon
  max_epsilon: 1             # the most one query may spend
  delta: 1.0e-7              # per query, for GROUP BY keys without a public domain
  accounting: basic
  cache_window: 10m          # an identical query within 10 minutes returns the same answer for free

analysts:
  - name: analyst            # TODO: one entry per person or service
    # Placeholder that matches no password: replace it with the output of
    # "echo -n PASSWORD | dpproxy passwd".
    password: "%s"
    budget: {epsilon: 1, delta: 1.0e-6, period: yearly}

tables:
`, where, dsnEnv, "host=... dbname=... user=...", dsnEnv, placeholder.String())
	if len(sch.tables) == 0 {
		p("  []  # no tables found\n")
	}
	for _, t := range sch.tables {
		kind := map[string]string{"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}[t.kind]
		p("\n  # %s %s", kind, t.qualified())
		if len(t.pk) > 0 {
			p(", primary key (%s)", strings.Join(t.pk, ", "))
		}
		if len(t.referencedBy) > 0 {
			p(", referenced by %s", strings.Join(t.referencedBy, ", "))
		}
		p("\n  - name: %s\n", yq(t.name))
		if t.schema != "public" {
			p("    schema: %s\n", yq(t.schema))
		}
		unit, others, hasUnit := unitFK(t, byOID)
		if hasUnit {
			p("    # %s references %s(%s): all rows with one %s are one privacy unit.\n", unit.column, unit.refTable, unit.refCol, unit.column)
			for _, o := range others {
				p("    # Other candidate: %s references %s(%s).\n", o.column, o.refTable, o.refCol)
			}
			p("    privacy: unit\n    unit: %s\n", yq(unit.column))
			p("    max_rows_per_unit: 10      # TODO: rows one unit may contribute; chosen without looking at the data\n")
			p("    max_groups_per_unit: 1     # groups one unit may contribute to in a GROUP BY\n")
		} else {
			p("    # TODO: row means each row is one person. If this table holds no private\n")
			p("    # data (a lookup or reference table), write privacy: public.\n")
			if len(t.pk) == 1 && len(t.referencedBy) > 0 {
				if typ, _ := policy.CanonicalType(pkType(t)); typ == "text" {
					p("    # Its text primary key, referenced by other tables, suggests a lookup table.\n")
				}
			}
			p("    privacy: row\n")
		}
		if len(t.checks) > 0 {
			p("    # CHECK constraints: %s\n", strings.Join(t.checks, "; "))
		}
		p("    columns:\n")
		for _, c := range t.columns {
			writeDraftColumn(p, t, c, hasUnit && c.name == unit.column)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func writeDraftColumn(p func(string, ...any), t *dbTable, c *dbColumn, isUnit bool) {
	typ, ok := policy.CanonicalType(c.pgType)
	if len(c.labels) > 0 {
		typ, ok = "text", true
	}
	if !ok {
		p("      # - {name: %s, type: %s}  # not supported by dpproxy: undeclared columns cannot be queried\n", yq(c.name), c.pgType)
		return
	}
	fields := []string{"name: " + yq(c.name), "type: " + typ}
	var notes []string
	isPK := len(t.pk) == 1 && t.pk[0] == c.name
	var fk *dbFK
	for i := range t.fks {
		if t.fks[i].column == c.name {
			fk = &t.fks[i]
		}
	}
	switch {
	case isUnit:
		notes = append(notes, "the privacy unit")
	case isPK && (typ == "integer" || typ == "bigint" || typ == "uuid"):
		fields = append(fields, "hidden: true")
		notes = append(notes, "primary key: an identifier, hidden so it cannot be used at all")
	case fk != nil:
		notes = append(notes, fmt.Sprintf("references %s(%s)", fk.refTable, fk.refCol))
	case len(c.labels) > 0:
		quoted := make([]string, len(c.labels))
		for i, l := range c.labels {
			quoted[i] = yq(l)
		}
		fields = append(fields, "domain: ["+strings.Join(quoted, ", ")+"]")
		notes = append(notes, fmt.Sprintf("enum %s: its labels are a public domain", c.pgType))
	case typ == "boolean":
		fields = append(fields, "domain: [true, false]")
	case typ == "smallint" || typ == "integer" || typ == "bigint" || typ == "numeric" || typ == "real" || typ == "double precision":
		fields = append(fields, "bounds: TODO")
		notes = append(notes, "TODO [lower, upper] from what it can hold, not from the data")
	case typ == "date" || typ == "timestamp" || typ == "timestamptz":
		notes = append(notes, "add range: ['2024-01-01', '2026-01-01'] to group by date_trunc")
	case typ == "text":
		notes = append(notes, "add domain: [...] listing its possible values to group by it")
	}
	line := "      - {" + strings.Join(fields, ", ") + "}"
	if len(notes) > 0 {
		line += "  # " + strings.Join(notes, "; ")
	}
	p("%s\n", line)
}

func pkType(t *dbTable) string {
	for _, c := range t.columns {
		if len(t.pk) == 1 && c.name == t.pk[0] {
			return c.pgType
		}
	}
	return ""
}
