package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/wire"
)

// TestAnswerCacheRepeatsForFree: within the cache window the same statement
// gets the same noisy answer at no new cost, and the audit trail still lists
// it as a cache hit; another constant is a new question and is charged.
func TestAnswerCacheRepeatsForFree(t *testing.T) {
	for _, mode := range []string{"sync", "batched"} {
		t.Run(mode, func(t *testing.T) { testAnswerCache(t, mode) })
	}
}

// testAnswerCache runs TestAnswerCacheRepeatsForFree with the ledger's
// cache_hit_audit mode: with batched the hits' entries are written after
// their answers, and all of them are in the ledger once the proxy stopped.
func testAnswerCache(t *testing.T, mode string) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{cacheWindow: "10m", cacheHitAudit: mode})
	conn, log := p.connectWithNotices(t, ctx, "alice", alicePassword, false)
	query := "SELECT sex, count(*) FROM patients GROUP BY sex ORDER BY sex"
	answers := make([]string, 3)
	for i := range answers {
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for rows.Next() {
			var sex string
			var n int64
			if err := rows.Scan(&sex, &n); err != nil {
				t.Fatal(err)
			}
			b.WriteString(sex + "=" + strconv.FormatInt(n, 10) + ";")
		}
		rows.Close()
		answers[i] = b.String()
	}
	if answers[0] != answers[1] || answers[1] != answers[2] {
		t.Errorf("repeats differ: %q", answers)
	}
	var budget string
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&budget); err != nil || budget != "4.5 of 5 left" {
		t.Errorf("after one charged and two cached answers: %q %v", budget, err)
	}
	if notices := log.all(); len(notices) != 3 || !strings.Contains(notices[1], "from the cache, no charge") {
		t.Errorf("notices %q", notices)
	}
	// The same question written differently is the same question.
	rows, err := conn.Query(ctx, "select SEX, COUNT(*)   from patients /* again */ group by sex order by sex")
	if err != nil {
		t.Fatal(err)
	}
	var again strings.Builder
	for rows.Next() {
		var sex string
		var n int64
		if err := rows.Scan(&sex, &n); err != nil {
			t.Fatal(err)
		}
		again.WriteString(sex + "=" + strconv.FormatInt(n, 10) + ";")
	}
	rows.Close()
	if again.String() != answers[0] {
		t.Errorf("a rewritten repeat was answered afresh: %q vs %q", again.String(), answers[0])
	}
	// A different constant is a different question: charged afresh.
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE age > 41").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE age > 42").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&budget); err != nil || budget != "3.5 of 5 left" {
		t.Errorf("after two new questions: %q %v", budget, err)
	}
	conn.Close(ctx)
	_, entries := p.stoppedLedger(t, ctx)
	// Batched, hits of one statement text may share an entry (its
	// repeats); every hit is recorded once either way.
	hits, charged := 0, 0
	for _, e := range entries {
		if !e.CacheHit {
			charged++
			continue
		}
		hits += 1 + len(e.Repeats)
		if e.Epsilon != 0 {
			t.Errorf("cache hit charged %v", e.Epsilon)
		}
		if mode == "sync" && len(e.Repeats) > 0 {
			t.Errorf("sync mode merged hits: %+v", e)
		}
	}
	if charged != 3 || hits != 3 {
		t.Errorf("ledger: %d charged entries and %d cache hits, want 3 and 3", charged, hits)
	}
}

// TestAnswerCacheWindowEnds: a repeat is answered from the cache (the
// store, then the proxy's memo of it: wire/answermemo.go) only within the
// window; once it has passed, the same statement is a new question,
// charged and answered afresh.
func TestAnswerCacheWindowEnds(t *testing.T) {
	ctx := testContext(t)
	const window = 4 * time.Second
	dsn := inProcess(t, ctx, func(cfg *wire.Config) {
		cfg.Policy.Defaults.CacheWindow = window
		cfg.Policy.Analyst("alice").Team = ""
		c, err := ledger.OpenBoltCache(filepath.Join(t.TempDir(), "answers.db"), ledger.BoltCacheOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cfg.Cache = c
	})
	pcfg, err := pgx.ParseConfig(dsn + " user=alice password=" + alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	var notices []string
	pcfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ask := func() string {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE age > 40").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return notices[len(notices)-1]
	}
	start := time.Now()
	want := []bool{false, true, true} // charged, then from the store, then from the memo
	for i, cached := range want {
		msg := ask()
		if time.Since(start) >= window {
			t.Fatalf("three statements took %v, longer than the %v window", time.Since(start), window)
		}
		if got := strings.Contains(msg, "from the cache"); got != cached {
			t.Fatalf("statement %d: notice %q; want from the cache %v", i+1, msg, cached)
		}
	}
	time.Sleep(time.Until(start.Add(window + 200*time.Millisecond)))
	if msg := ask(); !strings.Contains(msg, "dp: spent") {
		t.Errorf("after the window: notice %q; want a new charge", msg)
	}
	if msg := ask(); !strings.Contains(msg, "from the cache") {
		t.Errorf("the new answer's repeat: notice %q; want it from the cache", msg)
	}
}
