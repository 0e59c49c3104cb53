package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/dpproxy/dpproxy/ledger"
)

// Batched cache-hit audit (policy ledger.cache_hit_audit: batched).
//
// A cache hit releases nothing new, so its zero charge exists only to keep
// the audit trail complete. Written synchronously it costs a ledger commit
// (an fsync with bolt) per repeat, which is most of a hit's CPU. In batched
// mode the session answers at once and hands the zero charge to hitAudit,
// which debits everything pending a few milliseconds later, concurrently,
// so the ledger groups them into a few commits.
//
// What this gives up, and only for zero charges: a hit's entry is written
// up to hitFlushEvery after its answer, so a crash (kill -9, power loss) in
// that window loses those hits' entries; a graceful shutdown writes them.
// Budgets are never affected: every charge that costs anything stays
// synchronous. The mode still fails closed: a hit is answered only after a
// ledger read succeeds (the notice's balance), and when hitMaxPending hits
// wait (a ledger that stopped answering), sessions fall back to the
// synchronous write, which refuses if the ledger is down.
const (
	hitFlushEvery  = 20 * time.Millisecond
	hitMaxPending  = 8192
	hitConcurrency = 256
	hitRetryEvery  = 500 * time.Millisecond
)

type hitAudit struct {
	store ledger.Store
	log   *slog.Logger

	mu       sync.Mutex
	pending  []ledger.Charge // new hits, merged when written
	retry    []ledger.Charge // entries sent before, resent exactly as they were
	queued   int             // hits in pending and retry (a merged entry holds several)
	inflight int             // hits being written by a flush
	armed    bool            // a flush is scheduled
	closed   bool
	running  sync.WaitGroup // flushes in progress
}

func newHitAudit(store ledger.Store, log *slog.Logger) *hitAudit {
	return &hitAudit{store: store, log: log}
}

// add queues c; false means the caller must write it itself (closed, or too
// many pending).
func (h *hitAudit) add(c ledger.Charge) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.queued+h.inflight >= hitMaxPending {
		return false
	}
	h.pending = append(h.pending, c)
	h.queued++
	if !h.armed {
		h.armed = true
		h.running.Add(1)
		time.AfterFunc(hitFlushEvery, func() {
			defer h.running.Done()
			h.flush(false)
		})
	}
	return true
}

// flush writes what is pending. Entries the ledger could not be reached for
// go back to the queue and
// are retried after hitRetryEvery (until close; then they are logged as
// lost, with their statement IDs).
func (h *hitAudit) flush(final bool) {
	h.mu.Lock()
	// A retried entry may have been written (its acknowledgement lost):
	// merged into another, or given new repeats, it would be taken for the
	// entry written before and its new hits dropped, or a hit would be
	// recorded twice. So only new hits are merged.
	batch := append(h.retry, mergeHits(h.pending)...)
	hits := h.queued
	h.pending, h.retry, h.queued = nil, nil, 0
	h.armed = false
	h.inflight += hits
	h.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	failed := h.write(batch)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight -= hits
	if len(failed) == 0 {
		return
	}
	if final {
		var ids []string
		for _, c := range failed {
			ids = append(ids, c.ID)
			for _, r := range c.Repeats {
				ids = append(ids, r.ID)
			}
		}
		h.log.Error("ledger: cache-hit audit entries could not be written at shutdown", "hits", len(ids), "ids", ids)
		return
	}
	h.log.Warn("ledger: cache-hit audit entries not written; retrying", "entries", len(failed))
	// Back in the queue in the same step as they leave the in-flight
	// count, so the queue limit holds throughout.
	for _, c := range failed {
		h.queued += 1 + len(c.Repeats)
	}
	h.retry = append(failed, h.retry...)
	if !h.armed && !h.closed {
		h.armed = true
		h.running.Add(1)
		time.AfterFunc(hitRetryEvery, func() {
			defer h.running.Done()
			h.flush(false)
		})
	}
}

// write debits batch with up to hitConcurrency debits in flight and returns
// the charges that failed because the ledger was unavailable, to be
// retried. A retry reuses the charge ID, which the ledger makes idempotent,
// so an entry that was written but not acknowledged is not written twice.
// Other failures (a budget overspent after the answer, which batchedHit
// checks for but cannot see for shared budgets) cannot succeed later: they
// are logged with their IDs and dropped.
func (h *hitAudit) write(batch []ledger.Charge) []ledger.Charge {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		failed []ledger.Charge
		wg     sync.WaitGroup
		slots  = make(chan struct{}, hitConcurrency)
	)
	for _, c := range batch {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			_, err := h.store.Debit(ctx, c)
			switch {
			case err == nil:
			case errors.Is(err, ledger.ErrUnavailable):
				mu.Lock()
				failed = append(failed, c)
				mu.Unlock()
			default:
				h.log.Error("ledger: a cache-hit audit entry was refused", "id", c.ID, "analyst", c.Analyst, "err", err)
			}
		}()
	}
	wg.Wait()
	return failed
}

// close writes everything still pending and stops batching: later hits are
// written synchronously.
func (h *hitAudit) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.running.Wait()
	h.flush(true)
}

// mergeHits records new hits of one statement by one analyst (same text,
// tables, policy version, budgets and UTC day: everything the entry records
// but ID and time) in one entry, the first hit's, with the others as its
// repeats (at most ledger.MaxRepeats), so that a batch of repeats costs one
// ledger entry instead of one each.
func mergeHits(batch []ledger.Charge) []ledger.Charge {
	out := make([]ledger.Charge, 0, len(batch))
	open := map[string]int{} // merge key -> index in out
	for _, c := range batch {
		k := mergeKey(&c)
		if i, ok := open[k]; ok && len(out[i].Repeats) < ledger.MaxRepeats {
			out[i].Repeats = append(out[i].Repeats, ledger.Repeat{ID: c.ID, Time: c.Time})
			continue
		}
		open[k] = len(out)
		out = append(out, c)
	}
	return out
}

// mergeKey is everything a hit's entry records but its ID and time, each
// part length-prefixed so that parts cannot run together. The UTC day
// stands for the time's part in it: the period buckets (daily, monthly,
// yearly) whose query counts the entry adds to all turn at midnight UTC.
func mergeKey(c *ledger.Charge) string {
	var b []byte
	b = c.Time.UTC().AppendFormat(b, "2006-01-02 ")
	put := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	put(c.Analyst)
	put(c.Statement)
	put(c.Fingerprint)
	put(c.Mechanisms)
	put(c.PolicyVersion)
	b = binary.AppendUvarint(b, uint64(len(c.Tables)))
	for _, t := range c.Tables {
		put(t)
	}
	budget := func(bu ledger.Budget) {
		b = strconv.AppendFloat(b, bu.Epsilon, 'g', -1, 64)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, bu.Delta, 'g', -1, 64)
		b = append(b, ' ')
		put(string(bu.Period))
	}
	budget(c.Budget)
	b = binary.AppendUvarint(b, uint64(len(c.Shared)))
	for _, l := range c.Shared {
		put(l.Account)
		budget(l.Budget)
	}
	b = strconv.AppendFloat(b, c.Epsilon, 'g', -1, 64)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, c.Delta, 'g', -1, 64)
	b = append(b, ' ')
	b = strconv.AppendBool(b, c.CacheHit)
	b = strconv.AppendBool(b, c.RDP != nil)
	return string(b)
}
