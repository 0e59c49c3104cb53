package rewrite

import "testing"

// Parse + plan of typical analyst statements under the golden policy: cold
// (Classify: pg_query parse, validation, plan, deparse, re-parse and
// verification of the rewritten SQL) and from the plan cache (Cache.Classify
// with the same text and policy version). Figures: docs/benchmarks.md.
var benchStatements = map[string]string{
	"row_groupby_avg": "SELECT sex, count(*), avg(income) FROM patients WHERE age > 30 GROUP BY sex",
	"unit_groupby":    "SELECT department, count(*), avg(cost) FROM visits WHERE visit_date >= '2025-01-01' GROUP BY department",
	"join_public":     "SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name GROUP BY d.building",
	"count_selective": "SELECT count(*) FROM patients WHERE zip = '10025'",
	"session_set":     "SET dp.epsilon = 0.2",
}

func BenchmarkClassifyCold(b *testing.B) {
	pol := goldenPolicy(b)
	for name, sql := range benchStatements {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Classify(sql, pol); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	pol := goldenPolicy(b)
	for name, sql := range benchStatements {
		b.Run(name, func(b *testing.B) {
			c := NewCache(4096, 64<<20)
			if _, err := c.Classify(sql, pol); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Classify(sql, pol); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClassifyCachedParallel is the cache under concurrent sessions
// (a read lock per lookup).
func BenchmarkClassifyCachedParallel(b *testing.B) {
	pol := goldenPolicy(b)
	sql := benchStatements["unit_groupby"]
	c := NewCache(4096, 64<<20)
	if _, err := c.Classify(sql, pol); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Classify(sql, pol); err != nil {
				b.Fatal(err)
			}
		}
	})
}
