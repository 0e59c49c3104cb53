package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/wire"
)

// probeLedger is the real bolt ledger with a probe in front of Debit: it
// waits up to wait for the statement's upstream query to be seen blocked
// on a lock the test holds, records whether it was, and then debits (or,
// with fail set, refuses as an unreachable ledger would). A debit that
// sees its query already upstream proves the two overlap.
type probeLedger struct {
	ledger.Store
	watch *pgx.Conn // a superuser connection, for pg_stat_activity

	mu   sync.Mutex
	wait time.Duration
	fail bool
	seen []bool // per debit: was the query upstream while it started?
}

func (p *probeLedger) Debit(ctx context.Context, c ledger.Charge) (ledger.Balance, error) {
	p.mu.Lock()
	wait, fail := p.wait, p.fail
	p.mu.Unlock()
	upstream := queryBlocked(ctx, p.watch, wait)
	p.mu.Lock()
	p.seen = append(p.seen, upstream)
	p.mu.Unlock()
	if fail {
		return ledger.Balance{}, fmt.Errorf("%w: the test refuses this debit", ledger.ErrUnavailable)
	}
	return p.Store.Debit(ctx, c)
}

// queryBlocked reports whether, within wait, a backend waits for a lock
// while running a query on patients.
func queryBlocked(ctx context.Context, watch *pgx.Conn, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%patients%' AND pid <> pg_backend_pid()`).Scan(&n)
		if err == nil && n > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChargeOverlapsUpstream checks the order of a DP statement's debit
// and upstream query (wire/overlap.go): the first statement of a session
// debits before its query runs; once a debit has left headroom, the next
// statement's query runs while its debit is made, and is still answered
// only after it; a debit that then fails cancels the query upstream and
// the client gets the ledger's error, not an answer; after that failure
// the session debits first again.
func TestChargeOverlapsUpstream(t *testing.T) {
	ctx := testContext(t)
	watch, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	probe := &probeLedger{watch: watch}
	dsn := inProcess(t, ctx, func(cfg *wire.Config) {
		alice := cfg.Policy.Analyst("alice")
		alice.Budget.Epsilon = 100
		alice.Team = ""
		cfg.Policy.Defaults.CacheWindow = 0
		// Longer than the test waits for a cancellation, so that only the
		// failed debit can stop the query.
		cfg.Policy.Upstream.StatementTimeout = 2 * time.Minute
		probe.Store = cfg.Ledger
		cfg.Ledger = probe
	})
	conn, err := pgx.Connect(ctx, dsn+" user=alice password="+alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	const query = "SELECT count(*) FROM patients WHERE age > 40"
	// run holds an exclusive lock on patients while query runs through the
	// proxy, releases it once the debit has been probed, and returns the
	// statement's error and what the probe saw.
	run := func(wait time.Duration, fail bool) (error, bool) {
		t.Helper()
		probe.mu.Lock()
		probe.wait, probe.fail = wait, fail
		n := len(probe.seen)
		probe.mu.Unlock()
		locker, err := pgx.Connect(ctx, pg.AdminDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer locker.Close(ctx)
		tx, err := locker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "LOCK TABLE patients IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			var count float64
			done <- conn.QueryRow(ctx, query).Scan(&count)
		}()
		var seen bool
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			probe.mu.Lock()
			probed := len(probe.seen) > n
			if probed {
				seen = probe.seen[n]
			}
			probe.mu.Unlock()
			if probed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the statement's debit was not made within 30s")
			}
		}
		if fail {
			// The failed debit cancels the query upstream: it stops
			// waiting for the lock, which is still held.
			if !waitUntil(20*time.Second, func() bool { return !queryBlocked(ctx, watch, 0) }) {
				t.Error("the upstream query still waits after its debit failed; want it cancelled")
			}
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			return err, seen
		case <-time.After(30 * time.Second):
			t.Fatal("the statement did not finish within 30s of the lock's release")
			return nil, false
		}
	}

	// First statement: no debit yet, so the debit comes first and its
	// query is not upstream while it is made (the probe waits 500 ms for
	// it).
	if err, seen := run(500*time.Millisecond, false); err != nil || seen {
		t.Fatalf("first statement: err %v, query upstream during the debit %v; want an answer, debit first", err, seen)
	}
	// Second: the first debit left 99.9 of 100, so they overlap.
	if err, seen := run(20*time.Second, false); err != nil || !seen {
		t.Fatalf("second statement: err %v, query upstream during the debit %v; want an answer, overlapped", err, seen)
	}
	// Third: overlapped, but the debit fails: the client gets the
	// ledger's refusal.
	err, seen := run(20*time.Second, true)
	var pge *pgconn.PgError
	if !seen || !errors.As(err, &pge) || !strings.Contains(pge.Message, "ledger is unavailable") {
		t.Fatalf("third statement: err %v, overlapped %v; want the ledger-unavailable refusal after an overlapped debit", err, seen)
	}
	// Fourth: after a failed debit the session debits first again.
	if err, seen := run(500*time.Millisecond, false); err != nil || seen {
		t.Fatalf("fourth statement: err %v, query upstream during the debit %v; want an answer, debit first", err, seen)
	}
	// Three answers were charged and four debits attempted; the refused one
	// is not in the ledger.
	entries, err := probe.Store.Entries(ctx, ledger.Filter{Analyst: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("ledger has %d entries for alice, want 3 (the refused debit wrote none)", len(entries))
	}
}

// waitUntil polls cond every 20 ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
