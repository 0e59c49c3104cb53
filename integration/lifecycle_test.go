package integration

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/wire"
)

// fastSlowSQL is an allowed passthrough statement that runs for about two
// seconds.
const fastSlowSQL = "SELECT count(*) FROM generate_series(1, 20000000)"

// slowStatement is an allowed passthrough statement that runs for minutes
// upstream unless cancelled, and the marker that finds it in
// pg_stat_activity. The marker is new on every call, so a statement left
// running by an earlier failed attempt is never mistaken for this one.
func slowStatement() (sql, marker string) {
	marker = strconv.FormatInt(3_000_000_000+time.Now().UnixNano()%1_000_000, 10)
	return "SELECT count(*) FROM generate_series(1, " + marker + ")", marker
}

// upstreamActive reports whether a statement containing marker has been
// running upstream for 100ms (seen by the superuser in pg_stat_activity).
func upstreamActive(t *testing.T, ctx context.Context, marker string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0 AND now() - query_start > interval '100 milliseconds'", marker).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestCancelRequestCancelsUpstream: a CancelRequest to the proxy ends the
// statement with 57014 and cancels it in the upstream database too; the
// session goes on.
func TestCancelRequestCancelsUpstream(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	conn := p.connect(t, ctx, "alice", alicePassword, false)
	var interval string
	if err := conn.QueryRow(ctx, "SHOW client_connection_check_interval").Scan(&interval); err != nil || interval != "1s" {
		t.Errorf("upstream client_connection_check_interval = %q (%v), want 1s: a closed connection must stop its statement", interval, err)
	}
	var readOnly string
	if err := conn.QueryRow(ctx, "SHOW default_transaction_read_only").Scan(&readOnly); err != nil || readOnly != "on" {
		t.Errorf("upstream default_transaction_read_only = %q (%v), want on: DP statements are sent without BEGIN READ ONLY", readOnly, err)
	}
	slowSQL, marker := slowStatement()
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := conn.Exec(ctx, slowSQL)
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !upstreamActive(t, ctx, marker) {
		if time.Now().After(deadline) {
			t.Fatal("the slow statement never ran upstream")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("the statement was not cancelled within 20s")
	}
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "57014" {
		t.Fatalf("cancelled statement: got %v, want 57014", err)
	}
	t.Logf("cancelled after %v", time.Since(start))
	deadline = time.Now().Add(10 * time.Second)
	for upstreamActive(t, ctx, marker) {
		if time.Now().After(deadline) {
			admin, _ := pgx.Connect(ctx, pg.AdminDSN())
			rows, _ := admin.Query(ctx, "SELECT pid, state, backend_type, query FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
			for rows.Next() {
				v, _ := rows.Values()
				t.Log(v...)
			}
			t.Fatal("the statement still runs upstream 10s after the cancel")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("session after cancel: %v", err)
	}
}

// TestSIGTERMFinishesRunningStatements: on SIGTERM the proxy stops
// accepting connections, lets a running statement finish and answer, ends
// idle sessions with 57P01, and exits 0 promptly.
func TestSIGTERMFinishesRunningStatements(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	busy := p.connect(t, ctx, "alice", alicePassword, false)
	idle := p.connect(t, ctx, "alice", alicePassword, false)
	type result struct {
		n   int64
		err error
	}
	resc := make(chan result, 1)
	go func() {
		var r result
		r.err = busy.QueryRow(ctx, fastSlowSQL).Scan(&r.n)
		resc <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !upstreamActive(t, ctx, "20000000") {
		if time.Now().After(deadline) {
			t.Fatal("the statement never ran upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-resc
	if r.err != nil || r.n != 20000000 {
		t.Errorf("running statement across SIGTERM: %d, %v; want its full answer", r.n, r.err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- p.cmd.Wait() }()
	select {
	case err := <-waitc:
		if err != nil {
			t.Errorf("dpproxy exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dpproxy did not exit within 15s of SIGTERM")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start))
	p.stopOnce.Do(func() {}) // already stopped
	_, err := idle.Exec(ctx, "SELECT 1")
	var pge *pgconn.PgError
	if err == nil || (errors.As(err, &pge) && pge.Code != "57P01") {
		t.Errorf("idle session after shutdown: got %v, want 57P01 or a closed connection", err)
	}
	if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after SIGTERM")
	}
}

// inProcess serves the demo policy in-process with cfg's limits and
// returns a DSN stem ("host=... port=... dbname=demo sslmode=disable").
func inProcess(t testing.TB, ctx context.Context, edit func(*wire.Config)) string {
	t.Helper()
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	data, err := os.ReadFile("../demo/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("demo/policy.yaml", data, policy.Env{Getenv: func(string) string { return pg.ReaderDSN() }, ReadFile: os.ReadFile})
	if err != nil {
		t.Fatal(err)
	}
	poolCfg, err := wire.UpstreamPoolConfig(pol)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := wire.Config{Policy: pol, Ledger: store, Upstream: pool}
	edit(&cfg)
	srv, err := wire.NewServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ln.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return "host=" + host + " port=" + port + " dbname=demo sslmode=disable"
}

func TestLimits(t *testing.T) {
	ctx := testContext(t)
	dsn := inProcess(t, ctx, func(c *wire.Config) {
		c.MaxConnections = 2
		c.MaxStatementsPerAnalyst = 1
	})
	alice := dsn + " user=alice password=" + alicePassword
	a, err := pgx.Connect(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := pgx.Connect(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)

	// A third connection is one too many.
	_, err = pgx.Connect(ctx, alice)
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "53300" {
		t.Errorf("third connection: got %v, want 53300", err)
	}

	// One statement at a time for alice: b is refused while a runs.
	errc := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, fastSlowSQL)
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !upstreamActive(t, ctx, "20000000") {
		if time.Now().After(deadline) {
			t.Fatal("the statement never ran upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = b.Exec(ctx, "SELECT 1")
	if !errors.As(err, &pge) || pge.Code != "53300" || !strings.Contains(pge.Message, "statements at once") {
		t.Errorf("second concurrent statement: got %v, want 53300", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("first statement: %v", err)
	}
	if _, err := b.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("after the first statement ended: %v", err)
	}

}

func TestIdleTimeout(t *testing.T) {
	ctx := testContext(t)
	dsn := inProcess(t, ctx, func(c *wire.Config) { c.IdleTimeout = 300 * time.Millisecond })
	b, err := pgx.Connect(ctx, dsn+" user=alice password="+alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := b.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// Idle for longer than the idle timeout: the session is closed.
	time.Sleep(time.Second)
	_, err = b.Exec(ctx, "SELECT 1")
	var pge *pgconn.PgError
	if err == nil {
		t.Fatal("an idle session survived the idle timeout")
	}
	if errors.As(err, &pge) && pge.Code != "57P05" {
		t.Errorf("idle session: got %v, want 57P05", err)
	}
}
