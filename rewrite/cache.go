package rewrite

import (
	"sync"

	"github.com/dpproxy/dpproxy/policy"
)

// Cache memoises Classify by the exact statement text, the policy version
// and the catalog facts the server added to it (Policy.CatalogTag). It
// never keys by pg_query's fingerprint or normalised form, which merge
// statements that differ only in constants.
//
// It is bounded by entries and by an estimate of the memory they keep
// (entryWeight): every analyst's texts share it, and a count alone let one
// analyst fill it with 64 KiB batches of thousands of SHOW statements, about
// 1 MiB kept each, until the process ran out of memory without running
// anything upstream or spending any budget.
type Cache struct {
	mu       sync.RWMutex
	max      int
	maxBytes int64
	bytes    int64
	entries  map[cacheKey]cacheEntry
}

type cacheKey struct{ version, catalog, sql string }

type cacheEntry struct {
	stmts  []*Statement
	err    error
	weight int64
}

// NewCache returns a cache holding at most max statement texts whose
// estimated memory is at most maxBytes. A text estimated above maxBytes/64
// is classified every time rather than cached: no ordinary statement comes
// near it, and one would evict a sixty-fourth of the cache.
func NewCache(max int, maxBytes int64) *Cache {
	return &Cache{max: max, maxBytes: maxBytes, entries: make(map[cacheKey]cacheEntry, max)}
}

// Classify is Classify(sql, pol), from the cache when possible. Refusals are
// cached too: they are as deterministic as plans.
func (c *Cache) Classify(sql string, pol *policy.Policy) ([]*Statement, error) {
	k := cacheKey{pol.Version, pol.CatalogTag(), sql}
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if ok {
		return e.stmts, e.err
	}
	stmts, err := Classify(sql, pol)
	w := entryWeight(sql, stmts)
	if w > c.maxBytes/64 {
		return stmts, err
	}
	c.mu.Lock()
	if old, ok := c.entries[k]; ok { // classified meanwhile by another session
		c.mu.Unlock()
		return old.stmts, old.err
	}
	if len(c.entries) >= c.max || c.bytes+w > c.maxBytes {
		// Evict an arbitrary half of the entries, and more while the cache
		// with the new one would weigh over half its bound; map iteration
		// order is random enough for a cache whose misses cost one parse.
		n := 0
		for key, old := range c.entries {
			if n >= c.max/2 && c.bytes+w <= c.maxBytes/2 {
				break
			}
			delete(c.entries, key)
			c.bytes -= old.weight
			n++
		}
	}
	c.entries[k] = cacheEntry{stmts, err, w}
	c.bytes += w
	c.mu.Unlock()
	return stmts, err
}

// entryWeight overestimates the heap an entry keeps: the text (the key,
// and the statements' own texts, which are substrings of it) and what
// parsing left behind it, about 4 bytes per byte of text (a long IN list's
// constants); a DP plan's structures (4.3 KiB measured for a GROUP BY);
// and a session command's (128–160 bytes each). TestCacheWeight checks the
// estimate against the heap.
func entryWeight(sql string, stmts []*Statement) int64 {
	w := 5*int64(len(sql)) + 256
	for _, st := range stmts {
		if st.Plan != nil {
			w += 6 << 10
		} else {
			w += 192
		}
	}
	return w
}
