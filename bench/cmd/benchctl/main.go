// Command benchctl is the Go side of bench/run.sh: it starts and stops the
// throwaway PostgreSQL cluster, generates and loads the bench data, writes
// the bench policy, times rewritten SQL against the raw aggregate directly
// on PostgreSQL, and measures the memory of idle client connections.
//
//	benchctl up      --dir D [--load bench=1m,...]  start PostgreSQL in D/pg, load data once; prints PGPORT=
//	benchctl down    --dir D                    stop it
//	benchctl policy  --listen ADDR --ledger F [--cache-window 10m] > policy.yaml
//	benchctl dbcost  --dsn DSN [--runs 5] name=SQL ...   median wall time of each statement
//	benchctl conns   --dsn DSN --pid PID [--n 1000]      RSS per idle connection of process PID
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/policy"
)

// Names shared with run.sh.
const (
	benchDB       = "bench"
	readerRole    = "bench_reader"
	benchAnalyst  = "bench"
	benchPassword = "bench-pass"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchctl up|down|policy|dbcost|conns [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = cmdUp(os.Args[2:])
	case "down":
		err = cmdDown(os.Args[2:])
	case "policy":
		err = cmdPolicy(os.Args[2:])
	case "dbcost":
		err = cmdDBCost(os.Args[2:])
	case "conns":
		err = cmdConns(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchctl:", err)
		os.Exit(1)
	}
}

func cmdUp(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "working directory (required)")
	loads := fs.String("load", benchDB+"=1m", "databases to fill, as db=scale[,db=scale]; scale: 100k, 1m, 10m or a number of purchases")
	_ = fs.Parse(args)
	if *dir == "" {
		return errors.New("--dir is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// A cluster left running by an interrupted run is stopped first; its
	// data is kept and reused when the scale matches.
	if err := stopCluster(*dir); err != nil {
		return err
	}
	c, err := pgcluster.Start(ctx, filepath.Join(*dir, "pg"), 0)
	if err != nil {
		return err
	}
	_ = os.WriteFile(filepath.Join(*dir, "pgport"), []byte(strconv.Itoa(c.Port)), 0o644)
	admin, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '"+readerRole+"') THEN CREATE ROLE "+readerRole+" LOGIN; END IF; END $$"); err != nil {
		return err
	}
	for _, l := range strings.Split(*loads, ",") {
		name, sc, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--load %q: want db=scale", l)
		}
		scale, err := parseScale(sc)
		if err != nil {
			return err
		}
		if err := fill(ctx, admin, c, name, scale); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	fmt.Printf("PGPORT=%d\n", c.Port)
	return nil
}

// fill creates database name and loads scale purchases into it, unless it
// already holds that scale.
func fill(ctx context.Context, admin *pgx.Conn, c *pgcluster.Cluster, name string, scale int) error {
	var one int
	if err := admin.QueryRow(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	db, err := pgx.Connect(ctx, c.DSN(name))
	if err != nil {
		return err
	}
	defer db.Close(ctx)
	var have int
	_ = db.QueryRow(ctx, "SELECT scale FROM bench_meta").Scan(&have)
	if have == scale {
		return nil
	}
	t0 := time.Now()
	fmt.Fprintf(os.Stderr, "loading %s: %d purchases, %d people ...\n", name, scale, max(1, scale/peopleDivisor))
	if err := load(ctx, db, scale); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+readerRole+
		"; ALTER ROLE "+readerRole+" SET default_transaction_read_only = on"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "loaded %s in %s\n", name, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// cmdDown stops the cluster that up started in dir.
func cmdDown(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	dir := fs.String("dir", "", "working directory (required)")
	_ = fs.Parse(args)
	return stopCluster(*dir)
}

func stopCluster(dir string) error {
	data := filepath.Join(dir, "pg", "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return nil // not running
	}
	bin, err := pgcluster.FindBinDir()
	if err != nil {
		return err
	}
	argv := []string{filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err == nil {
			argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
		}
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

func cmdPolicy(args []string) error {
	fs := flag.NewFlagSet("policy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:6432", "dpproxy listen address")
	ledger := fs.String("ledger", "ledger.db", "ledger file")
	window := fs.String("cache-window", "0s", "answer cache window (0s: off)")
	maxConns := fs.Int("max-conns", 16, "upstream pool size")
	redisAddr := fs.String("redis", "", "use a Redis ledger at this address instead of the bolt file")
	hitAudit := fs.String("cache-hit-audit", "sync", "how cache hits reach the audit trail: sync or batched")
	_ = fs.Parse(args)
	ledgerYAML := fmt.Sprintf("ledger:\n  backend: bolt\n  path: %s", *ledger)
	if *redisAddr != "" {
		ledgerYAML = fmt.Sprintf("ledger:\n  backend: redis\n  redis: {addrs: [%q]}", *redisAddr)
	}
	ledgerYAML += "\n  cache_hit_audit: " + *hitAudit
	v, err := policy.NewVerifier(benchPassword, []byte("dpproxy-bench-salt"), 4096)
	if err != nil {
		return err
	}
	q := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	fmt.Printf(`# Generated by benchctl policy: an analyst with a practically unlimited
# budget so that pgbench can run thousands of DP queries.
version: 1
listen: %s
admin: "off"
tls: {mode: disable}
upstream:
  dsn_env: DPPROXY_UPSTREAM_DSN
  statement_timeout: 300s
  max_conns: %d
%s
defaults:
  epsilon: 0.1
  max_epsilon: 1
  delta: 1.0e-7
  accounting: basic
  cache_window: %s
analysts:
  - name: %s
    password: %q
    budget: {epsilon: 1.0e6, delta: 0.5}  # the ledger's maximum (ledger.MaxEpsilon)
tables:
  - name: people
    privacy: row
    columns:
      - {name: person_id, type: integer, hidden: true}
      - {name: age, type: integer, bounds: [0, 100]}
      - {name: region, type: text, domain: %s}
      - {name: zip, type: integer}
      - {name: income, type: integer, bounds: [0, 250000], granularity: 100}
  - name: purchases
    privacy: unit
    unit: person_id
    max_rows_per_unit: %d
    max_groups_per_unit: %d
    columns:
      - {name: purchase_id, type: bigint, hidden: true}
      - {name: person_id, type: integer}
      - {name: store_id, type: integer}
      - {name: category, type: text, domain: %s}
      - {name: amount, type: numeric, bounds: [0, 1000], granularity: 0.01}
      - {name: ts, type: date, range: ['2024-01-01', '2026-01-01']}
  - name: stores
    privacy: public
    columns:
      - {name: store_id, type: integer}
      - {name: city, type: text, domain: %s}
  - name: tiny
    privacy: row
    columns:
      - {name: id, type: integer, hidden: true}
      - {name: flag, type: integer}
`, *listen, *maxConns, ledgerYAML, *window, benchAnalyst, v.String(), q(regions), maxRowsPerUnit, maxGroupsPerUnit, q(categories), q(cities))
	return nil
}

// cmdDBCost runs each name=SQL statement --runs times (interleaved, after
// one warm-up round) on one connection and prints the median wall time.
// A statement may be several statements separated by ';' inside one
// transaction (e.g. SET LOCAL work_mem = ...; SELECT ...): its time is the
// whole round trip.
func cmdDBCost(args []string) error {
	fs := flag.NewFlagSet("dbcost", flag.ExitOnError)
	dsn := fs.String("dsn", "", "connection string (required)")
	runs := fs.Int("runs", 5, "timed runs per statement")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	type stmt struct{ name, sql string }
	var stmts []stmt
	for _, a := range fs.Args() {
		name, sql, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("want name=SQL, got %q", a)
		}
		stmts = append(stmts, stmt{name, sql})
	}
	times := make([][]time.Duration, len(stmts))
	for round := -1; round < *runs; round++ {
		for i, s := range stmts {
			t0 := time.Now()
			if _, err := conn.PgConn().Exec(ctx, "BEGIN READ ONLY; "+s.sql+"; COMMIT").ReadAll(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if round >= 0 {
				times[i] = append(times[i], time.Since(t0))
			}
		}
	}
	for i, s := range stmts {
		sort.Slice(times[i], func(a, b int) bool { return times[i][a] < times[i][b] })
		fmt.Printf("%s %.1f %.1f %.1f\n", s.name, ms(times[i][len(times[i])/2]), ms(times[i][0]), ms(times[i][len(times[i])-1]))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cmdConns opens n connections (authenticated, each running SELECT 1), holds
// them idle, and reports the RSS growth of process pid per connection; then
// runs SELECT 1 on every one to check they all still work.
func cmdConns(args []string) error {
	fs := flag.NewFlagSet("conns", flag.ExitOnError)
	dsn := fs.String("dsn", "", "connection string (required)")
	pid := fs.Int("pid", 0, "process whose RSS to measure (required)")
	n := fs.Int("n", 1000, "connections")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	before, err := rssKiB(*pid)
	if err != nil {
		return err
	}
	conns := make([]*pgx.Conn, *n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	t0 := time.Now()
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := pgx.Connect(ctx, *dsn)
			if err == nil {
				_, err = c.Exec(ctx, "SELECT 1")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	opened := time.Since(t0)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	if firstErr != nil {
		return fmt.Errorf("opening connections: %w", firstErr)
	}
	time.Sleep(2 * time.Second) // let the proxy's goroutines settle
	after, err := rssKiB(*pid)
	if err != nil {
		return err
	}
	failed := 0
	for _, c := range conns {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			failed++
		}
	}
	fmt.Printf("connections %d opened_in %s rss_before_kib %d rss_after_kib %d per_conn_kib %.1f failed_after_hold %d\n",
		*n, opened.Round(time.Millisecond), before, after, float64(after-before)/float64(*n), failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d held connections failed", failed, *n)
	}
	return nil
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}
