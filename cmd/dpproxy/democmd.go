package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/demo"
	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/policy"
)

func cmdDemo(args []string) error {
	if len(args) > 0 && args[0] == "load" {
		return cmdDemoLoad(args[1:])
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "dpproxy-demo"), "where the demo PostgreSQL cluster and the ledger live")
	listen := fs.String("listen", "127.0.0.1:6432", "address analysts connect to")
	admin := fs.String("admin", "127.0.0.1:6433", "admin HTTP address")
	pgPort := fs.Int("pg-port", 0, "port of the demo PostgreSQL (0: a free one)")
	describe(fs, "dpproxy demo [flags]\n       dpproxy demo load --dsn DSN", `Starts a throwaway PostgreSQL cluster in --dir (initdb from the installed
PostgreSQL), loads the demo data with progress, and serves it with the demo
policy (analysts alice/alice-demo and bob/bob-demo) and a bolt ledger in --dir.
'demo load' only loads the data into an existing PostgreSQL (see its --help).`)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	log := newLogger("text")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	fmt.Fprintf(os.Stderr, "starting a PostgreSQL cluster in %s ...\n", *dir)
	cluster, err := pgcluster.Start(ctx, filepath.Join(*dir, "pg"), *pgPort)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if err := demo.Install(ctx, cluster.DSN, os.Stderr); err != nil {
		return err
	}

	os.Setenv("DPPROXY_UPSTREAM_DSN", fmt.Sprintf("host=127.0.0.1 port=%d user=dpproxy_reader dbname=demo sslmode=disable", cluster.Port))
	pol, err := policy.Parse("demo/policy.yaml", demo.Policy, policy.Env{Getenv: os.Getenv, ReadFile: os.ReadFile})
	if err != nil {
		return err
	}
	pol.Listen = *listen
	pol.Ledger.Path = filepath.Join(*dir, "ledger.db")
	return serve(pol, "", *admin, log, func(addr string) {
		fmt.Fprintf(os.Stderr, `
dpproxy demo is ready. In another terminal:

  PGPASSWORD=alice-demo psql "host=127.0.0.1 port=%s user=alice dbname=demo"
  demo=> SELECT count(*) FROM patients WHERE age > 40;
  demo=> SELECT * FROM patients;            -- refused
  dpproxy ledger report                     -- budgets spent

Press Ctrl-C to stop (the ledger stays in %s).
`, portOf(addr), pol.Ledger.Path)
	})
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

// cmdDemoLoad loads the demo data into an existing PostgreSQL (the compose
// stack's init step): the demo database, its tables and the read-only role
// dpproxy connects as, unless the database exists already.
func cmdDemoLoad(args []string) error {
	fs := flag.NewFlagSet("demo load", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "superuser connection string of the target PostgreSQL, key=value or URL (default: $DPPROXY_ADMIN_DSN)")
	pwEnv := fs.String("reader-password-env", "DPPROXY_READER_PASSWORD", "environment variable holding a password to give the read-only role "+demo.ReaderRole+" (unset: no password)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: dpproxy demo load --dsn DSN

Creates the demo database (patients, visits, departments) and the read-only
role %s in an existing PostgreSQL, with progress on stderr. Does nothing if
the database "demo" exists. Used by docker-compose.yml's demo-load service.

Flags:
`, demo.ReaderRole)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *dsn == "" {
		*dsn = os.Getenv("DPPROXY_ADMIN_DSN")
	}
	if *dsn == "" {
		return usageError{"--dsn DSN (or $DPPROXY_ADMIN_DSN) is required"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// PostgreSQL may still be starting: retry the first connection.
	var err error
	for attempt := 0; ; attempt++ {
		err = demo.Install(ctx, func(db string) string { return withDatabase(*dsn, db) }, os.Stderr)
		if err == nil || attempt == 30 || ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "waiting for PostgreSQL: %v\n", err)
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		return err
	}
	if pw := os.Getenv(*pwEnv); pw != "" {
		conn, err := pgx.Connect(ctx, withDatabase(*dsn, "postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var stmt string
		if err := conn.QueryRow(ctx, "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", demo.ReaderRole, pw).Scan(&stmt); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("setting the password of %s: %w", demo.ReaderRole, err)
		}
	}
	fmt.Fprintln(os.Stderr, "demo data is ready in database demo")
	return nil
}

// withDatabase returns dsn (a URL or key=value string) naming database db.
func withDatabase(dsn, db string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	return dsn + " dbname=" + db // a later key wins
}
