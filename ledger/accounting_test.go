package ledger

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/dpproxy/dpproxy/internal/testenv"
	"github.com/dpproxy/dpproxy/mechanisms"
)

// modeOpener opens a fresh store in an accounting mode.
type modeOpener struct {
	name string
	open func(t *testing.T, mode Mode) Store
}

func boltOpener() modeOpener {
	return modeOpener{"bolt", func(t *testing.T, mode Mode) Store {
		s, err := OpenBolt(filepath.Join(t.TempDir(), "ledger.db"), BoltOptions{Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

func redisOpener(name string, c redis.UniversalClient, hashTag string) modeOpener {
	n := 0
	return modeOpener{name, func(t *testing.T, mode Mode) Store {
		n++
		s, err := NewRedis(c, RedisOptions{Prefix: fmt.Sprintf("acc%d", n), Mode: mode, HashTag: hashTag})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
}

func TestAccounting(t *testing.T) {
	c := redisClient(t)
	for _, o := range []modeOpener{boltOpener(), redisOpener("redis", c, ""), redisOpener("redis-hashtag", c, "ledger")} {
		t.Run(o.name, func(t *testing.T) { runAccounting(t, o) })
	}
}

func runAccounting(t *testing.T, o modeOpener) {
	for _, tc := range accountingCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, o.open(t, tc.mode)) })
	}
}

func grant(analyst, id string, eps float64) Grant {
	return Grant{ID: id, Analyst: analyst, Epsilon: eps, Note: "test grant", Time: t0}
}

var accountingCases = []struct {
	name string
	mode Mode
	run  func(t *testing.T, s Store)
}{
	{"grant and reset", ModeBasic, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1}
		if _, err := s.Debit(ctx, charge("alice", "c1", 0.6, budget)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Debit(ctx, charge("alice", "c2", 0.5, budget)); !isBudgetErr(err) {
			t.Fatalf("over budget: %v", err)
		}
		b, err := s.Grant(ctx, grant("alice", "g1", 0.2))
		if err != nil || b.GrantedEpsilon != 0.2 || b.SpentEpsilon != 0.6 {
			t.Fatalf("grant: %+v %v", b, err)
		}
		if again, err := s.Grant(ctx, grant("alice", "g1", 0.2)); err != nil || again != b {
			t.Fatalf("repeated grant: %+v %v, want %+v", again, err, b)
		}
		b, err = s.Debit(ctx, charge("alice", "c3", 0.5, budget))
		if err != nil || b.RemainingEpsilon() != 0.1 || b.EffectiveBudget().Epsilon != 1.2 {
			t.Fatalf("after grant: %+v %v", b, err)
		}
		if _, err := s.Grant(ctx, grant("alice", "c3", 1)); !errors.Is(err, ErrIDConflict) {
			t.Fatalf("grant reusing a charge id: %v", err)
		}
		b, err = s.Grant(ctx, Grant{ID: "r1", Analyst: "alice", Reset: true, Note: "new quarter", Time: t0})
		if err != nil || b.RemainingEpsilon() != 1 || b.GrantedEpsilon != 1.1 {
			t.Fatalf("reset: %+v %v", b, err)
		}
		if _, err := s.Debit(ctx, charge("alice", "c4", 1, budget)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Debit(ctx, charge("alice", "c5", 0.1, budget)); !isBudgetErr(err) {
			t.Fatalf("after reset and a full spend: %v", err)
		}
		// A negative grant takes budget back.
		if _, err := s.Grant(ctx, grant("bob", "g-1", -0.5)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Debit(ctx, charge("bob", "c1", 0.6, budget)); !isBudgetErr(err) {
			t.Fatalf("bob's budget was lowered to 0.5: %v", err)
		}
		es, err := s.Entries(ctx, Filter{Analyst: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, e := range es {
			kinds = append(kinds, e.Kind)
		}
		if got := fmt.Sprint(kinds); got != "[charge grant charge reset charge]" {
			t.Fatalf("entry kinds %s", got)
		}
		if es[3].Epsilon != 0.9 || es[3].Statement != "new quarter" {
			t.Fatalf("reset entry %+v", es[3])
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"shared team and dataset budgets", ModeBasic, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		own := Budget{Epsilon: 10}
		team := Limit{Account: "team:onco", Budget: Budget{Epsilon: 1}}
		data := Limit{Account: "dataset:clinical", Budget: Budget{Epsilon: 1.5}}
		ch := func(who, id string, eps float64, shared ...Limit) Charge {
			c := charge(who, id, eps, own)
			c.Shared = shared
			return c
		}
		if _, err := s.Debit(ctx, ch("alice", "1", 0.6, team, data)); err != nil {
			t.Fatal(err)
		}
		_, err := s.Debit(ctx, ch("bob", "1", 0.5, team, data))
		var be *BudgetError
		if !errors.As(err, &be) || be.Account != "team:onco" || be.Remaining != 0.4 {
			t.Fatalf("bob over the team budget: %v", err)
		}
		if _, err := s.Debit(ctx, ch("bob", "2", 0.4, team, data)); err != nil {
			t.Fatal(err)
		}
		// carol is not in the team; the dataset budget (1.5 - 1.0) still binds.
		if _, err := s.Debit(ctx, ch("carol", "1", 0.6, data)); !errors.As(err, &be) || be.Account != "dataset:clinical" {
			t.Fatalf("carol over the dataset budget: %v", err)
		}
		if _, err := s.Debit(ctx, ch("carol", "2", 0.5, data)); err != nil {
			t.Fatal(err)
		}
		bob, _ := s.Balance(ctx, "bob")
		if bob.SpentEpsilon != 0.4 || bob.Queries != 1 {
			t.Fatalf("a refused charge debited bob's account: %+v", bob)
		}
		if _, err := s.Debit(ctx, ch("dave", "1", 0.1, team, team)); !errors.Is(err, ErrInvalidCharge) {
			t.Fatalf("duplicate shared account: %v", err)
		}
		if _, err := s.Debit(ctx, ch("dave", "1", 0.1, Limit{Account: "analyst:alice", Budget: own})); !errors.Is(err, ErrInvalidCharge) {
			t.Fatalf("shared account named like an analyst: %v", err)
		}
		es, _ := s.Entries(ctx, Filter{Analyst: "alice"})
		if len(es) != 1 || len(es[0].Shared) != 2 || es[0].Shared[0] != team {
			t.Fatalf("entry shared budgets: %+v", es)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"concurrent debits against a shared budget", ModeBasic, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		const clients, allowed = 60, 17
		team := Limit{Account: "team:all", Budget: Budget{Epsilon: 0.1 * allowed}}
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				c := charge(fmt.Sprintf("a%d", i%6), idN(i), 0.1, Budget{Epsilon: 100})
				c.Shared = []Limit{team}
				_, err := s.Debit(ctx, c)
				switch {
				case err == nil:
					ok.Add(1)
				case !isBudgetErr(err):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != allowed {
			t.Fatalf("%d debits succeeded against a shared budget allowing %d", ok.Load(), allowed)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"periods", ModeBasic, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		daily := Budget{Epsilon: 2, Period: PeriodDaily}
		monthly := Limit{Account: "dataset:d", Budget: Budget{Epsilon: 2.5, Period: PeriodMonthly}}
		at := func(id string, eps float64, tm time.Time, shared ...Limit) (Balance, error) {
			c := charge("alice", id, eps, daily)
			c.Shared = shared
			c.Time = tm
			return s.Debit(ctx, c)
		}
		day1 := time.Date(2025, 6, 29, 23, 0, 0, 0, time.FixedZone("UTC+5", 5*3600)) // 18:00 UTC on the 29th
		if b, err := at("1", 1, day1, monthly); err != nil || b.Bucket != "2025-06-29" || b.RemainingEpsilon() != 1 {
			t.Fatalf("day 1: %+v %v", b, err)
		}
		var be *BudgetError
		if _, err := at("2", 1.1, day1.Add(5*time.Hour+59*time.Minute), monthly); !errors.As(err, &be) || be.Account != "analyst:alice" || be.Bucket != "2025-06-29" {
			t.Fatalf("same UTC day: %v", err)
		}
		b, err := at("3", 1, day1.Add(6*time.Hour), monthly) // 00:00 UTC on the 30th
		if err != nil || b.Bucket != "2025-06-30" || b.SpentEpsilon != 1 {
			t.Fatalf("day 2: %+v %v", b, err)
		}
		if _, err := at("4", 0.6, day1.Add(24*time.Hour), monthly); !errors.As(err, &be) || be.Account != "dataset:d" || be.Bucket != "2025-06" {
			t.Fatalf("monthly dataset budget in June: %v", err)
		}
		if b, err := at("5", 0.6, day1.Add(30*time.Hour), monthly); err != nil || b.Bucket != "2025-07-01" {
			t.Fatalf("July 1st: %+v %v", b, err)
		}
		life, _ := s.Balance(ctx, "alice")
		if life.Queries != 3 || life.SpentEpsilon != 2.6 || life.Bucket != "" {
			t.Fatalf("lifetime account %+v", life)
		}
		g := grant("alice", "g", 0.5)
		g.Period, g.Time = PeriodDaily, day1
		if b, err := s.Grant(ctx, g); err != nil || b.Bucket != "2025-06-29" || b.RemainingEpsilon() != 1.5 {
			t.Fatalf("grant on a day: %+v %v", b, err)
		}
		if _, err := at("6", 1.5, day1); err != nil {
			t.Fatalf("after a daily grant: %v", err)
		}
		if _, err := s.Debit(ctx, charge("x", "1", 0.1, Budget{Epsilon: 1, Period: "weekly"})); !errors.Is(err, ErrInvalidCharge) {
			t.Fatalf("unknown period: %v", err)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"rdp totals match mechanisms", ModeRDP, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 5, Delta: 1e-6}
		const eps = 0.1
		n := 0
		var last Balance
		for ; n < 1000; n++ {
			b, err := s.Debit(ctx, charge("rita", idN(n), eps, budget))
			if isBudgetErr(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			last = b
		}
		// Basic composition allows 50; RDP (pure-DP curve, CKS20 conversion) far more.
		want := mechanisms.RDPPureDP(eps).Scale(float64(n))
		wantEps, _, err := want.Epsilon(budget.Delta)
		if err != nil {
			t.Fatal(err)
		}
		next, _, _ := mechanisms.RDPPureDP(eps).Scale(float64(n + 1)).Epsilon(budget.Delta)
		if n <= 50 || wantEps > budget.Epsilon+1e-6 || next <= budget.Epsilon-1e-6 {
			t.Fatalf("RDP accounting allowed %d charges of %g: mechanisms says %d cost %g and %d cost %g", n, eps, n, wantEps, n+1, next)
		}
		if last.RDP == nil || !last.RDP.Converted || math.Abs(last.RDP.Epsilon-wantEps) > 1e-6 {
			t.Fatalf("ledger RDP epsilon %+v, mechanisms %g", last.RDP, wantEps)
		}
		for i, v := range last.RDP.Orders {
			if math.Abs(v-want[i]) > float64(n)*1e-9+1e-12 || v < want[i]-1e-12 {
				t.Fatalf("order %g: ledger %g, mechanisms %g", mechanisms.RDPOrders[i], v, want[i])
			}
		}
		if last.SpentEpsilon != float64(n)*eps && math.Abs(last.SpentEpsilon-float64(n)*eps) > 1e-9 {
			t.Fatalf("basic sum %g", last.SpentEpsilon)
		}
		if r := last.RemainingEpsilon(); r > budget.Epsilon-wantEps+1e-6 || r < 0 {
			t.Fatalf("remaining %g", r)
		}
		bal, _ := s.Balance(ctx, "rita")
		if bal.RDP == nil || bal.RDP.Orders != last.RDP.Orders {
			t.Fatalf("Balance RDP %+v", bal.RDP)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"rdp gaussian curves and approximate parts", ModeRDP, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 2, Delta: 1e-5}
		g := mechanisms.RDPGaussian(20, 1) // rho = 0.00125
		var sum mechanisms.RDPVector
		for i := range 20 {
			c := charge("gus", idN(i), 0.5, budget) // basic cost (0.5, 1e-7) each
			c.Delta = 1e-7
			c.RDP = &g
			if i == 19 {
				c.RDP, c.Epsilon, c.Delta = nil, 0.05, 1e-6 // an approximate part
			} else {
				sum = sum.Add(g)
			}
			b, err := s.Debit(ctx, c)
			if err != nil {
				t.Fatalf("charge %d: %v", i, err)
			}
			if i == 19 {
				// approx part: (0.05, 1e-6) plus delta 1e-7 from each curve charge
				if b.RDP.ApproxEpsilon != 0.05 || math.Abs(b.RDP.ApproxDelta-(19e-7+1e-6)) > 1e-18 {
					t.Fatalf("approx part %+v", b.RDP)
				}
				want, _, _ := sum.Epsilon(budget.Delta - b.RDP.ApproxDelta)
				if math.Abs(b.RDP.Epsilon-(want+0.05)) > 1e-6 {
					t.Fatalf("ledger RDP epsilon %g, mechanisms %g + 0.05", b.RDP.Epsilon, want)
				}
				if b.SpentEpsilon != 9.55 || b.EffectiveEpsilon() != b.RDP.Epsilon || b.RemainingDelta() != 0 {
					t.Fatalf("balance %+v", b)
				}
			}
		}
		es, _ := s.Entries(ctx, Filter{})
		if len(es) != 20 || es[0].RDP == nil || es[0].RDP[3] < g[3] || es[19].RDP == nil {
			t.Fatalf("entries carry the debited curves: %+v", es[0].RDP)
		}
		// An analyst without delta cannot use RDP: basic composition only.
		c := charge("pure", "1", 0.5, Budget{Epsilon: 0.5})
		c.RDP = &g
		if _, err := s.Debit(ctx, c); err != nil {
			t.Fatal(err)
		}
		c.ID = "2"
		if _, err := s.Debit(ctx, c); !isBudgetErr(err) {
			t.Fatalf("delta-free budget: %v", err)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"rdp concurrent debits never overspend", ModeRDP, func(t *testing.T, s Store) {
		ctx := testCtx(t)
		budget := Budget{Epsilon: 1, Delta: 1e-6}
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				_, err := s.Debit(ctx, charge("cora", idN(i), 0.05, budget))
				if err == nil {
					ok.Add(1)
				} else if !isBudgetErr(err) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		n := ok.Load()
		e, _, _ := mechanisms.RDPPureDP(0.05).Scale(float64(n)).Epsilon(1e-6)
		basicOK := float64(n)*0.05 <= 1+1e-9
		if !basicOK && e > 1+1e-6 {
			t.Fatalf("%d charges of 0.05 cost %g under RDP and %g under basic composition, budget 1", n, e, float64(n)*0.05)
		}
		if next, _, _ := mechanisms.RDPPureDP(0.05).Scale(float64(n + 1)).Epsilon(1e-6); next <= 1-1e-6 && float64(n+1)*0.05 <= 1 {
			t.Fatalf("only %d charges accepted", n)
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}},
}

func TestAccountingCluster(t *testing.T) {
	addrs := testenv.StartRedisCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	runAccounting(t, redisOpener("cluster-hashtag", c, "ledger"))
	// Without a hash tag, shared budgets are refused on Cluster.
	s, _ := NewRedis(c, RedisOptions{Prefix: "notag"})
	ch := charge("alice", "1", 0.1, Budget{Epsilon: 1})
	ch.Shared = []Limit{{Account: "team:x", Budget: Budget{Epsilon: 1}}}
	if _, err := s.Debit(testCtx(t), ch); !errors.Is(err, ErrInvalidCharge) {
		t.Fatalf("shared budget on Cluster without HashTag: %v", err)
	}
}

func TestBoltModeRemembered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := OpenBolt(path, BoltOptions{Mode: ModeRDP})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := OpenBolt(path, BoltOptions{}); !errors.Is(err, ErrUnsupportedMode) {
		t.Fatalf("rdp file opened as basic: %v", err)
	}
}

// TestVerifyEditedBudget edits a period bucket of a shared budget behind
// the store's back.
func TestVerifyEditedBudget(t *testing.T) {
	ctx := testCtx(t)
	debit := func(s Store) {
		for i, who := range []string{"alice", "bob"} {
			c := charge(who, idN(i), 0.25, Budget{Epsilon: 1, Period: PeriodMonthly})
			c.Shared = []Limit{{Account: "team:x", Budget: Budget{Epsilon: 1}}}
			if _, err := s.Debit(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("bolt", func(t *testing.T) {
		s, path := openTestBolt(t)
		debit(s)
		s.Close()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketBudgets).Put([]byte("team:x@life"), []byte(`{"spent_eps_units":1,"queries":2,"budget_eps_units":1000000000}`))
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err = OpenBolt(path, BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Verify(ctx); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "team:x@life") {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		c := redisClient(t)
		s, _ := NewRedis(c, RedisOptions{})
		debit(s)
		if err := c.HSet(ctx, s.levelKey("", level{Account: "analyst:bob", Bucket: "2025-06"}), "spent_eps", "1").Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(ctx); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), `budget "analyst:bob" in period "2025-06"`) {
			t.Fatalf("Verify = %v", err)
		}
	})
}
