package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend opens a fresh, empty store for one test.
type backend struct {
	name string
	open func(t *testing.T) Store
}

// backends lists every Store implementation; each conformance behaviour runs
// against all of them. Redis backends are added in redis_test.go.
var backends = []backend{
	{"bolt", func(t *testing.T) Store { s, _ := openTestBolt(t); return s }},
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func charge(analyst, id string, eps float64, b Budget) Charge {
	return Charge{
		ID:            id,
		Analyst:       analyst,
		Epsilon:       eps,
		Budget:        b,
		Statement:     "SELECT count(*) FROM patients",
		Tables:        []string{"public.patients"},
		Mechanisms:    "laplace(count) scale=2",
		PolicyVersion: "v1",
		Time:          t0,
	}
}

func idN(i int) string { return fmt.Sprintf("id-%04d", i) }

func isBudgetErr(err error) bool {
	var be *BudgetError
	return errors.As(err, &be)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestConformance(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			for _, tc := range conformanceCases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, be.open(t))
				})
			}
		})
	}
}

var conformanceCases = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"ten tenths fit in one", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1.0}
		for i := range 10 {
			b, err := s.Debit(ctx, charge("alice", idN(i), 0.1, budget))
			if err != nil {
				t.Fatalf("charge %d: %v", i+1, err)
			}
			if b.Queries != int64(i+1) {
				t.Fatalf("queries = %d", b.Queries)
			}
		}
		_, err := s.Debit(ctx, charge("alice", idN(10), 0.1, budget))
		var be *BudgetError
		if !errors.As(err, &be) {
			t.Fatalf("11th charge: %v, want *BudgetError", err)
		}
		if be.Analyst != "alice" || be.Requested != 0.1 || be.Remaining != 0 {
			t.Fatalf("BudgetError %+v", be)
		}
		b, err := s.Balance(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if b.SpentEpsilon != 1 || b.Queries != 10 || b.RemainingEpsilon() != 0 || b.Budget != budget {
			t.Fatalf("balance %+v", b)
		}
		es, err := s.Entries(ctx, Filter{})
		if err != nil || len(es) != 10 {
			t.Fatalf("entries %d %v", len(es), err)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"a cache-hit entry records its repeats", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1.0}
		if _, err := s.Debit(ctx, charge("alice", "answer", 0.1, budget)); err != nil {
			t.Fatal(err)
		}
		hit := charge("alice", "hit-1", 0, budget)
		hit.CacheHit = true
		hit.Repeats = []Repeat{{ID: "hit-2", Time: t0.Add(time.Millisecond)}, {ID: "hit-3", Time: t0.Add(2 * time.Millisecond)}}
		b, err := s.Debit(ctx, hit)
		if err != nil {
			t.Fatal(err)
		}
		if b.Queries != 4 || b.SpentEpsilon != 0.1 {
			t.Fatalf("after an answer and three hits in one entry: queries %d, spent %g; want 4, 0.1", b.Queries, b.SpentEpsilon)
		}
		// A retry of the entry (same ID) is not recorded twice.
		if b, err = s.Debit(ctx, hit); err != nil || b.Queries != 4 {
			t.Fatalf("retry: queries %d, %v; want 4", b.Queries, err)
		}
		es, err := s.Entries(ctx, Filter{Analyst: "alice"})
		if err != nil || len(es) != 2 {
			t.Fatalf("entries %d %v; want 2", len(es), err)
		}
		e := es[1]
		if !e.CacheHit || e.ID != "hit-1" || e.Queries != 4 || len(e.Repeats) != 2 ||
			e.Repeats[1].ID != "hit-3" || !e.Repeats[1].Time.Equal(t0.Add(2*time.Millisecond)) {
			t.Fatalf("entry %+v", e)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
		// Only a zero cache-hit charge may record repeats.
		for name, c := range map[string]Charge{
			"charged":    charge("alice", "x1", 0.1, budget),
			"not a hit":  charge("alice", "x2", 0, budget),
			"empty ID":   func() Charge { c := hit; c.ID, c.Repeats = "x3", []Repeat{{Time: t0}}; return c }(),
			"zero time":  func() Charge { c := hit; c.ID, c.Repeats = "x4", []Repeat{{ID: "r"}}; return c }(),
			"too many":   func() Charge { c := hit; c.ID, c.Repeats = "x5", make([]Repeat, MaxRepeats+1); return c }(),
			"its own ID": func() Charge { c := hit; c.ID, c.Repeats = "x6", []Repeat{{ID: "x6", Time: t0}}; return c }(),
			"an ID twice": func() Charge {
				c := hit
				c.ID, c.Repeats = "x7", []Repeat{{ID: "r", Time: t0}, {ID: "r", Time: t0}}
				return c
			}(),
		} {
			if len(c.Repeats) == 0 {
				c.Repeats = hit.Repeats
			}
			if _, err := s.Debit(ctx, c); !errors.Is(err, ErrInvalidCharge) {
				t.Errorf("%s with repeats: %v, want ErrInvalidCharge", name, err)
			}
		}
	}},
	{"a refused first charge leaves no account", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		// Concurrent, so that bolt commits them in one batch with a good one.
		errs := make(chan error, 3)
		for _, c := range []Charge{
			charge("newbie", "n1", 2, Budget{Epsilon: 1}),
			charge("carol", "c1", 0.5, Budget{Epsilon: 0.1, Period: PeriodDaily}), // a new day's state
			charge("bob", "b1", 0.1, Budget{Epsilon: 1}),
		} {
			go func() { _, err := s.Debit(ctx, c); errs <- err }()
		}
		refused := 0
		for range 3 {
			if err := <-errs; isBudgetErr(err) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused != 2 {
			t.Fatalf("%d charges refused, want 2", refused)
		}
		bs, err := s.Balances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 1 || bs[0].Analyst != "bob" {
			t.Fatalf("balances after two refused first charges: %+v, want bob's only", bs)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatalf("verify after refused first charges: %v", err)
		}
	}},
	{"budget exhaustion", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1, Delta: 1e-6}
		for i, st := range []struct {
			eps, delta float64
			ok         bool
			remaining  float64
		}{
			{0.5, 0, true, 0.5},
			{0.6, 0, false, 0.5},       // over epsilon
			{0.25, 2e-6, false, 0.5},   // over delta
			{0.25, 5e-7, true, 0.25},   // fits
			{0.25, 5e-7, true, 0},      // exactly at the limit
			{1e-12, 0, false, 0},       // rounds up to one unit: refused
			{0, 0, true, 0},            // a free (cache-hit) answer is still recorded
			{0, 1e-20, false, 0},       // any delta is at least one unit
			{math.NaN(), 0, false, 0},  // invalid
			{-0.1, 0, false, 0},        // invalid
			{math.Inf(1), 0, false, 0}, // invalid
		} {
			c := charge("bob", idN(i), st.eps, budget)
			c.Delta = st.delta
			b, err := s.Debit(ctx, c)
			if (err == nil) != st.ok {
				t.Fatalf("Debit(%g, %g) = %v, want ok=%v", st.eps, st.delta, err, st.ok)
			}
			if err == nil && b.RemainingEpsilon() != st.remaining {
				t.Fatalf("Debit(%g, %g): remaining %g, want %g", st.eps, st.delta, b.RemainingEpsilon(), st.remaining)
			}
			if err != nil && !isBudgetErr(err) && !errors.Is(err, ErrInvalidCharge) {
				t.Fatalf("Debit(%g, %g): unexpected error %v", st.eps, st.delta, err)
			}
		}
		b, _ := s.Balance(ctx, "bob")
		if b.SpentDelta != 1e-6 || b.Queries != 4 || b.RemainingDelta() != 0 {
			t.Fatalf("balance %+v", b)
		}
		// Lowering the budget below what was spent refuses everything.
		if _, err := s.Debit(ctx, charge("bob", "low", 0, Budget{Epsilon: 0.5})); !isBudgetErr(err) {
			t.Fatalf("lowered budget: %v", err)
		}
	}},
	{"invalid charges", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		ok := charge("carol", "ok", 0.1, Budget{Epsilon: 1})
		for name, mutate := range map[string]func(*Charge){
			"no id":        func(c *Charge) { c.ID = "" },
			"no analyst":   func(c *Charge) { c.Analyst = "" },
			"no time":      func(c *Charge) { c.Time = time.Time{} },
			"nan budget":   func(c *Charge) { c.Budget.Epsilon = math.NaN() },
			"huge epsilon": func(c *Charge) { c.Epsilon = 2e6; c.Budget.Epsilon = 1e7 },
			"delta > 1":    func(c *Charge) { c.Budget.Delta = 2 },
		} {
			c := ok
			mutate(&c)
			if _, err := s.Debit(ctx, c); !errors.Is(err, ErrInvalidCharge) {
				t.Errorf("%s: %v, want ErrInvalidCharge", name, err)
			}
		}
		if es, _ := s.Entries(ctx, Filter{}); len(es) != 0 {
			t.Fatalf("invalid charges wrote %d entries", len(es))
		}
	}},
	{"duplicate ids charge once", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1}
		first, err := s.Debit(ctx, charge("dave", "dup", 0.4, budget))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Debit(ctx, charge("dave", "other", 0.1, budget)); err != nil {
			t.Fatal(err)
		}
		// The retry returns the original result, not the current balance.
		again, err := s.Debit(ctx, charge("dave", "dup", 0.4, budget))
		if err != nil || again != first {
			t.Fatalf("retry = %+v, %v; want %+v", again, err, first)
		}
		if _, err := s.Debit(ctx, charge("dave", "dup", 0.3, budget)); !errors.Is(err, ErrIDConflict) {
			t.Errorf("same id, other amount: %v, want ErrIDConflict", err)
		}
		// IDs are scoped per analyst: the same ID for erin is erin's charge.
		if b, err := s.Debit(ctx, charge("erin", "dup", 0.4, budget)); err != nil || b.SpentEpsilon != 0.4 {
			t.Errorf("same id, other analyst: %+v, %v", b, err)
		}
		// Concurrent retries of one new ID: one debit.
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := s.Debit(ctx, charge("dave", "burst", 0.1, budget)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		b, _ := s.Balance(ctx, "dave")
		if b.SpentEpsilon != 0.6 || b.Queries != 3 {
			t.Fatalf("balance %+v, want 0.6 spent in 3 queries", b)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"concurrent debits never overspend", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		const clients, allowed = 200, 37
		budget := Budget{Epsilon: 0.05 * allowed, Delta: 1e-5}
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				c := charge("frank", idN(i), 0.05, budget)
				c.Delta = 1e-7
				_, err := s.Debit(ctx, c)
				switch {
				case err == nil:
					ok.Add(1)
				case isBudgetErr(err):
					refused.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != allowed || refused.Load() != clients-allowed {
			t.Fatalf("%d succeeded, %d refused; want %d, %d", ok.Load(), refused.Load(), allowed, clients-allowed)
		}
		b, _ := s.Balance(ctx, "frank")
		if b.Queries != allowed || b.RemainingEpsilon() != 0 {
			t.Fatalf("balance %+v", b)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"balances and entries", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		if bs, err := s.Balances(ctx); err != nil || len(bs) != 0 {
			t.Fatalf("empty Balances = %v, %v", bs, err)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatalf("empty Verify: %v", err)
		}
		if b, err := s.Balance(ctx, "nobody"); err != nil || b != (Balance{Analyst: "nobody"}) {
			t.Fatalf("unknown analyst: %+v, %v", b, err)
		}
		for i, who := range []string{"zoe", "amy", "max", "amy"} {
			c := charge(who, idN(i), 0.25, Budget{Epsilon: 2, Delta: 1e-6})
			c.Time = t0.Add(time.Duration(i) * time.Minute)
			c.CacheHit = i == 3
			c.Fingerprint = "fp" + who
			c.Statement = fmt.Sprintf("SELECT %d -- 'quoted' \"ü\" \n", i)
			if _, err := s.Debit(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		bs, err := s.Balances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range bs {
			names = append(names, fmt.Sprintf("%s:%g/%d", b.Analyst, b.SpentEpsilon, b.Queries))
		}
		if got := strings.Join(names, " "); got != "amy:0.5/2 max:0.25/1 zoe:0.25/1" {
			t.Fatalf("Balances = %s", got)
		}
		es, err := s.Entries(ctx, Filter{Analyst: "amy"})
		if err != nil || len(es) != 2 {
			t.Fatalf("amy's entries: %d, %v", len(es), err)
		}
		e := es[1]
		if e.ID != idN(3) || !e.Time.Equal(t0.Add(3*time.Minute)) || e.Epsilon != 0.25 || !e.CacheHit ||
			e.Statement != "SELECT 3 -- 'quoted' \"ü\" \n" || e.Fingerprint != "fpamy" || e.Mechanisms != "laplace(count) scale=2" ||
			e.PolicyVersion != "v1" || len(e.Tables) != 1 || e.Tables[0] != "public.patients" || e.Mode != ModeBasic ||
			e.SpentEpsilon != 0.5 || e.Queries != 2 || e.Budget != (Budget{Epsilon: 2, Delta: 1e-6}) || e.PrevHash != es[0].Hash && e.Seq == es[0].Seq+1 {
			t.Fatalf("entry %+v", e)
		}
		all, err := s.Entries(ctx, Filter{})
		if err != nil || len(all) != 4 {
			t.Fatalf("all entries: %d %v", len(all), err)
		}
		for i, e := range all {
			if e.ID != idN(i) {
				t.Fatalf("entries out of order: %d is %s", i, e.ID)
			}
		}
		win, _ := s.Entries(ctx, Filter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)})
		if len(win) != 2 || win[0].ID != idN(1) || win[1].ID != idN(2) {
			t.Fatalf("time window: %+v", win)
		}
		if lim, _ := s.Entries(ctx, Filter{Limit: 3}); len(lim) != 3 {
			t.Fatalf("limit: %d", len(lim))
		}
	}},
	{"odd analyst names", func(t *testing.T, s Store) {
		ctx := testCtx(t)
		names := []string{"{x}", "a%7Bb", "a}b{c", "ü ñ", "tab\there", "%"}
		for i, a := range names {
			if _, err := s.Debit(ctx, charge(a, idN(i), 0.5, Budget{Epsilon: 1})); err != nil {
				t.Fatalf("%q: %v", a, err)
			}
			if _, err := s.Debit(ctx, charge(a, "again", 0.6, Budget{Epsilon: 1})); !isBudgetErr(err) {
				t.Fatalf("%q: accounts must not be shared: %v", a, err)
			}
		}
		bs, err := s.Balances(ctx)
		if err != nil || len(bs) != len(names) {
			t.Fatalf("Balances: %v %v", bs, err)
		}
		for _, b := range bs {
			if b.SpentEpsilon != 0.5 {
				t.Fatalf("balance %+v", b)
			}
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"cancelled context", func(t *testing.T, s Store) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.Debit(ctx, charge("gina", "c", 0.1, Budget{Epsilon: 1}))
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Debit with cancelled ctx: %v", err)
		}
	}},
}
