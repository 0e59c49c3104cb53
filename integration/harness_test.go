package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/internal/testenv"
	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
)

var (
	binary string            // the dpproxy binary under test
	pg     *testenv.Postgres // shared upstream with the demo data
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dpproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "dpproxy")
	build := exec.Command("go", "build", "-o", binary, "../cmd/dpproxy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building dpproxy:", err)
		return 1
	}
	pg, err = testenv.StartDemoPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		return 1
	}
	defer pg.Stop()
	return m.Run()
}

// Passwords of the test analysts.
const (
	alicePassword = "alice-demo" // from demo/policy.yaml
	carolPassword = "carol-test"
	danaPassword  = "dana-test"
)

// proxy is a running dpproxy process.
type proxy struct {
	addr       string
	policyPath string
	ledgerPath string
	cmd        *exec.Cmd
	logs       *testenv.Buffer
	stopOnce   sync.Once
}

type proxyOptions struct {
	carolBudget float64 // carol's epsilon budget; 0 means 1.0
	ledgerPath  string  // reuse a ledger file
	// danaBudget, when positive, adds dana, an analyst with this epsilon
	// budget, for tests that ask many questions (the client matrix).
	danaBudget float64
	serveArgs  []string // extra `dpproxy serve` flags
	// cacheWindow is the answer cache window, e.g. "10m"; "" turns the
	// cache off (the demo policy's own window would answer repeats free).
	cacheWindow string
	// upstreamDSN replaces the shared demo database's reader DSN, e.g. for
	// a copy of it with planted rows.
	upstreamDSN string
	// statementTimeout replaces the demo policy's upstream statement_timeout.
	statementTimeout string
	// maxConns replaces the demo policy's upstream max_conns (0 keeps 16).
	maxConns int
	// shadowVisits marks visits `shadow: true` (read from its pre-bounded
	// copy, which the test must refresh).
	shadowVisits bool
	// cacheHitAudit sets the ledger's cache_hit_audit ("" keeps the default,
	// sync).
	cacheHitAudit string
	// extraTables is YAML for more `tables:` entries (two-space indented
	// list items), for tests on their own copy of the demo database.
	extraTables string
}

var cacheWindowLine = regexp.MustCompile(`cache_window: \S+`)

// testPolicy is the demo policy plus carol, an analyst with a small budget.
func testPolicy(t *testing.T, listen, ledgerPath string, o proxyOptions) string {
	t.Helper()
	demoPolicy, err := os.ReadFile("../demo/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := policy.NewVerifier(carolPassword, []byte("integration-salt"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	budget := o.carolBudget
	if budget == 0 {
		budget = 1.0
	}
	text := string(demoPolicy)
	text = strings.Replace(text, "listen: 127.0.0.1:6432", "listen: "+listen, 1)
	text = strings.Replace(text, "path: ledger.db", "path: "+ledgerPath, 1)
	if o.maxConns > 0 {
		text = strings.Replace(text, "max_conns: 16", fmt.Sprintf("max_conns: %d", o.maxConns), 1)
	}
	if o.statementTimeout != "" {
		text = strings.Replace(text, "statement_timeout: 30s", "statement_timeout: "+o.statementTimeout, 1)
	}
	window := o.cacheWindow
	if window == "" {
		window = "0s" // fresh noise (and a charge) for every statement unless a test asks for the cache
	}
	text = cacheWindowLine.ReplaceAllString(text, "cache_window: "+window)
	if o.cacheHitAudit != "" {
		text = strings.Replace(text, "\nledger:\n", "\nledger:\n  cache_hit_audit: "+o.cacheHitAudit+"\n", 1)
		if !strings.Contains(text, "cache_hit_audit: "+o.cacheHitAudit) {
			t.Fatal("could not set cache_hit_audit in the test policy")
		}
	}
	if o.shadowVisits {
		text = strings.Replace(text, "    unit: patient_id\n", "    unit: patient_id\n    shadow: true\n", 1)
	}
	carol := fmt.Sprintf("  - name: carol\n    password: %q\n    budget: {epsilon: %g, delta: 1.0e-5}\n", v.String(), budget)
	if o.danaBudget > 0 {
		dv, err := policy.NewVerifier(danaPassword, []byte("integration-dana"), 4096)
		if err != nil {
			t.Fatal(err)
		}
		carol += fmt.Sprintf("  - name: dana\n    password: %q\n    budget: {epsilon: %g}\n", dv.String(), o.danaBudget)
	}
	text = strings.Replace(text, "\ntables:\n", "\n"+carol+"\ntables:\n"+o.extraTables, 1)
	if !strings.Contains(text, "name: carol") || !strings.Contains(text, listen) {
		t.Fatal("could not derive the test policy from demo/policy.yaml")
	}
	return text
}

func startProxy(t *testing.T, o proxyOptions) *proxy {
	t.Helper()
	dir := t.TempDir()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{
		addr:       fmt.Sprintf("127.0.0.1:%d", port),
		policyPath: filepath.Join(dir, "policy.yaml"),
		ledgerPath: o.ledgerPath,
		logs:       &testenv.Buffer{},
	}
	if p.ledgerPath == "" {
		p.ledgerPath = filepath.Join(dir, "ledger.db")
	}
	if err := os.WriteFile(p.policyPath, []byte(testPolicy(t, p.addr, p.ledgerPath, o)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary, append([]string{"serve", "--policy", p.policyPath, "--admin", ""}, o.serveArgs...)...)
	upstream := pg.ReaderDSN()
	if o.upstreamDSN != "" {
		upstream = o.upstreamDSN
	}
	p.cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+upstream)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("dpproxy logs:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("dpproxy did not listen on %s: %v\n%s", p.addr, err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proxy) stop(t *testing.T) {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dpproxy exited with %v", err)
			}
		case <-time.After(40 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Error("dpproxy did not stop within 40s of SIGTERM")
		}
	})
}

// stoppedLedger stops the proxy (SIGTERM: pending writes finish), opens
// its bolt ledger and returns it with every audit entry; the store is
// closed when the test ends.
func (p *proxy) stoppedLedger(t *testing.T, ctx context.Context) (ledger.Store, []ledger.Entry) {
	t.Helper()
	p.stop(t)
	store, err := ledger.OpenBolt(p.ledgerPath, ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	entries, err := store.Entries(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return store, entries
}

func (p *proxy) dsn(user, password string) string {
	host, port, _ := net.SplitHostPort(p.addr)
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=demo sslmode=disable", host, port, user, password)
}

func (p *proxy) connect(t *testing.T, ctx context.Context, user, password string, simple bool) *pgx.Conn {
	t.Helper()
	conn, _ := p.connectWithNotices(t, ctx, user, password, simple)
	return conn
}

// exact runs sql directly on the upstream as superuser.
func exact(t *testing.T, ctx context.Context, sql string) int64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// noticeLog collects the NOTICE messages a connection receives.
type noticeLog struct {
	mu  sync.Mutex
	msg []string
}

func (l *noticeLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msg...)
}

// connectWithNotices connects like connect and records the notices.
func (p *proxy) connectWithNotices(t *testing.T, ctx context.Context, user, password string, simple bool) (*pgx.Conn, *noticeLog) {
	t.Helper()
	cfg, err := pgx.ParseConfig(p.dsn(user, password))
	if err != nil {
		t.Fatal(err)
	}
	if simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	log := &noticeLog{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		log.mu.Lock()
		log.msg = append(log.msg, n.Message)
		log.mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to dpproxy as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, log
}
