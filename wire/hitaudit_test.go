package wire

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dpproxy/dpproxy/ledger"
)

// TestHitAuditWritesEveryHit: hits queued from many goroutines are all in
// the bolt ledger after close, each once, as zero charges marked as hits;
// hits queued after close are refused so that the caller writes them.
func TestHitAuditWritesEveryHit(t *testing.T) {
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := newHitAudit(store, slog.New(slog.DiscardHandler))
	const workers, each = 16, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c := ledger.Charge{ID: fmt.Sprintf("hit-%d-%d", w, i), Analyst: fmt.Sprintf("a%d", w%3),
					Budget: ledger.Budget{Epsilon: 1}, Statement: "SELECT count(*) FROM t", CacheHit: true, Time: time.Now()}
				if !h.add(c) {
					t.Errorf("hit %s refused while open", c.ID)
				}
			}
		}()
	}
	wg.Wait()
	h.close()
	if h.add(ledger.Charge{ID: "late", Analyst: "a0"}) {
		t.Error("a hit was queued after close")
	}
	hits, entries := auditedHits(t, store)
	if len(hits) != workers*each {
		t.Errorf("%d hits written, want %d", len(hits), workers*each)
	}
	// One statement per analyst: the hits of a flush share entries.
	if entries >= workers*each {
		t.Errorf("%d entries for %d hits; want them merged", entries, workers*each)
	}
	if err := store.Verify(context.Background()); err != nil {
		t.Errorf("chain after batched hits: %v", err)
	}
}

// auditedHits returns the IDs of the hits in store's entries (an entry's
// own and its repeats'), failing the test on a hit recorded twice, a
// charged hit, or analysts' query counts that differ from their hits; and
// the number of entries.
func auditedHits(t *testing.T, store ledger.Store) (map[string]bool, int) {
	t.Helper()
	ctx := context.Background()
	entries, err := store.Entries(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	perAnalyst := map[string]int64{}
	for _, e := range entries {
		if !e.CacheHit || e.Epsilon != 0 {
			t.Errorf("entry %s: cache hit %v, epsilon %v", e.ID, e.CacheHit, e.Epsilon)
		}
		for _, id := range append([]string{e.ID}, repeatIDs(e.Repeats)...) {
			if seen[id] {
				t.Errorf("hit %s recorded twice", id)
			}
			seen[id] = true
			perAnalyst[e.Analyst]++
		}
	}
	for analyst, n := range perAnalyst {
		b, err := store.Balance(ctx, analyst)
		if err != nil || b.Queries != n {
			t.Errorf("analyst %s: %d queries counted (%v), %d hits recorded", analyst, b.Queries, err, n)
		}
	}
	return seen, len(entries)
}

func repeatIDs(rs []ledger.Repeat) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// failingFirst is a real ledger whose first n debits fail as an unreachable
// one would, to drive the retry path.
type failingFirst struct {
	ledger.Store
	mu sync.Mutex
	n  int
}

func (f *failingFirst) Debit(ctx context.Context, c ledger.Charge) (ledger.Balance, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return ledger.Balance{}, ledger.ErrUnavailable
	}
	return f.Store.Debit(ctx, c)
}

// lostAcks is a real ledger whose first n debits are written but answered
// as failures, as when the acknowledgement of a write is lost.
type lostAcks struct {
	ledger.Store
	mu sync.Mutex
	n  int
}

func (l *lostAcks) Debit(ctx context.Context, c ledger.Charge) (ledger.Balance, error) {
	b, err := l.Store.Debit(ctx, c)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 && err == nil {
		l.n--
		return ledger.Balance{}, ledger.ErrUnavailable
	}
	return b, err
}

// TestHitAuditRetries: hits whose write failed, or seemed to, are retried
// (merged entries as they were, so that the ledger knows them by ID), and
// none is lost or recorded twice.
func TestHitAuditRetries(t *testing.T) {
	for name, wrap := range map[string]func(ledger.Store) ledger.Store{
		"not written": func(s ledger.Store) ledger.Store { return &failingFirst{Store: s, n: 5} },
		"ack lost":    func(s ledger.Store) ledger.Store { return &lostAcks{Store: s, n: 5} },
	} {
		t.Run(name, func(t *testing.T) {
			store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			h := newHitAudit(wrap(store), slog.New(slog.DiscardHandler))
			for i := range 100 { // ten statements, ten hits each
				h.add(ledger.Charge{ID: fmt.Sprintf("hit-%d", i), Analyst: "alice", Budget: ledger.Budget{Epsilon: 1},
					Statement: fmt.Sprintf("SELECT %d", i%10), CacheHit: true, Time: time.Now()})
			}
			time.Sleep(2 * hitRetryEvery) // the retry runs before close, not only at it
			h.close()
			if hits, _ := auditedHits(t, store); len(hits) != 100 {
				t.Errorf("%d hits recorded after retries, want 100", len(hits))
			}
		})
	}
}

// TestHitAuditRetryNotMerged: a hit whose write seemed to fail (it was
// written, its acknowledgement lost) is resent alone, not merged with the
// hits of the same statement that came after it: merged, the ledger would
// take the entry for the one already written and drop the new hits.
func TestHitAuditRetryNotMerged(t *testing.T) {
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := newHitAudit(&lostAcks{Store: store, n: 1}, slog.New(slog.DiscardHandler))
	hit := func(id string) ledger.Charge {
		return ledger.Charge{ID: id, Analyst: "alice", Budget: ledger.Budget{Epsilon: 1},
			Statement: "SELECT 1", CacheHit: true, Time: time.Now()}
	}
	h.add(hit("first"))
	deadline := time.Now().Add(10 * time.Second)
	for { // the first flush writes it and is told it failed
		h.mu.Lock()
		retrying := len(h.retry) == 1
		h.mu.Unlock()
		if retrying {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first hit was not queued for a retry within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	h.add(hit("second"))
	h.add(hit("third"))
	h.close()
	if hits, _ := auditedHits(t, store); len(hits) != 3 {
		t.Errorf("%d hits recorded, want 3: %v", len(hits), hits)
	}
}

// refusing is a real ledger in front of which every debit is refused for
// the budget, as when a team budget was lowered below what was spent.
type refusing struct {
	ledger.Store
	mu    sync.Mutex
	calls int
}

func (r *refusing) Debit(context.Context, ledger.Charge) (ledger.Balance, error) {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	return ledger.Balance{}, &ledger.BudgetError{Analyst: "alice"}
}

// TestHitAuditDropsRefused: an entry the ledger refuses (not one it could
// not reach) is not retried: each is tried once, and close returns at once.
func TestHitAuditDropsRefused(t *testing.T) {
	store, err := ledger.OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := &refusing{Store: store}
	h := newHitAudit(r, slog.New(slog.DiscardHandler))
	for i := range 5 {
		h.add(ledger.Charge{ID: fmt.Sprintf("hit-%d", i), Analyst: "alice", Budget: ledger.Budget{Epsilon: 1},
			Statement: fmt.Sprintf("SELECT %d", i), CacheHit: true, Time: time.Now()}) // not merged
	}
	time.Sleep(2 * hitRetryEvery) // a retry, if there were one, would have run
	done := make(chan struct{})
	go func() { h.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * hitRetryEvery):
		t.Fatal("close waited on refused entries being retried")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) != 0 || h.inflight != 0 {
		t.Errorf("after close: %d pending, %d in flight", len(h.pending), h.inflight)
	}
	if r.calls != 5 {
		t.Errorf("%d debits for 5 refused entries, want 5 (no retries)", r.calls)
	}
}
