package integration

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/wire"
)

// BenchmarkStatement is one statement end to end through an in-process
// proxy on the demo data, from one pgx client (simple protocol): wall time
// per statement on one connection, and a CPU profile of the proxy with
// -cpuprofile. The bolt ledger fsyncs every debit, as in production.
//
//	go test -run '^$' -bench Statement -benchtime 2000x ./integration/
func BenchmarkStatement(b *testing.B) {
	cases := []struct {
		name  string
		sql   string
		cache bool
	}{
		{"dp_uncached", "SELECT count(*) FROM patients WHERE age > 40", false},
		{"dp_cache_hit", "SELECT count(*) FROM patients WHERE age > 40", true},
		{"passthrough", "SELECT 1", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			dsn := benchProxy(b, ctx, c.cache)
			cfg, err := pgx.ParseConfig(dsn + " user=alice password=" + alicePassword)
			if err != nil {
				b.Fatal(err)
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(ctx)
			var n int64
			if err := conn.QueryRow(ctx, c.sql).Scan(&n); err != nil { // plan cache and answer cache warm
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := conn.QueryRow(ctx, c.sql).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchProxy serves the demo policy in process, with alice's budget
// raised to the ledger's maximum and no team budget, so that a benchmark
// can run thousands of DP statements.
func benchProxy(b *testing.B, ctx context.Context, cache bool) string {
	b.Helper()
	dir := b.TempDir()
	store, err := ledger.OpenBolt(filepath.Join(dir, "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	data, err := os.ReadFile("../demo/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	pol, err := policy.Parse("demo/policy.yaml", data, policy.Env{Getenv: func(string) string { return pg.ReaderDSN() }, ReadFile: os.ReadFile})
	if err != nil {
		b.Fatal(err)
	}
	alice := pol.Analyst("alice")
	alice.Budget.Epsilon = ledger.MaxEpsilon
	alice.Team = ""
	pool, err := pgxpool.New(ctx, pg.ReaderDSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	cfg := wire.Config{Policy: pol, Ledger: store, Upstream: pool}
	if cache {
		pol.Defaults.CacheWindow = 10 * time.Minute
		c, err := ledger.OpenBoltCache(filepath.Join(dir, "answers.db"), ledger.BoltCacheOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		cfg.Cache = c
	} else {
		pol.Defaults.CacheWindow = 0
	}
	srv, err := wire.NewServer(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ln.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return "host=" + host + " port=" + port + " dbname=demo sslmode=disable"
}
