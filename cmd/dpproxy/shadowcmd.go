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
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + id(pgx.Identifier{policy.ShadowSchema}),
		"DROP TABLE IF EXISTS " + tmp,
		// The rows kept for a unit are a uniformly random choice among its
		// rows, independent of their values (and of other units' rows).
		fmt.Sprintf("CREATE TABLE %s AS SELECT * FROM (SELECT s.*, row_number() OVER (PARTITION BY s.%s ORDER BY random()) AS dp_shadow_rank FROM %s AS s) AS r WHERE dp_shadow_rank <= %d",
			tmp, unit, src, t.MaxRowsPerUnit),
		"ALTER TABLE " + tmp + " DROP COLUMN dp_shadow_rank",
		"DROP TABLE IF EXISTS " + dst,
		"ALTER TABLE " + tmp + " RENAME TO " + id(pgx.Identifier{t.ShadowName()}),
	}
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
