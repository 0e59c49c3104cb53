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
// reports on probed whether the statement's query was then already
// upstream (blocked on a lock the test holds), waits for the test on
// proceed, then debits (or, with fail set, refuses as an unreachable ledger
// would) and reports on debited when it returns.
type probeLedger struct {
	ledger.Store
	ctx   context.Context // the test's: a debit's own context ends in seconds
	watch *pgx.Conn       // a superuser connection, for pg_stat_activity

	mu   sync.Mutex
	wait time.Duration // how long to look for the query
	fail bool

	probed  chan bool
	proceed chan struct{}
	debited chan time.Time
}

func (p *probeLedger) Debit(_ context.Context, c ledger.Charge) (ledger.Balance, error) {
	p.mu.Lock()
	wait, fail := p.wait, p.fail
	p.mu.Unlock()
	p.probed <- upstreamCount(p.ctx, p.watch, "wait_event_type = 'Lock'", wait) > 0
	<-p.proceed
	defer func() { p.debited <- time.Now() }()
	if fail {
		return ledger.Balance{}, fmt.Errorf("%w: the test refuses this debit", ledger.ErrUnavailable)
	}
	return p.Store.Debit(context.Background(), c)
}

// lockPatients holds an ACCESS EXCLUSIVE lock on patients, from a
// superuser connection, until tx ends; release ends it and the connection.
func lockPatients(t *testing.T, ctx context.Context) (tx pgx.Tx, release func()) {
	t.Helper()
	locker, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	if tx, err = locker.Begin(ctx); err == nil {
		_, err = tx.Exec(ctx, "LOCK TABLE patients IN ACCESS EXCLUSIVE MODE")
	}
	release = func() {
		if tx != nil {
			_ = tx.Rollback(ctx)
		}
		locker.Close(ctx)
	}
	if err != nil {
		release()
		t.Fatal(err)
	}
	return tx, release
}

// upstreamCount counts the backends, other than watch's, running a query
// on patients that match cond; it polls for up to wait for a non-zero
// count.
func upstreamCount(ctx context.Context, watch *pgx.Conn, cond string, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE `+cond+` AND query LIKE '%patients%' AND pid <> pg_backend_pid()`).Scan(&n)
		if err == nil && n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChargeOverlapsUpstream checks the order of a DP statement's debit
// and upstream query (wire/overlap.go): the first statement of a session
// debits before its query runs; once a debit has left headroom, the next
// statement's query runs while its debit is made, and its rows, ready
// upstream, are not answered until the debit returns; a debit that fails
// gets the client the ledger's error and no rows, whether the rows were
// ready (dropped) or the query still ran (cancelled upstream); after a
// failure the session debits first again.
func TestChargeOverlapsUpstream(t *testing.T) {
	ctx := testContext(t)
	watch := exactConn(t, ctx) // superuser: pg_stat_activity
	probe := &probeLedger{ctx: ctx, watch: watch,
		probed: make(chan bool), proceed: make(chan struct{}), debited: make(chan time.Time, 1)}
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

	type step int
	const (
		sequential   step = iota // debit first: the query is not upstream during it
		overlapped               // the query runs during the debit; answered after it
		failRowsDone             // overlapped; the debit fails after the query finished
		failBlocked              // overlapped; the debit fails while the query waits
	)
	type answered struct {
		err error
		at  time.Time
	}
	run := func(name string, s step) {
		t.Helper()
		probe.mu.Lock()
		probe.wait, probe.fail = 10*time.Second, s == failRowsDone || s == failBlocked
		if s == sequential {
			probe.wait = 500 * time.Millisecond
		}
		probe.mu.Unlock()
		tx, release := lockPatients(t, ctx)
		defer release()
		done := make(chan answered, 1)
		go func() {
			var count float64
			err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE age > 40").Scan(&count)
			done <- answered{err, time.Now()}
		}()
		var seen bool
		select {
		case seen = <-probe.probed:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no debit within 30s", name)
		}
		if seen != (s != sequential) {
			t.Fatalf("%s: query upstream during the debit: %v", name, seen)
		}
		switch s {
		case sequential:
			probe.proceed <- struct{}{}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		case overlapped, failRowsDone:
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			// The query finishes upstream; its rows now wait in the proxy
			// for the debit.
			if upstreamCount(ctx, watch, "state = 'active'", 0) > 0 &&
				!waitUntil(30*time.Second, func() bool { return upstreamCount(ctx, watch, "state = 'active'", 0) == 0 }) {
				t.Fatalf("%s: the query did not finish upstream within 30s", name)
			}
			select {
			case a := <-done:
				t.Fatalf("%s: answered (err %v) before its debit returned", name, a.err)
			case <-time.After(300 * time.Millisecond):
			}
			probe.proceed <- struct{}{}
		case failBlocked:
			probe.proceed <- struct{}{}
			// The failed debit cancels the query upstream: it stops
			// waiting for the lock, which is still held.
			if !waitUntil(20*time.Second, func() bool {
				return upstreamCount(ctx, watch, "wait_event_type = 'Lock'", 0) == 0
			}) {
				t.Errorf("%s: the upstream query still waits after its debit failed; want it cancelled", name)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
		debitedAt := <-probe.debited
		var a answered
		select {
		case a = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no answer within 30s of the debit", name)
		}
		if s == failRowsDone || s == failBlocked {
			var pge *pgconn.PgError
			if !errors.As(a.err, &pge) || pge.Code != "58000" || !strings.Contains(pge.Message, "ledger is unavailable") {
				t.Fatalf("%s: got %v; want the ledger-unavailable refusal (DP007)", name, a.err)
			}
			return
		}
		if a.err != nil {
			t.Fatalf("%s: %v", name, a.err)
		}
		if a.at.Before(debitedAt) {
			t.Errorf("%s: answered at %v, before its debit returned at %v", name, a.at, debitedAt)
		}
	}

	run("first statement", sequential)
	run("after a debit with headroom", overlapped)
	run("debit fails after the rows are ready", failRowsDone)
	run("after a failed debit", sequential)
	run("headroom again", overlapped)
	run("debit fails while the query waits", failBlocked)
	run("after the second failure", sequential)
	// Five answers were charged; the two refused debits wrote nothing.
	entries, err := probe.Store.Entries(ctx, ledger.Filter{Analyst: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Errorf("ledger has %d entries for alice, want 5", len(entries))
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

// startProbe is the real bolt ledger as a ledger.DebitStarter (the path
// wire takes with bolt: the writer reports the debit's outcome, no
// goroutine of wire's waits for it), its debit started only once the
// statement's query is upstream, blocked on a lock the test holds.
type startProbe struct {
	*ledger.BoltStore
	ctx   context.Context
	watch *pgx.Conn
	seen  chan bool // whether the query was upstream when the debit started
}

func (p *startProbe) StartDebit(ctx context.Context, c ledger.Charge, done func(error)) func() (ledger.Balance, error) {
	type outcome struct {
		bal ledger.Balance
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		p.seen <- upstreamCount(p.ctx, p.watch, "wait_event_type = 'Lock'", 10*time.Second) > 0
		bal, err := p.BoltStore.StartDebit(ctx, c, done)()
		out <- outcome{bal, err}
	}()
	return func() (ledger.Balance, error) { o := <-out; return o.bal, o.err }
}

// TestOverlapRefusedByWriter: with a stale headroom (another session spent
// the budget), an overlapped statement's debit is refused by the bolt
// writer while its query waits upstream; the writer's callback cancels the
// query at once, and the client gets the budget refusal and no rows.
func TestOverlapRefusedByWriter(t *testing.T) {
	ctx := testContext(t)
	watch := exactConn(t, ctx) // superuser: pg_stat_activity
	probe := &startProbe{ctx: ctx, watch: watch, seen: make(chan bool, 4)}
	dsn := inProcess(t, ctx, func(cfg *wire.Config) {
		alice := cfg.Policy.Analyst("alice")
		alice.Budget.Epsilon = 2.5 * cfg.Policy.Defaults.Epsilon // two statements, and room for a third on paper
		alice.Team = ""
		cfg.Policy.Defaults.CacheWindow = 0
		// Neither the statement's timeout nor the debit's may stop the
		// query: only the writer's report of the refusal.
		cfg.Policy.Upstream.StatementTimeout = 2 * time.Minute
		cfg.LedgerTimeout = 2 * time.Minute
		bolt, ok := cfg.Ledger.(*ledger.BoltStore)
		if !ok {
			t.Fatalf("the harness ledger is %T; want *ledger.BoltStore", cfg.Ledger)
		}
		probe.BoltStore = bolt
		cfg.Ledger = probe
	})
	const sql = "SELECT count(*) FROM patients WHERE age > 40"
	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn+" user=alice password="+alicePassword)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	a, b := connect(), connect()
	var n float64
	// a's first statement debits first (Debit, not StartDebit) and leaves
	// a headroom of 1.5 statements; b's first then spends one of them.
	for _, c := range []*pgx.Conn{a, b} {
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-probe.seen:
		t.Fatal("a session's first statement overlapped its debit; want the debit first")
	default:
	}
	_, release := lockPatients(t, ctx)
	defer release()
	answered := make(chan error, 1)
	go func() { answered <- a.QueryRow(ctx, sql).Scan(&n) }()
	select {
	case seen := <-probe.seen:
		if !seen {
			t.Fatal("a's second statement was not upstream beside its debit (a stale headroom should overlap)")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a's second statement did not start its debit beside the query within 30s")
	}
	var got error
	select {
	case got = <-answered:
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20s of a refused debit, with the table still locked: the query was not cancelled")
	}
	var pge *pgconn.PgError
	if !errors.As(got, &pge) || pge.Code != "53400" || !strings.Contains(pge.Message, "budget exhausted") {
		t.Fatalf("got %v; want the budget refusal (DP006)", got)
	}
	if !waitUntil(20*time.Second, func() bool { return upstreamCount(ctx, watch, "wait_event_type = 'Lock'", 0) == 0 }) {
		t.Error("the upstream query still waits for the lock after its debit was refused; want it cancelled")
	}
}

// TestOverlapOutlivesLedgerTimeout: an overlapped statement whose debit
// succeeded is answered however long its query then runs, even past the
// ledger's timeout (which bounds only the wait for the ledger).
func TestOverlapOutlivesLedgerTimeout(t *testing.T) {
	ctx := testContext(t)
	watch := exactConn(t, ctx) // superuser: pg_stat_activity
	const ledgerTimeout = time.Second
	dsn := inProcess(t, ctx, func(cfg *wire.Config) {
		cfg.Policy.Defaults.CacheWindow = 0
		cfg.LedgerTimeout = ledgerTimeout
	})
	conn, err := pgx.Connect(ctx, dsn+" user=alice password="+alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const sql = "SELECT count(*) FROM patients WHERE age > 40"
	var n float64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil { // debits first, leaves headroom
		t.Fatal(err)
	}
	tx, release := lockPatients(t, ctx)
	defer release()
	answered := make(chan error, 1)
	go func() { answered <- conn.QueryRow(ctx, sql).Scan(&n) }()
	if upstreamCount(ctx, watch, "wait_event_type = 'Lock'", 30*time.Second) == 0 {
		t.Fatal("the statement's query did not reach upstream within 30s")
	}
	time.Sleep(ledgerTimeout + 1500*time.Millisecond) // the query waits past the ledger's timeout
	select {
	case err := <-answered:
		t.Fatalf("answered (%v) while its query still waited for the lock", err)
	default:
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("a charged statement whose query outlived the ledger's timeout failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s of the lock's release")
	}
}
