package ledger

import (
	"fmt"
	"math"
	"strings"

	"github.com/dpproxy/dpproxy/mechanisms"
)

// The accounting engine, shared by both backends: validation into fixed
// point, the budget levels of a charge, the per-account state, the budget
// check and the replay used by Verify. lua/debit.lua implements the same
// check and update for RedisStore; keep the two in step.

// level is one budget a charge must hold: the analyst's own (levels[0])
// or a shared one, in the bucket of its period that holds the charge's time.
type level struct {
	Account     string `json:"account"`
	Period      Period `json:"period,omitempty"`
	Bucket      string `json:"bucket,omitempty"`
	BudgetEps   int64  `json:"budget_eps_units"`
	BudgetDelta int64  `json:"budget_delta_units"`
}

// stateKey names the level's account state: the account and its bucket.
func (l level) stateKey() string {
	if l.Bucket == "" {
		return l.Account + "@life"
	}
	return l.Account + "@" + l.Bucket
}

func analystAccount(analyst string) string { return "analyst:" + analyst }

// lifetime reports whether l is the analyst's own lifetime budget, whose
// state is the analyst's account (the one that also holds the chain head).
func (l level) lifetime(analyst string) bool {
	return l.Bucket == "" && l.Account == analystAccount(analyst)
}

// amounts is a validated charge in fixed point.
type amounts struct {
	eps, delta int64
	queries    int64   // answers the charge records: 1 + its repeats
	levels     []level // levels[0] is the analyst's own budget
	// ModeRDP only: the charge's RDP curve in epsilon units (nil in
	// ModeBasic) and its part accounted outside the curve.
	rdp         []int64
	xeps, xdelt int64
}

// Fixed-point RDP: per-order sums are in epsilon units, rounded up per
// charge, and saturate at rdpCap (4e6 epsilon). An order at the cap
// converts to more than MaxEpsilon, so it can never make a charge fit.
const rdpCap int64 = 4_000_000_000_000_000

func rdpAdd(a, b int64) int64 { return min(a+b, rdpCap) }

// checkRepeats: only a zero cache-hit charge records repeats (so that
// merging them can never change what is spent), each with an ID and a
// time.
func checkRepeats(c *Charge) error {
	if len(c.Repeats) == 0 {
		return nil
	}
	switch {
	case !c.CacheHit || c.Epsilon != 0 || c.Delta != 0 || c.RDP != nil:
		return fmt.Errorf("%w: only a zero cache-hit charge may record repeats", ErrInvalidCharge)
	case len(c.Repeats) > MaxRepeats:
		return fmt.Errorf("%w: %d repeats; at most %d", ErrInvalidCharge, len(c.Repeats), MaxRepeats)
	}
	seen := map[string]bool{c.ID: true}
	for _, r := range c.Repeats {
		switch {
		case r.ID == "" || len(r.ID) > 256:
			return fmt.Errorf("%w: a repeat's ID must be 1 to 256 bytes", ErrInvalidCharge)
		case r.Time.IsZero():
			return fmt.Errorf("%w: repeat %q has a zero time", ErrInvalidCharge, r.ID)
		case seen[r.ID]:
			return fmt.Errorf("%w: ID %q recorded twice in one entry", ErrInvalidCharge, r.ID)
		}
		seen[r.ID] = true
	}
	return nil
}

func validate(c *Charge, mode Mode) (amounts, error) {
	var a amounts
	switch {
	case c.ID == "":
		return a, fmt.Errorf("%w: empty charge ID", ErrInvalidCharge)
	case len(c.ID) > 256:
		return a, fmt.Errorf("%w: charge ID longer than 256 bytes", ErrInvalidCharge)
	case c.Analyst == "":
		return a, fmt.Errorf("%w: empty analyst", ErrInvalidCharge)
	case c.Time.IsZero():
		return a, fmt.Errorf("%w: zero time (the caller supplies the clock)", ErrInvalidCharge)
	}
	if err := checkRepeats(c); err != nil {
		return a, err
	}
	a.queries = 1 + int64(len(c.Repeats))
	var err error
	if a.eps, err = chargeUnits("epsilon", c.Epsilon, epsScale); err != nil {
		return a, err
	}
	if a.delta, err = chargeUnits("delta", c.Delta, deltaScale); err != nil {
		return a, err
	}
	if c.Delta > 1 {
		return a, fmt.Errorf("%w: delta must be at most 1", ErrInvalidCharge)
	}
	own, err := newLevel(analystAccount(c.Analyst), c.Budget, c)
	if err != nil {
		return a, err
	}
	a.levels = append(make([]level, 0, 1+len(c.Shared)), own)
	if len(c.Shared) == 0 {
		return a, a.rdpUnits(c, mode)
	}
	seen := map[string]bool{own.stateKey(): true}
	for _, l := range c.Shared {
		switch {
		case l.Account == "" || len(l.Account) > 256:
			return a, fmt.Errorf("%w: shared budget account must be 1 to 256 bytes", ErrInvalidCharge)
		case strings.HasPrefix(l.Account, "analyst:"):
			return a, fmt.Errorf("%w: shared budget account %q must not start with \"analyst:\"", ErrInvalidCharge, l.Account)
		}
		lv, err := newLevel(l.Account, l.Budget, c)
		if err != nil {
			return a, err
		}
		if seen[lv.stateKey()] {
			return a, fmt.Errorf("%w: shared budget %q listed twice", ErrInvalidCharge, l.Account)
		}
		seen[lv.stateKey()] = true
		a.levels = append(a.levels, lv)
	}
	return a, a.rdpUnits(c, mode)
}

// rdpUnits sets a's RDP sums (ModeRDP only).
func (a *amounts) rdpUnits(c *Charge, mode Mode) error {
	if mode == ModeRDP {
		a.rdp = make([]int64, mechanisms.NumRDPOrders)
		switch {
		case c.RDP != nil:
			for i, v := range c.RDP {
				if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
					return fmt.Errorf("%w: RDP value at order %g must be non-negative and finite, got %g", ErrInvalidCharge, mechanisms.RDPOrders[i], v)
				}
				if v > MaxEpsilon {
					a.rdp[i] = rdpCap
				} else {
					a.rdp[i] = ceilUnits(v, epsScale)
				}
			}
			a.xdelt = a.delta
		case a.delta == 0:
			for i, v := range mechanisms.RDPPureDP(fromEps(a.eps)) {
				a.rdp[i] = min(ceilUnits(v, epsScale), a.eps)
			}
		default:
			a.xeps, a.xdelt = a.eps, a.delta
		}
	}
	return nil
}

func newLevel(account string, b Budget, c *Charge) (level, error) {
	l := level{Account: account, Period: b.Period.norm()}
	var err error
	if l.Bucket, err = l.Period.bucket(c.Time); err != nil {
		return l, err
	}
	if l.Period == PeriodLifetime {
		l.Period = ""
	}
	if l.BudgetEps, err = budgetUnits("budget epsilon", account, b.Epsilon, epsScale); err != nil {
		return l, err
	}
	if l.BudgetDelta, err = budgetUnits("budget delta", account, b.Delta, deltaScale); err != nil {
		return l, err
	}
	if b.Delta > 1 {
		return l, fmt.Errorf("%w: delta must be at most 1", ErrInvalidCharge)
	}
	return l, nil
}

func checkAmount(name string, x float64) error {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return fmt.Errorf("%w: %s must be non-negative and finite, got %g", ErrInvalidCharge, name, x)
	}
	return nil
}

func chargeUnits(name string, x float64, scale int64) (int64, error) {
	if err := checkAmount(name, x); err != nil {
		return 0, err
	}
	if x > maxAmount(scale) {
		return 0, fmt.Errorf("%w: %s %g exceeds the maximum %g", ErrInvalidCharge, name, x, maxAmount(scale))
	}
	return ceilUnits(x, scale), nil
}

// budgetUnits: what (budget epsilon or delta) of account, in units. The
// name for an error is built only for an error: this runs on every debit.
func budgetUnits(what, account string, x float64, scale int64) (int64, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return 0, checkAmount(what+" of "+account, x)
	}
	if x > maxAmount(scale) {
		return 0, fmt.Errorf("%w: %s of %s %g exceeds the maximum %g", ErrInvalidCharge, what, account, x, maxAmount(scale))
	}
	return floorUnits(x, scale), nil
}

// account is the state of one account in fixed point, shared by both
// backends: an analyst's lifetime account (which also holds the chain head
// in RedisStore) or a level's period bucket.
type account struct {
	SpentEps    int64  `json:"spent_eps_units"`
	SpentDelta  int64  `json:"spent_delta_units"`
	BudgetEps   int64  `json:"budget_eps_units"`
	BudgetDelta int64  `json:"budget_delta_units"`
	Queries     int64  `json:"queries"`
	Seq         uint64 `json:"seq,omitempty"`  // RedisStore: last entry of this analyst's chain
	Head        string `json:"head,omitempty"` // RedisStore: hash of that entry
	GrantEps    int64  `json:"grant_eps_units,omitempty"`
	GrantDelta  int64  `json:"grant_delta_units,omitempty"`
	// ModeRDP: the parts outside the RDP sums, and the sums per order.
	XEps   int64   `json:"x_eps_units,omitempty"`
	XDelta int64   `json:"x_delta_units,omitempty"`
	RDP    []int64 `json:"rdp_units,omitempty"`
}

// equal compares two states; missing RDP sums count as zeros.
func (a *account) equal(b *account) bool {
	for i := range max(len(a.RDP), len(b.RDP)) {
		if a.rdpAt(i) != b.rdpAt(i) {
			return false
		}
	}
	return a.SpentEps == b.SpentEps && a.SpentDelta == b.SpentDelta && a.BudgetEps == b.BudgetEps &&
		a.BudgetDelta == b.BudgetDelta && a.Queries == b.Queries && a.Seq == b.Seq && a.Head == b.Head &&
		a.GrantEps == b.GrantEps && a.GrantDelta == b.GrantDelta && a.XEps == b.XEps && a.XDelta == b.XDelta
}

// effective returns the budget of level l plus this account's grants.
func (a *account) effective(l level) (eps, delta int64) {
	return max(0, l.BudgetEps+a.GrantEps), max(0, l.BudgetDelta+a.GrantDelta)
}

// fits reports whether charge c fits level l given this account's state.
// Basic composition: spent + charge within the (granted) budget. ModeRDP
// additionally accepts when the RDP conversion fits: the composition is
// then (xeps + eps_rdp(B_delta - xdelta), B_delta)-DP, which is at least as
// good a guarantee (CKS20 Prop. 12 for the conversion, basic composition
// for the approximate part).
func (a *account) fits(c *amounts, l level, mode Mode) bool {
	be, bd := a.effective(l)
	if a.SpentEps+c.eps <= be && a.SpentDelta+c.delta <= bd {
		return true
	}
	if mode != ModeRDP {
		return false
	}
	xd := a.XDelta + c.xdelt
	if xd >= bd {
		return false
	}
	r := make([]int64, mechanisms.NumRDPOrders)
	for i := range r {
		r[i] = rdpAdd(a.rdpAt(i), c.rdp[i])
	}
	return a.XEps+c.xeps+rdpEpsUnits(r, bd-xd) <= be
}

func (a *account) rdpAt(i int) int64 {
	if i < len(a.RDP) {
		return a.RDP[i]
	}
	return 0
}

// add debits charge c (one debit per account, however many levels share it).
func (a *account) add(c *amounts, mode Mode) {
	a.SpentEps += c.eps
	a.SpentDelta += c.delta
	a.Queries += c.queries
	if mode == ModeRDP {
		if a.RDP == nil {
			a.RDP = make([]int64, mechanisms.NumRDPOrders)
		}
		for i := range a.RDP {
			a.RDP[i] = rdpAdd(a.RDP[i], c.rdp[i])
		}
		a.XEps += c.xeps
		a.XDelta += c.xdelt
	}
}

// rdpConv are the per-order constants of the RDP to (epsilon, delta)
// conversion of Canonne, Kamath & Steinke 2020, Proposition 12 (as in
// mechanisms.RDPVector.Epsilon):
//
//	epsilon = min over alpha of  rdp(alpha) + shift(alpha) - log(delta) inv(alpha),
//	shift = log((alpha-1)/alpha) - log(alpha)/(alpha-1),  inv = 1/(alpha-1).
//
// RedisStore passes them to the script, so only log(delta) is computed
// there (by Lua's libm; it may differ from Go's in the last bit, which can
// move a result by one 1e-9 unit at an exact boundary).
var rdpShift, rdpInv = func() (s, v [mechanisms.NumRDPOrders]float64) {
	for i, a := range mechanisms.RDPOrders {
		v[i] = 1 / (a - 1)
		s[i] = math.Log((a-1)/a) - math.Log(a)/(a-1)
	}
	return
}()

// rdpEpsUnits converts per-order sums r (epsilon units) at delta (delta
// units, > 0) to epsilon units, rounded up; at least 0.
func rdpEpsUnits(r []int64, deltaUnits int64) int64 {
	ld := math.Log(float64(deltaUnits) * 1e-15)
	best := math.Inf(1)
	for i := range r {
		e := float64(r[i])/1e9 + rdpShift[i] - ld*rdpInv[i]
		best = math.Min(best, e)
	}
	if best <= 0 {
		return 0
	}
	u := math.Ceil(best * 1e9)
	if u > float64(rdpCap) {
		return rdpCap
	}
	return int64(u)
}

// balance is the account as reported for analyst, under level l's budget.
func (a *account) balance(analyst string, l level, mode Mode) Balance {
	b := Balance{
		Analyst:        analyst,
		Bucket:         l.Bucket,
		SpentEpsilon:   fromEps(a.SpentEps),
		SpentDelta:     fromDelta(a.SpentDelta),
		Budget:         Budget{Epsilon: fromEps(l.BudgetEps), Delta: fromDelta(l.BudgetDelta), Period: l.Period},
		GrantedEpsilon: fromEps(a.GrantEps),
		GrantedDelta:   fromDelta(a.GrantDelta),
		Queries:        a.Queries,
	}
	if mode == ModeRDP {
		r := &RDPBalance{ApproxEpsilon: fromEps(a.XEps), ApproxDelta: fromDelta(a.XDelta)}
		rs := make([]int64, mechanisms.NumRDPOrders)
		for i := range rs {
			rs[i] = a.rdpAt(i)
			r.Orders[i] = fromEps(rs[i])
		}
		if _, bd := a.effective(l); bd > a.XDelta {
			r.Converted = true
			r.Epsilon = fromEps(a.XEps + rdpEpsUnits(rs, bd-a.XDelta))
		}
		b.RDP = r
	}
	return b
}

// lifetimeLevel is the level describing an analyst's lifetime account with
// the budget last stored in it (for Balance and Balances).
func (a *account) lifetimeLevel(analyst string) level {
	return level{Account: analystAccount(analyst), BudgetEps: a.BudgetEps, BudgetDelta: a.BudgetDelta}
}

func budgetError(analyst string, c *amounts, l level, a *account, mode Mode) *BudgetError {
	bal := a.balance(analyst, l, mode)
	_, bd := a.effective(l)
	return &BudgetError{
		Analyst:        analyst,
		Account:        l.Account,
		Bucket:         l.Bucket,
		Requested:      fromEps(c.eps),
		Remaining:      bal.RemainingEpsilon(),
		RequestedDelta: fromDelta(c.delta),
		RemainingDelta: fromDelta(remainingUnits(bd, a.SpentDelta)),
	}
}

// grantLevel validates g and returns the level it adjusts (for a reset the
// amounts are computed by the backend from the current state).
func grantLevel(g *Grant) (level, error) {
	switch {
	case g.ID == "" || len(g.ID) > 256:
		return level{}, fmt.Errorf("%w: grant ID must be 1 to 256 bytes", ErrInvalidCharge)
	case g.Analyst == "":
		return level{}, fmt.Errorf("%w: empty analyst", ErrInvalidCharge)
	case g.Time.IsZero():
		return level{}, fmt.Errorf("%w: zero time", ErrInvalidCharge)
	case g.Reset && (g.Epsilon != 0 || g.Delta != 0):
		return level{}, fmt.Errorf("%w: a reset takes no amounts", ErrInvalidCharge)
	}
	for _, x := range []float64{g.Epsilon, g.Delta} {
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > MaxEpsilon {
			return level{}, fmt.Errorf("%w: grant amounts must be finite and at most %g in absolute value", ErrInvalidCharge, MaxEpsilon)
		}
	}
	if math.Abs(g.Delta) > 1 {
		return level{}, fmt.Errorf("%w: granted delta must be at most 1 in absolute value", ErrInvalidCharge)
	}
	return newLevel(analystAccount(g.Analyst), Budget{Period: g.Period}, &Charge{Time: g.Time})
}

// replay recomputes every account from the entries of a chain (Verify).
type replay struct {
	states map[string]*account // key: lifetimeKey(analyst), else stateKey
	levels map[string]level    // the level of each stateKey
}

func newReplay() *replay {
	return &replay{states: map[string]*account{}, levels: map[string]level{}}
}

func (r *replay) state(key string) *account {
	st := r.states[key]
	if st == nil {
		st = &account{}
		r.states[key] = st
	}
	return st
}

// lifetimeKey is the replay key of an analyst's lifetime account; the NUL
// prefix keeps it apart from every stateKey.
func lifetimeKey(analyst string) string { return "\x00" + analyst }

// apply replays one decoded entry body.
func (r *replay) apply(b *entryBody) error {
	own := level{Account: analystAccount(b.Analyst), Period: b.Period, Bucket: b.Bucket, BudgetEps: b.BudgetEps, BudgetDelta: b.BudgetDelta}
	life := r.state(lifetimeKey(b.Analyst))
	key := func(l level) string {
		if l.lifetime(b.Analyst) {
			return lifetimeKey(b.Analyst)
		}
		r.levels[l.stateKey()] = l
		return l.stateKey()
	}
	switch b.Kind {
	case "", KindCharge:
		a := amounts{eps: b.EpsUnits, delta: b.DeltaUnits, queries: 1 + int64(len(b.Repeats)), rdp: b.RDPUnits, xeps: b.XEps, xdelt: b.XDelta}
		if len(b.Repeats) > 0 && (!b.CacheHit || a.eps != 0 || a.delta != 0) {
			return fmt.Errorf("repeats recorded in a charge that is not a zero cache hit")
		}
		if b.Mode == ModeRDP && len(a.rdp) != mechanisms.NumRDPOrders {
			return fmt.Errorf("RDP entry with %d orders", len(a.rdp))
		}
		touched := map[*account]bool{life: true}
		life.add(&a, b.Mode)
		life.BudgetEps, life.BudgetDelta = b.BudgetEps, b.BudgetDelta
		for _, l := range append([]level{own}, b.Shared...) {
			st := r.state(key(l))
			if !touched[st] {
				touched[st] = true
				st.add(&a, b.Mode)
			}
			st.BudgetEps, st.BudgetDelta = l.BudgetEps, l.BudgetDelta
		}
	case KindGrant, KindReset:
		st := r.state(key(own))
		st.GrantEps += b.EpsUnits
		st.GrantDelta += b.DeltaUnits
	default:
		return fmt.Errorf("unknown entry kind %q", b.Kind)
	}
	return nil
}
