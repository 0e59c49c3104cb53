package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDebit measures one debit end to end (validation, encoding, the
// atomic check+debit+audit, fsync for bolt) with one client ("serial") and
// with 16 concurrent clients ("concurrent16"). It reports latency p50/p99 in
// milliseconds and throughput in debits/s.
//
//	go test -run '^$' -bench Debit -benchtime 2000x ./ledger/
func BenchmarkDebit(b *testing.B) {
	stores := []struct {
		name  string
		open  func(b *testing.B) Store
		heavy bool // ModeRDP, a daily budget and a shared team budget
	}{
		{"bolt", func(b *testing.B) Store { s, _ := openTestBolt(b); return s }, false},
		{"redis", func(b *testing.B) Store { return openTestRedis(b) }, false},
		{"bolt-rdp-team", func(b *testing.B) Store {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "ledger.db"), BoltOptions{Mode: ModeRDP})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}, true},
		{"redis-rdp-team", func(b *testing.B) Store {
			s, err := NewRedis(redisClient(b), RedisOptions{Mode: ModeRDP, HashTag: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}, true},
	}
	for _, st := range stores {
		for _, clients := range []int{1, 16} {
			name := fmt.Sprintf("%s/serial", st.name)
			if clients > 1 {
				name = fmt.Sprintf("%s/concurrent%d", st.name, clients)
			}
			b.Run(name, func(b *testing.B) {
				s := st.open(b)
				ctx := context.Background()
				budget := Budget{Epsilon: MaxEpsilon, Delta: 1}
				lat := make([]time.Duration, b.N)
				var next atomic.Int64
				analysts := []string{"alice", "bob", "carol", "dave"}
				work := func() {
					i := int(next.Add(1) - 1)
					c := charge(analysts[i%len(analysts)], NewID(), 0.001, budget)
					c.Delta = 1e-12
					if st.heavy {
						c.Delta = 0
						c.Budget.Period = PeriodDaily
						c.Shared = []Limit{{Account: "team:all", Budget: budget}}
					}
					start := time.Now()
					if _, err := s.Debit(ctx, c); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(start)
				}
				b.ResetTimer()
				start := time.Now()
				if clients == 1 {
					for range b.N {
						work()
					}
				} else {
					b.SetParallelism((clients + 1) / 2) // × GOMAXPROCS (2 here) goroutines
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							work()
						}
					})
				}
				elapsed := time.Since(start)
				b.StopTimer()
				slices.Sort(lat)
				q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
				b.ReportMetric(q(0.50), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "debits/s")
			})
		}
	}
}
