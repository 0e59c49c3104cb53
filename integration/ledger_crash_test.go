package integration

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/internal/testenv"
	"github.com/dpproxy/dpproxy/ledger"
)

// crashQuery is a DP statement made unique by its constant n, so each
// answer can be matched to its ledger entry.
func crashQuery(n int) string {
	return fmt.Sprintf("SELECT count(*) FROM patients WHERE age > %d", n)
}

// TestLedgerCrashKill9: dpproxy with a bolt ledger is killed with SIGKILL
// in the middle of a load of DP queries from several pgx clients, then
// restarted on the same file. Every answer a client received must have
// exactly one ledger entry; entries without an answer (charged, then the
// answer was lost in the crash) are expected, never the reverse.
func TestLedgerCrashKill9(t *testing.T) {
	ctx := testContext(t)
	ledgerPath := filepath.Join(t.TempDir(), "ledger.db")
	addr := freeAddr(t)
	policyText := boltLedgerPolicy(t, addr, ledgerPath, 1000)
	p := startLedgerProxy(t, addr, policyText)

	const clients = 6
	var (
		mu       sync.Mutex
		answered = map[string]bool{}
		count    atomic.Int64
		wg       sync.WaitGroup
	)
	for c := range clients {
		conn := p.connect(t, ctx, "carol", carolPassword, c%2 == 0)
		if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := 0; ; i++ {
				q := crashQuery(1000 + c*100_000 + i)
				if _, err := queryCount(ctx, conn, q); err != nil {
					return // the proxy is gone
				}
				mu.Lock()
				answered[q] = true
				mu.Unlock()
				count.Add(1)
			}
		})
	}
	deadline := time.Now().Add(time.Minute)
	for count.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.kill()
	wg.Wait()
	if len(answered) < 400 {
		t.Fatalf("only %d answers before the kill (want 400)", len(answered))
	}

	// Restart on the same file: it serves, and the ledger is intact.
	p2 := startLedgerProxy(t, addr, policyText)
	conn := p2.connect(t, ctx, "carol", carolPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
		t.Fatal(err)
	}
	after := crashQuery(999)
	if _, err := queryCount(ctx, conn, after); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	answered[after] = true
	conn.Close(ctx)
	p2.terminate()

	store, err := ledger.OpenBolt(ledgerPath, ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	entries, total := entriesByStatement(t, ctx, store, "kill -9")
	for q := range answered {
		if entries[q] != 1 {
			t.Errorf("answered %q has %d ledger entries, want 1", q, entries[q])
		}
	}
	for q, n := range entries {
		if n != 1 {
			t.Errorf("%q has %d ledger entries", q, n)
		}
	}
	bal, err := store.Balance(ctx, "carol")
	if err != nil || bal.Queries != int64(total) {
		t.Fatalf("balance %+v, %d entries, %v", bal, total, err)
	}
	t.Logf("%d answers, %d ledger entries (%d charged but unanswered at the kill)", len(answered), total, total-len(answered))
}

// TestLedgerRedisThreeProxies: three dpproxy processes share one Redis
// ledger; carol's budget allows exactly N queries; 3N are sent across the
// three at once and exactly N are answered.
func TestLedgerRedisThreeProxies(t *testing.T) {
	ctx := testContext(t)
	raddr := testenv.StartRedis(t)
	const n, eps = 20, 0.05
	var proxies []*ledgerProxy
	for range 3 {
		addr := freeAddr(t)
		proxies = append(proxies, startLedgerProxy(t, addr, redisLedgerPolicy(t, addr, n*eps, raddr)))
	}
	var conns []*pgx.Conn
	for i := range 6 {
		conn := proxies[i%3].connect(t, ctx, "carol", carolPassword, i%2 == 0)
		if _, err := conn.Exec(ctx, fmt.Sprintf("SET dp.epsilon = %g", eps)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, conn := range conns {
		wg.Go(func() {
			<-start
			for j := range n / 2 {
				_, err := queryCount(ctx, conn, crashQuery(10_000+i*100+j))
				switch code := sqlstate(err); {
				case err == nil:
					ok.Add(1)
				case code == "53400":
					refused.Add(1)
				default:
					t.Errorf("query: %v", err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != n || refused.Load() != 2*n {
		t.Fatalf("%d answered, %d refused across 3 proxies; want %d and %d", ok.Load(), refused.Load(), n, 2*n)
	}
	rc := redis.NewClient(&redis.Options{Addr: raddr})
	defer rc.Close()
	s, err := ledger.NewRedis(rc, ledger.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bal, err := s.Balance(ctx, "carol")
	if err != nil || bal.Queries != n || bal.RemainingEpsilon() != 0 {
		t.Fatalf("carol's Redis balance %+v %v", bal, err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
