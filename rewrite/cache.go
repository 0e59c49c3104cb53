package rewrite

import (
	"sync"

	"github.com/dpproxy/dpproxy/policy"
)

// Cache memoises Classify by the exact statement text, the policy version
// and the catalog facts the server added to it (Policy.CatalogTag). It
// never keys by pg_query's fingerprint or normalised form, which merge
// statements that differ only in constants.
type Cache struct {
	mu      sync.RWMutex
	max     int
	entries map[cacheKey]cacheEntry
}

type cacheKey struct{ version, catalog, sql string }

type cacheEntry struct {
	stmts []*Statement
	err   error
}

// NewCache returns a cache holding at most max statements texts.
func NewCache(max int) *Cache {
	return &Cache{max: max, entries: make(map[cacheKey]cacheEntry, max)}
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
	c.mu.Lock()
	if len(c.entries) >= c.max {
		// Evict an arbitrary half; map iteration order is random enough for a
		// cache whose misses cost one parse.
		n := 0
		for key := range c.entries {
			delete(c.entries, key)
			if n++; n >= c.max/2 {
				break
			}
		}
	}
	c.entries[k] = cacheEntry{stmts, err}
	c.mu.Unlock()
	return stmts, err
}
