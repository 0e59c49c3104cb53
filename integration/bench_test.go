package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		cache string // "": off; else the cache-hit audit mode
	}{
		{"dp_uncached", "SELECT count(*) FROM patients WHERE age > 40", ""},
		{"dp_groupby_avg", "SELECT diagnosis, avg(income) FROM patients GROUP BY diagnosis", ""},
		{"dp_cache_hit", "SELECT count(*) FROM patients WHERE age > 40", policy.CacheHitAuditSync},
		{"dp_cache_hit_batched", "SELECT count(*) FROM patients WHERE age > 40", policy.CacheHitAuditBatched},
		{"passthrough", "SELECT 1", ""},
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
			if _, err := conn.Exec(ctx, c.sql); err != nil { // plan cache and answer cache warm
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := conn.Exec(ctx, c.sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchProxy serves the demo policy in process, with alice's budget
// raised to the ledger's maximum and no team budget, so that a benchmark
// can run thousands of DP statements.
func benchProxy(b *testing.B, ctx context.Context, cacheHitAudit string) string {
	b.Helper()
	dir := b.TempDir()
	return inProcess(b, ctx, func(cfg *wire.Config) {
		pol := cfg.Policy
		alice := pol.Analyst("alice")
		alice.Budget.Epsilon = ledger.MaxEpsilon
		alice.Team = ""
		if cacheHitAudit == "" {
			pol.Defaults.CacheWindow = 0
			return
		}
		pol.Defaults.CacheWindow = 10 * time.Minute
		pol.Ledger.CacheHitAudit = cacheHitAudit
		c, err := ledger.OpenBoltCache(filepath.Join(dir, "answers.db"), ledger.BoltCacheOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		cfg.Cache = c
	})
}
