package integration

// Fault injection against real processes. A dpproxy killed with SIGKILL
// mid-load is covered by TestLedgerCrashKill9 (ledger_crash_test.go): every
// answer a client received has exactly one ledger entry after the restart.

import (
	"context"
	bin "encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/demo"
	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/internal/testenv"
	"github.com/dpproxy/dpproxy/ledger"
)

// TestFaultRedisStopAndAOFRestart: Redis (the ledger) is shut down in the
// middle of a load of DP queries. Every answer a client received has a
// ledger entry (fail closed: no answer without a charge), queries while
// Redis is down are refused with 58000, and once Redis is restarted from
// its append-only file the budget is intact (not reset) and the proxy
// serves again.
func TestFaultRedisStopAndAOFRestart(t *testing.T) {
	ctx := testContext(t)
	raddr := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: raddr})
	t.Cleanup(func() { rc.Close() })
	dir, err := rc.ConfigGet(ctx, "dir").Result()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startLedgerProxy(t, addr, redisLedgerPolicy(t, addr, 1000, raddr))

	var (
		mu       sync.Mutex
		answered = map[string]bool{}
		count    atomic.Int64
		refused  atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for c := range 4 {
		conn := p.connect(t, ctx, "carol", carolPassword, c%2 == 0)
		if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				q := crashQuery(5000 + c*100_000 + i)
				_, err := queryCount(ctx, conn, q)
				switch {
				case err == nil:
					mu.Lock()
					answered[q] = true
					mu.Unlock()
					count.Add(1)
				case sqlstate(err) == "58000":
					refused.Add(1)
				default:
					t.Errorf("during the Redis outage: %v", err)
					return
				}
			}
		})
	}
	for count.Load() < 100 {
		time.Sleep(5 * time.Millisecond)
	}
	_ = rc.Shutdown(ctx).Err() // flushes the AOF, then exits
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("no query was refused while Redis was down")
	}

	// Restart Redis on the same port and directory: it loads the AOF.
	_, port, _ := net.SplitHostPort(raddr)
	server, err := exec.LookPath("redis-server")
	if err != nil {
		server = "/usr/bin/redis-server"
	}
	cmd := exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
		"--dir", dir["dir"], "--logfile", filepath.Join(dir["dir"], "redis2.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for rc.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("restarted Redis does not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	store, err := ledger.NewRedis(rc, ledger.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	entries, total := entriesByStatement(t, ctx, store, "the AOF restart")
	lost := 0
	for q := range answered {
		if entries[q] != 1 {
			lost++
			t.Errorf("answered %q has %d ledger entries after the restart, want 1", q, entries[q])
		}
	}
	bal, err := store.Balance(ctx, "carol")
	if err != nil || bal.Queries != int64(total) || bal.Queries < int64(len(answered)) {
		t.Fatalf("balance after restart %+v (%v), %d entries, %d answered: the budget was reset", bal, err, total, len(answered))
	}
	// The proxy serves again once Redis is back.
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	deadline = time.Now().Add(15 * time.Second)
	for {
		if _, err := queryCount(ctx, conn, crashQuery(4)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy does not serve after the Redis restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("redis outage: %d answered before, %d refused during, %d entries after the AOF restart, %d entries lost", len(answered), refused.Load(), total, lost)
}

// TestFaultPostgresRestart: the upstream PostgreSQL (a dedicated cluster)
// restarts under load; statements in flight fail with a clean SQLSTATE
// (never a hang or a dropped connection to the analyst), and the proxy
// reconnects and answers once it is back.
func TestFaultPostgresRestart(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	c, err := pgcluster.Start(ctx, filepath.Join(dir, "pg"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if err := demo.Install(ctx, c.DSN, nilWriter{}); err != nil {
		t.Fatal(err)
	}
	reader := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=demo sslmode=disable", c.Port, demo.ReaderRole)
	p := startProxy(t, proxyOptions{carolBudget: 1000, upstreamDSN: reader})
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
		t.Fatal(err)
	}
	var failed, ok atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range 3 {
		lc := p.connect(t, ctx, "carol", carolPassword, i%2 == 0)
		if _, err := lc.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for j := 0; !stop.Load(); j++ {
				qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := queryCount(qctx, lc, crashQuery(j))
				cancel()
				switch code := sqlstate(err); {
				case err == nil:
					ok.Add(1)
				case code == "58000" || code == "57P01" || code == "08006" || code == "57P03" || code == "08000" || code == "08001":
					failed.Add(1)
				default:
					t.Errorf("query during the restart: %v (SQLSTATE %q)", err, code)
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := pgcluster.Start(ctx, filepath.Join(dir, "pg"), c.Port); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := queryCount(ctx, conn, countQuery); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no answer 30s after the upstream restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("postgres restart: %d answered, %d failed cleanly during the restart", ok.Load(), failed.Load())
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestFaultConnectionsAndMalformedMessages: 1,000 concurrent connections,
// 999 of them stalled (a TCP connect with nothing sent, half a startup
// packet, a startup and no password), fill the proxy's connection cap; the
// well-behaved analyst keeps being served, connection 1,001 is refused with
// DP019 until the startup deadline (30s) cuts the stalled ones. Malformed
// messages (garbage, a negative or huge length, an unknown message type)
// are refused without disturbing anyone.
func TestFaultConnectionsAndMalformedMessages(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 100})
	good := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := good.Exec(ctx, "SET dp.epsilon = 0.01"); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	startup := func(user string) []byte {
		body := []byte{0, 3, 0, 0}
		body = append(body, "user\x00"+user+"\x00database\x00demo\x00\x00"...)
		return append(bin.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
	}
	for i := range 999 { // the well-behaved session holds the 1,000th slot
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		switch i % 3 {
		case 1:
			_, _ = c.Write(startup("carol")[:6])
		case 2:
			_, _ = c.Write(startup("carol"))
		}
	}
	if _, err := queryCount(ctx, good, countQuery); err != nil {
		t.Fatalf("with 1,000 stalled connections open: %v", err)
	}
	// The proxy's connection cap (1,000) is full: a new one is refused
	// with DP019 until the stalled ones hit the 30s startup deadline.
	if _, err := pgx.Connect(ctx, p.dsn("carol", carolPassword)); sqlstate(err) != "53300" {
		t.Fatalf("connection 1,001: %v, want 53300", err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		c2, err := pgx.Connect(ctx, p.dsn("carol", carolPassword))
		if err == nil {
			c2.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stalled connections not cut after 45s: %v", err)
		}
		time.Sleep(time.Second)
	}

	malformed := [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		{0, 0, 0, 3},
		{0x7f, 0xff, 0xff, 0xff},
		append(startup("carol"), 'Q', 0xff, 0xff, 0xff, 0xf0),
		append(startup("carol"), 'Z', 0, 0, 0, 4),
	}
	for i, m := range malformed {
		c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(m)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 4096)
		_, _ = c.Read(buf) // an error response or a close; never a crash
		c.Close()
		if _, err := queryCount(ctx, good, crashQuery(i)); err != nil {
			t.Fatalf("after malformed message %d: %v", i, err)
		}
	}
	// Stalled clients are cut loose eventually or stay harmless: closing
	// them all leaves the proxy serving.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if _, err := queryCount(ctx, good, countQuery); err != nil {
		t.Fatal(err)
	}
	t.Logf("1,000 concurrent connections (999 stalled) and %d malformed messages survived", len(malformed))
}
