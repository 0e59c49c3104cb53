package rewrite

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// cacheShapes are statement texts whose kept memory differs in kind: a
// typical DP plan, a long IN list, and batches of thousands of session
// commands (what an analyst filled the cache with before it was weighed).
func cacheShapes() map[string]string {
	in := make([]string, 7000)
	for i := range in {
		in[i] = fmt.Sprint(i)
	}
	return map[string]string{
		"group by":    "SELECT department, count(*), avg(cost) FROM visits WHERE visit_date >= '2025-01-01' GROUP BY department",
		"long IN":     "SELECT count(*) FROM patients WHERE age IN (" + strings.Join(in, ",") + ")",
		"9,300 SHOWs": strings.Repeat("SHOW x;", 9300),
		"3,000 SETs":  strings.Repeat("SET dp.epsilon = 0.2;", 3000),
		"refused":     strings.Repeat("SELECT name FROM patients;", 2000),
	}
}

// TestCacheWeight checks entryWeight against the heap: the memory 50
// cached copies of each shape keep (distinct texts: a comment numbers
// them) must not exceed their estimated weight, or the cache's byte bound
// would not bound memory.
func TestCacheWeight(t *testing.T) {
	pol := goldenPolicy(t)
	for name, sql := range cacheShapes() {
		t.Run(name, func(t *testing.T) {
			c := NewCache(1000, 1<<40)
			c.Classify("/*warm*/"+sql, pol) // one-time initialisation is not an entry's
			const n = 50
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 0; i < n; i++ {
				c.Classify(fmt.Sprintf("/*%d*/%s", i, sql), pol)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			kept := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
			stmts, _ := Classify(sql, pol)
			est := entryWeight(fmt.Sprintf("/*%d*/%s", 0, sql), stmts)
			t.Logf("%d bytes of text: %d kept per entry, estimated %d", len(sql), kept, est)
			if kept > est {
				t.Errorf("an entry keeps %d bytes of heap, more than its estimated weight %d", kept, est)
			}
			runtime.KeepAlive(c)
		})
	}
}

// TestCacheBytesBound fills a cache with large texts and checks that its
// weight stays within its byte bound, that a text too large to cache is
// still classified, and that ordinary statements are still cached.
func TestCacheBytesBound(t *testing.T) {
	pol := goldenPolicy(t)
	const budget = 16 << 20
	c := NewCache(4096, budget)
	batch := strings.Repeat("SHOW x;", 1000) // ~0.22 MiB estimated: cached
	for i := 0; i < 150; i++ {
		stmts, err := c.Classify(fmt.Sprintf("/*%d*/%s", i, batch), pol)
		if err != nil || len(stmts) != 1000 {
			t.Fatalf("batch %d: %d statements, %v", i, len(stmts), err)
		}
		if c.bytes > budget {
			t.Fatalf("after %d batches the cache weighs %d bytes, over its bound %d", i+1, c.bytes, budget)
		}
	}
	if len(c.entries) == 0 {
		t.Fatal("no batch was cached")
	}
	huge := strings.Repeat("SHOW x;", 2000) // over budget/64: classified, not cached
	before := len(c.entries)
	if stmts, err := c.Classify(huge, pol); err != nil || len(stmts) != 2000 {
		t.Fatalf("huge batch: %d statements, %v", len(stmts), err)
	}
	if _, ok := c.entries[cacheKey{pol.Version, pol.CatalogTag(), huge}]; ok || len(c.entries) != before {
		t.Fatal("a text over a sixty-fourth of the bound was cached")
	}
	sql := "SELECT count(*) FROM patients WHERE age > 40"
	first, _ := c.Classify(sql, pol)
	second, _ := c.Classify(sql, pol)
	if len(first) != 1 || &first[0] != &second[0] {
		t.Fatal("an ordinary statement was not served from the cache")
	}
}
