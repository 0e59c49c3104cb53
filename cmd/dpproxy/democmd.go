package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dpproxy/dpproxy/demo"
	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/policy"
)

func cmdDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "dpproxy-demo"), "where the demo PostgreSQL cluster and the ledger live")
	listen := fs.String("listen", "127.0.0.1:6432", "address analysts connect to")
	admin := fs.String("admin", "127.0.0.1:6433", "admin HTTP address")
	pgPort := fs.Int("pg-port", 0, "port of the demo PostgreSQL (0: a free one)")
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
