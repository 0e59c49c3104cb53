package integration

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/wire"
)

const countQuery = "SELECT count(*) FROM patients WHERE age > 40"

// TestNoisyCountWithPgx asks for the same count ten times, over the extended
// and the simple protocol, at epsilon 0.2 (discrete Laplace, scale 5).
//
// Tolerance: P(|noise| >= 91) = 2e^{-91/5}/(1+e^{-1/5}) < 1.5e-8 per answer,
// so the ten checks fail falsely with probability < 1.5e-7. Freshness: ten
// answers are all equal with probability at most max_x P(x)^9 < 0.1^9 = 1e-9.
func TestNoisyCountWithPgx(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	want := exact(t, ctx, countQuery)
	seen := map[int64]bool{}
	for _, simple := range []bool{false, true} {
		conn, log := p.connectWithNotices(t, ctx, "alice", alicePassword, simple)
		if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.2"); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			var got int64
			if err := conn.QueryRow(ctx, countQuery).Scan(&got); err != nil {
				t.Fatalf("simple=%v: %v", simple, err)
			}
			if d := got - want; d > 90 || d < -90 {
				t.Errorf("simple=%v: noisy count %d is %d away from the exact %d", simple, got, d, want)
			}
			seen[got] = true
		}
		if notices := log.all(); len(notices) != 5 || !strings.Contains(notices[0], "spent epsilon 0.2") || !strings.Contains(notices[0], "count ±") {
			t.Errorf("simple=%v: notices = %q", simple, notices)
		}
	}
	if len(seen) < 2 {
		t.Errorf("ten noisy answers were all %v: noise is not fresh", seen)
	}
}

func TestRefusalsCarrySQLStateAndHint(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	for _, simple := range []bool{false, true} {
		conn := p.connect(t, ctx, "alice", alicePassword, simple)
		tests := []struct {
			sql, code string
		}{
			{"SELECT * FROM patients", "42501"},
			{"SELECT age, income FROM patients WHERE age > 90", "42501"},
			{"DELETE FROM patients", "25006"},
			{"UPDATE patients SET age = 0", "25006"},
			{"INSERT INTO patients (patient_id) VALUES (0)", "25006"},
			{"DROP TABLE patients", "25006"},
			{"SELECT count(*) FROM no_such_table", "42P01"},
			{"SELECT count(*) FROM patients WHERE patient_id = 1", "42501"},
			{"SELECT pg_sleep(10)", "42501"},
		}
		for _, tt := range tests {
			rows, err := conn.Query(ctx, tt.sql)
			n := 0
			if err == nil {
				for rows.Next() {
					n++
				}
				err = rows.Err()
				rows.Close()
			}
			var pge *pgconn.PgError
			if !errors.As(err, &pge) {
				t.Errorf("simple=%v %q: got %v, want a Postgres error", simple, tt.sql, err)
				continue
			}
			if pge.Code != tt.code || pge.Hint == "" || n != 0 {
				t.Errorf("simple=%v %q: code %s hint %q rows %d; want code %s, a hint, no rows", simple, tt.sql, pge.Code, pge.Hint, n, tt.code)
			}
		}
		// The session still works after refusals.
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("simple=%v: SELECT 1 after refusals: %v %d", simple, err, one)
		}
	}
}

func TestPsqlSession(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	psql := func(sql string) (string, error) {
		host, port, _ := net.SplitHostPort(p.addr)
		cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
			"-h", host, "-p", port, "-U", "alice", "-d", "demo", "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+alicePassword, "PGSSLMODE=prefer")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := psql(countQuery)
	if err != nil {
		t.Fatalf("psql count: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`NOTICE:  00000: dp: spent epsilon 0\.5 \(4\.5 of 5 left\); count ±\d+ at 95%`).MatchString(out) {
		t.Errorf("psql output lacks the cost notice:\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^\s+(\d+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no count in psql output:\n%s", out)
	}
	got, _ := strconv.ParseInt(m[1], 10, 64)
	// ε = 0.5: P(|noise| >= 36) = 2e^{-18}/(1+e^{-0.5}) < 1.2e-8.
	if want := exact(t, ctx, countQuery); got-want > 35 || want-got > 35 {
		t.Errorf("psql count %d too far from %d", got, want)
	}
	out, err = psql("SELECT * FROM patients")
	if err == nil || !strings.Contains(out, "ERROR:  42501") || !strings.Contains(out, "HINT:  use an aggregate") {
		t.Errorf("psql SELECT * was not refused with 42501 and a hint (err %v):\n%s", err, out)
	}
	out, err = psql("SHOW dp.budget")
	if err != nil || !strings.Contains(out, "4.5 of 5 left") {
		t.Errorf("SHOW dp.budget after one query (err %v):\n%s", err, out)
	}
}

func TestBudgetExhaustionRefusesWithoutData(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 1.0})
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	for i := range 2 { // default epsilon 0.5: exactly two answers fit in 1.0
		var n int64
		if err := conn.QueryRow(ctx, countQuery).Scan(&n); err != nil {
			t.Fatalf("query %d within budget: %v", i, err)
		}
	}
	for range 2 {
		rows, err := conn.Query(ctx, countQuery)
		n := 0
		if err == nil {
			for rows.Next() {
				n++
			}
			err = rows.Err()
			rows.Close()
		}
		var pge *pgconn.PgError
		if !errors.As(err, &pge) || pge.Code != "53400" || n != 0 || !strings.Contains(pge.Message, "budget exhausted") {
			t.Fatalf("over budget: got %v with %d rows, want 53400 and no rows", err, n)
		}
	}
	var left string
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&left); err != nil || left != "0 of 1 left" {
		t.Errorf("SHOW dp.budget = %q, %v", left, err)
	}
}

func TestAuthentication(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	for _, c := range []struct{ user, password string }{
		{"alice", "wrong"}, {"mallory", "alice-demo"}, {"alice", ""},
	} {
		conn, err := pgx.Connect(ctx, p.dsn(c.user, c.password))
		if err == nil {
			conn.Close(ctx)
			t.Errorf("%s/%q: connected, want refusal", c.user, c.password)
			continue
		}
		var pge *pgconn.PgError
		if !errors.As(err, &pge) || pge.Code != "28P01" {
			t.Errorf("%s/%q: got %v, want 28P01", c.user, c.password, err)
		}
	}
}

// TestOneLedgerEntryPerAnswer: every answer, and nothing else, writes one
// audit entry, and the chain verifies.
func TestOneLedgerEntryPerAnswer(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	conn := p.connect(t, ctx, "alice", alicePassword, false)
	answered := 0
	for _, sql := range []string{
		countQuery, "SELECT * FROM patients", "SELECT avg(age), sum(income) FROM patients WHERE sex = 'F'",
		"SELECT 1", "DELETE FROM patients", "SELECT count(age) FROM patients", "SHOW dp.budget",
	} {
		rows, err := conn.Query(ctx, sql)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		if err == nil && strings.Contains(sql, "FROM patients") {
			answered++
		}
	}
	if answered != 3 {
		t.Fatalf("answered %d DP queries, want 3", answered)
	}
	conn.Close(ctx)
	store, entries := p.stoppedLedger(t, ctx)
	if len(entries) != answered {
		t.Errorf("ledger has %d entries for %d answers", len(entries), answered)
	}
	for _, e := range entries {
		if e.Analyst != "alice" || e.Epsilon < 0.5 || !strings.Contains(e.Statement, "FROM patients") {
			t.Errorf("unexpected entry %+v", e)
		}
	}
	if err := store.Verify(ctx); err != nil {
		t.Errorf("ledger chain does not verify: %v", err)
	}
}

func TestCorruptLedgerFileStopsStartup(t *testing.T) {
	ledgerPath := filepath.Join(t.TempDir(), "ledger.db")
	if err := os.WriteFile(ledgerPath, []byte(strings.Repeat("not a bolt file ", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(testPolicy(t, "127.0.0.1:0", ledgerPath, proxyOptions{})), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--policy", policyPath, "--admin", "")
	cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+pg.ReaderDSN())
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "ledger") {
		t.Fatalf("serve with a corrupt ledger: err %v, output:\n%s", err, out)
	}
}

// TestLedgerFailureRefusesQueries runs the server in-process over a ledger
// that has gone away: DP queries are refused with DP007, never answered.
func TestLedgerFailureRefusesQueries(t *testing.T) {
	ctx := testContext(t)
	dsn := inProcess(t, ctx, func(cfg *wire.Config) {
		// The ledger is gone before the first query.
		_ = cfg.Ledger.Close()
	})
	conn, err := pgx.Connect(ctx, dsn+" user=alice password="+alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, countQuery).Scan(&n)
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "58000" || !strings.Contains(pge.Message, "ledger") {
		t.Fatalf("query over a closed ledger: got %v (n=%d), want 58000 naming the ledger", err, n)
	}
}
