package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

const shadowUsage = `usage: dpproxy shadow refresh --policy FILE [--dsn DSN] [--reader ROLE]

Fills the pre-bounded shadow copy of every table the policy marks
` + "`shadow: true`" + `: ` + policy.ShadowSchema + `.<schema>__<table>, holding at most
max_rows_per_unit rows per privacy unit, chosen at random (independently of
their values) afresh on each refresh. dpproxy then answers queries over the
table from the copy, which is much cheaper than bounding on the fly.

--dsn is an upstream connection allowed to create tables (default: the
DPPROXY_ADMIN_DSN environment variable); --reader is the role dpproxy reads
as (default: the user of the policy's upstream DSN), granted SELECT on the
copies. Run it from cron for a schedule, or by hand on demand.
`

// Values in the copy are clamped to their columns' policy bounds, and a
// CHECK constraint (dp_bounds) says so: dpproxy then sums them unclamped
// (proven bounds, rewrite/bounds.go), which saves a shadow-table query the
// clamp's cost per row, a quarter of its time on a numeric column. Sums and
// averages are unchanged (queries clamp every value to the same bounds);
// filters and group keys over a bounded column see the clamped values. A
// policy that later widens a column's bounds is still proven by the old,
// narrower constraint, so until the next refresh queries read values capped
// at the old bounds; one that narrows them is not, and queries clamp again.

// cmdShadow refreshes shadow copies. The swap is one transaction per table:
// readers see the old copy or the new one, never none.
func cmdShadow(args []string) error {
	if len(args) == 0 || args[0] != "refresh" {
		return usageError{shadowUsage}
	}
	fs := flag.NewFlagSet("shadow refresh", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (required)")
	dsn := fs.String("dsn", os.Getenv("DPPROXY_ADMIN_DSN"), "upstream DSN allowed to create tables")
	reader := fs.String("reader", "", "role dpproxy reads as (default: the policy's upstream user)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *policyPath == "" || *dsn == "" {
		return usageError{shadowUsage}
	}
	pol, err := policy.Load(*policyPath)
	if err != nil {
		return err
	}
	if *reader == "" {
		if cfg, err := pgx.ParseConfig(pol.Upstream.DSN); err == nil {
			*reader = cfg.User
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("connecting with --dsn: %w", err)
	}
	defer conn.Close(ctx)
	n := 0
	for _, t := range pol.Tables {
		if !t.Shadow || t.Privacy != policy.PrivacyUnit {
			continue
		}
		start := time.Now()
		rows, err := refreshShadow(ctx, conn, t, *reader)
		if err != nil {
			return fmt.Errorf("refreshing the shadow copy of %s: %w", t.QualifiedName(), err)
		}
		fmt.Fprintf(os.Stderr, "%s: %d rows (at most %d per %s) in %s.%s, %s\n",
			t.QualifiedName(), rows, t.MaxRowsPerUnit, t.Unit, policy.ShadowSchema, t.ShadowName(), time.Since(start).Round(time.Millisecond))
		n++
	}
	if n == 0 {
		fmt.Fprintln(os.Stderr, "no table of the policy has `shadow: true`")
	}
	return nil
}

func refreshShadow(ctx context.Context, conn *pgx.Conn, t *policy.Table, reader string) (int64, error) {
	id := pgx.Identifier.Sanitize
	src := id(pgx.Identifier{t.Schema, t.Name})
	dst := id(pgx.Identifier{policy.ShadowSchema, t.ShadowName()})
	tmp := id(pgx.Identifier{policy.ShadowSchema, t.ShadowName() + "__new"})
	unit := id(pgx.Identifier{t.Unit})
	rows, _ := conn.Query(ctx, shadowColumnsSQL, src)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("reading the columns of %s: %w", src, err)
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("table %s has no columns or does not exist", src)
	}
	cols := make([]string, len(names))
	var bounds []string
	for i, name := range names {
		quoted := id(pgx.Identifier{name})
		cols[i] = "r." + quoted
		if c := t.Column(name); c != nil {
			if expr, check, ok := rewrite.CopyClamp(c, "r."+quoted, quoted); ok {
				cols[i] = expr + " AS " + quoted
				bounds = append(bounds, check)
			}
		}
	}
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + id(pgx.Identifier{policy.ShadowSchema}),
		"DROP TABLE IF EXISTS " + tmp,
		// The rows kept for a unit are a uniformly random choice among its
		// rows, independent of their values (and of other units' rows).
		fmt.Sprintf("CREATE TABLE %s AS SELECT %s FROM (SELECT s.*, row_number() OVER (PARTITION BY s.%s ORDER BY random()) AS dp_shadow_rank FROM %s AS s) AS r WHERE dp_shadow_rank <= %d",
			tmp, strings.Join(cols, ", "), unit, src, t.MaxRowsPerUnit),
	}
	if len(bounds) > 0 {
		// One constraint for all columns: one scan to validate it, and no
		// name to derive from (possibly long) column names.
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT dp_bounds CHECK (%s)", tmp, strings.Join(bounds, " AND ")))
	}
	stmts = append(stmts,
		// What the copy was bounded by: wire/shadow.go reads only a copy
		// whose comment matches the policy in force.
		"COMMENT ON TABLE "+tmp+" IS '"+strings.ReplaceAll(t.ShadowComment(), "'", "''")+"'",
		"DROP TABLE IF EXISTS "+dst,
		"ALTER TABLE "+tmp+" RENAME TO "+id(pgx.Identifier{t.ShadowName()}),
	)
	if reader != "" {
		stmts = append(stmts,
			"GRANT USAGE ON SCHEMA "+id(pgx.Identifier{policy.ShadowSchema})+" TO "+id(pgx.Identifier{reader}),
			"GRANT SELECT ON "+dst+" TO "+id(pgx.Identifier{reader}))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return 0, fmt.Errorf("%s: %w", strings.SplitN(s, " AS ", 2)[0], err)
		}
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+dst).Scan(&n); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	_, err = conn.Exec(ctx, "ANALYZE "+dst)
	return n, err
}

// shadowColumnsSQL lists a table's columns in order ($1: its quoted name).
const shadowColumnsSQL = `SELECT attname FROM pg_catalog.pg_attribute
  WHERE attrelid = pg_catalog.to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`
