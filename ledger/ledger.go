package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dpproxy/dpproxy/mechanisms"
)

// Charge is one debit request: the cost of one answer, paid before the answer
// is computed. The caller fills every field; the ledger never reads a clock.
type Charge struct {
	// ID is the idempotency key (required), e.g. from NewID,
	// scoped to the analyst. A repeated (Analyst, ID) with the same amounts
	// charges once and returns the original Balance; with different amounts
	// it fails with ErrIDConflict. The same ID under two analysts is two
	// charges (the safe direction: both pay).
	ID      string
	Analyst string // required
	// Epsilon and Delta are the cost of this answer (>= 0, finite). They are
	// rounded UP to the ledger's fixed-point units (see EpsilonUnit).
	Epsilon float64
	Delta   float64
	// Budget is the analyst's limit from the policy, passed with every charge.
	// It is rounded DOWN to the fixed-point units. Its Period says when it
	// starts afresh (default lifetime), computed from Time in UTC.
	Budget Budget
	// Shared are further budgets the charge draws on, e.g. the analyst's
	// team ("team:oncology") or a dataset shared by every analyst
	// ("dataset:clinical"). Every one, and Budget, must hold; they are all
	// checked and debited in the same atomic step as Budget. Account names
	// must be distinct (per period) and must not start with "analyst:".
	// On Redis Cluster they need RedisOptions.HashTag (see RedisStore).
	Shared []Limit
	// RDP is the charge's Rényi-DP curve (ModeRDP only; ignored in
	// ModeBasic). When set, the charge is the composition of a mechanism
	// with that curve and a (0, Delta) part. When nil, a charge with Delta
	// 0 is accounted with the tight curve of an Epsilon-DP mechanism
	// (mechanisms.RDPPureDP), and one with Delta > 0 as an (Epsilon,
	// Delta) part outside the RDP sum.
	RDP *mechanisms.RDPVector
	// Statement is the statement text (never results). Fingerprint is the
	// normalised statement fingerprint, if the caller has one.
	Statement     string
	Fingerprint   string
	Tables        []string
	Mechanisms    string // short summary, e.g. "laplace(count) scale=2"
	PolicyVersion string
	CacheHit      bool
	Time          time.Time // required; the caller supplies the clock
	// Repeats are further answers of the same statement from the answer
	// cache, recorded in this one entry with their own IDs and times (the
	// proxy's batched cache-hit audit). Only a zero cache-hit charge may
	// carry them, at most MaxRepeats, with IDs distinct from each other and
	// from ID; each counts as a query. Their IDs are listed, not indexed:
	// idempotency is by ID and amounts, the entry's own, so a retry must
	// carry exactly the repeats of the first attempt (a retry with other
	// repeats would be taken for it, and its new repeats dropped).
	Repeats []Repeat
}

// Repeat is one repeated answer recorded in another's entry.
type Repeat struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

// MaxRepeats bounds Charge.Repeats, and so an entry's size.
const MaxRepeats = 1024

// Budget is an (epsilon, delta) limit per period.
type Budget struct {
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	Period  Period  `json:"period,omitempty"` // "" means PeriodLifetime
}

// Limit is a budget shared by several analysts (a team's, a dataset's).
type Limit struct {
	Account string `json:"account"` // e.g. "team:oncology", "dataset:clinical"
	Budget  Budget `json:"budget"`
}

// Period says when a budget starts afresh. Period boundaries are computed
// from Charge.Time in UTC: each period has its own account (a "bucket"),
// e.g. "2025-06-01" for a daily budget, "2025-06" monthly, "2025" yearly.
type Period string

const (
	PeriodLifetime Period = "lifetime"
	PeriodDaily    Period = "daily"
	PeriodMonthly  Period = "monthly"
	PeriodYearly   Period = "yearly"
)

// bucket returns the period's bucket holding t ("" for lifetime).
func (p Period) bucket(t time.Time) (string, error) {
	t = t.UTC()
	switch p {
	case "", PeriodLifetime:
		return "", nil
	case PeriodDaily:
		return t.Format("2006-01-02"), nil
	case PeriodMonthly:
		return t.Format("2006-01"), nil
	case PeriodYearly:
		return t.Format("2006"), nil
	}
	return "", fmt.Errorf("%w: unknown budget period %q (want lifetime, daily, monthly or yearly)", ErrInvalidCharge, p)
}

func (p Period) norm() Period {
	if p == "" {
		return PeriodLifetime
	}
	return p
}

// Balance is an account. Budget is the budget passed with the most recent
// successful charge (zero if the analyst has never been charged).
//
// Store.Balance and Store.Balances return analysts' lifetime accounts
// (all their charges). Debit returns the account the analyst's own Budget
// applies to: for a periodic budget, that of the current period (Bucket).
type Balance struct {
	Analyst string `json:"analyst"`
	// Bucket is the period the account covers ("" for lifetime).
	Bucket string `json:"bucket,omitempty"`
	// SpentEpsilon and SpentDelta are the sums of the charges (basic
	// composition), in both modes.
	SpentEpsilon float64 `json:"spent_epsilon"`
	SpentDelta   float64 `json:"spent_delta"`
	Budget       Budget  `json:"budget"`
	// GrantedEpsilon and GrantedDelta are added to Budget by admin grants
	// and resets (Store.Grant); they may be negative.
	GrantedEpsilon float64 `json:"granted_epsilon,omitempty"`
	GrantedDelta   float64 `json:"granted_delta,omitempty"`
	Queries        int64   `json:"queries"`
	// RDP is the Rényi-DP state in ModeRDP (nil in ModeBasic).
	RDP *RDPBalance `json:"rdp,omitempty"`
}

// RDPBalance is the Rényi-DP accounting state of an account.
type RDPBalance struct {
	// Orders is the sum of the charges' RDP curves at mechanisms.RDPOrders.
	Orders mechanisms.RDPVector `json:"orders"`
	// ApproxEpsilon and ApproxDelta sum the parts accounted outside the
	// RDP curves (charges with Delta > 0 and no curve).
	ApproxEpsilon float64 `json:"approx_epsilon"`
	ApproxDelta   float64 `json:"approx_delta"`
	// Epsilon is the total epsilon certified by RDP accounting at the
	// budget's delta (ApproxEpsilon plus the conversion of Orders at delta
	// budget - ApproxDelta); Converted is false when that delta is not
	// positive, and Epsilon is then meaningless.
	Epsilon   float64 `json:"epsilon"`
	Converted bool    `json:"converted"`
}

// EffectiveBudget is Budget plus the granted amounts, never negative.
func (b Balance) EffectiveBudget() Budget {
	return Budget{
		Epsilon: fromEps(max(0, floorUnits(b.Budget.Epsilon, epsScale)+signedUnits(b.GrantedEpsilon, epsScale))),
		Delta:   fromDelta(max(0, floorUnits(b.Budget.Delta, deltaScale)+signedUnits(b.GrantedDelta, deltaScale))),
		Period:  b.Budget.Period,
	}
}

// EffectiveEpsilon is the epsilon the account has used up: SpentEpsilon in
// ModeBasic; in ModeRDP the smaller of SpentEpsilon (when SpentDelta fits
// the budget) and the RDP conversion.
func (b Balance) EffectiveEpsilon() float64 {
	eff := b.EffectiveBudget()
	if b.RDP != nil && b.RDP.Converted && (b.RDP.Epsilon < b.SpentEpsilon || b.SpentDelta > eff.Delta) {
		return b.RDP.Epsilon
	}
	return b.SpentEpsilon
}

// RemainingEpsilon is the effective budget minus EffectiveEpsilon, never
// below zero, computed in fixed point so it matches what the next Debit
// will allow (in ModeRDP, the next charge's cost depends on its curve).
func (b Balance) RemainingEpsilon() float64 {
	return fromEps(remainingUnits(floorUnits(b.EffectiveBudget().Epsilon, epsScale), ceilUnits(b.EffectiveEpsilon(), epsScale)))
}

// RemainingDelta is the effective budget's delta minus SpentDelta, never
// below zero (in ModeRDP, when the RDP conversion is used it takes the
// whole delta budget, and RemainingDelta is 0).
func (b Balance) RemainingDelta() float64 {
	if b.RDP != nil && b.EffectiveEpsilon() != b.SpentEpsilon {
		return 0
	}
	return fromDelta(remainingUnits(floorUnits(b.EffectiveBudget().Delta, deltaScale), ceilUnits(b.SpentDelta, deltaScale)))
}

// signedUnits converts a possibly negative amount, rounding toward zero.
func signedUnits(x float64, scale int64) int64 {
	if x < 0 {
		return -floorUnits(-x, scale)
	}
	return floorUnits(x, scale)
}

func remainingUnits(budget, spent int64) int64 {
	if budget <= spent {
		return 0
	}
	return budget - spent
}

// Entry is one audit record: one successful charge. Entries form a hash chain
// (see doc.go): Hash = SHA-256 over PrevHash, the position, the analyst's
// totals after the charge and the SHA-256 of the canonical encoding of the
// charge. Epsilon and Delta are the amounts actually debited (rounded up).
type Entry struct {
	// Seq is the entry's position in its chain, from 1: one chain for the
	// whole file in BoltStore, one chain per analyst in RedisStore.
	Seq uint64 `json:"seq"`
	// Kind is KindCharge for a debit, KindGrant or KindReset for an admin
	// adjustment (Store.Grant), whose Epsilon and Delta are the amounts
	// added to the analyst's budget (possibly negative) and whose
	// Statement is the admin's note.
	Kind          string    `json:"kind"`
	ID            string    `json:"id"`
	Time          time.Time `json:"time"`
	Analyst       string    `json:"analyst"`
	Epsilon       float64   `json:"epsilon"`
	Delta         float64   `json:"delta"`
	Budget        Budget    `json:"budget"`
	Statement     string    `json:"statement"`
	Fingerprint   string    `json:"fingerprint,omitempty"`
	Tables        []string  `json:"tables,omitempty"`
	Mechanisms    string    `json:"mechanisms,omitempty"`
	PolicyVersion string    `json:"policy_version,omitempty"`
	CacheHit      bool      `json:"cache_hit"`
	// Repeats are further cache hits of the statement this entry records
	// (Charge.Repeats); Queries counts each.
	Repeats []Repeat `json:"repeats,omitempty"`
	Mode    Mode     `json:"mode"`
	// Bucket is the period of Budget the charge was debited from.
	Bucket string  `json:"bucket,omitempty"`
	Shared []Limit `json:"shared,omitempty"`
	// RDP is the curve debited in ModeRDP (nil for KindGrant, ModeBasic).
	RDP *mechanisms.RDPVector `json:"rdp,omitempty"`
	// Lifetime totals for the analyst after this entry.
	SpentEpsilon float64 `json:"spent_epsilon"`
	SpentDelta   float64 `json:"spent_delta"`
	Queries      int64   `json:"queries"`
	PrevHash     string  `json:"prev_hash"`
	Hash         string  `json:"hash"`
}

// Filter selects audit entries. Zero fields match everything.
type Filter struct {
	Analyst string
	Since   time.Time // inclusive
	Until   time.Time // exclusive
	Limit   int       // at most this many (the first ones in order); 0 = all
}

func (f Filter) match(e *Entry) bool {
	if f.Analyst != "" && e.Analyst != f.Analyst {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	return true
}

// Mode is the accounting mode of a store.
type Mode string

const (
	// ModeBasic is basic (sequential) composition: epsilons and deltas add up.
	ModeBasic Mode = "basic"
	// ModeRDP is Rényi-DP accounting: each account also sums the charges'
	// RDP curves (mechanisms.RDPVector) and a charge is accepted if either
	// the basic sums or the RDP conversion fit the budget (doc.go).
	ModeRDP Mode = "rdp"
)

func checkMode(m Mode) (Mode, error) {
	switch m {
	case "", ModeBasic:
		return ModeBasic, nil
	case ModeRDP:
		return ModeRDP, nil
	default:
		return "", fmt.Errorf("%w: %q (want %q or %q)", ErrUnsupportedMode, m, ModeBasic, ModeRDP)
	}
}

// Entry kinds.
const (
	KindCharge = "charge"
	KindGrant  = "grant"
	KindReset  = "reset"
)

// Grant is an admin adjustment of an analyst's budget (Store.Grant). It is
// written to the audit chain like a charge.
type Grant struct {
	ID      string // required idempotency key, like Charge.ID
	Analyst string // required
	// Reset, when true, sets the granted amounts so that the analyst's
	// remaining budget is the whole Budget again (granted = spent);
	// Epsilon and Delta must then be 0.
	Reset bool
	// Epsilon and Delta are added to the analyst's budget (negative values
	// take back an earlier grant).
	Epsilon float64
	Delta   float64
	// Period selects the account adjusted: the analyst's lifetime account,
	// or the current day's / month's / year's (from Time) when the analyst
	// has a periodic budget.
	Period Period
	Note   string    // why, by whom; stored as the entry's Statement
	Time   time.Time // required
}

// Store is a privacy budget ledger. All methods are safe for concurrent use.
type Store interface {
	// Debit atomically checks the budget, debits the charge and appends one
	// audit entry, in one atomic step. On *BudgetError nothing is debited.
	Debit(ctx context.Context, c Charge) (Balance, error)
	// Balance returns the analyst's account (zero if never charged).
	Balance(ctx context.Context, analyst string) (Balance, error)
	// Balances returns every account, sorted by analyst.
	Balances(ctx context.Context) ([]Balance, error)
	// Entries returns the audit entries matching f, in order (for RedisStore
	// without an analyst filter: by time, then analyst, then Seq).
	Entries(ctx context.Context, f Filter) ([]Entry, error)
	// Grant applies an admin adjustment and appends it to the audit chain,
	// atomically; it returns the adjusted account. Grants are idempotent
	// by (Analyst, ID) like charges.
	Grant(ctx context.Context, g Grant) (Balance, error)
	// Verify checks the hash chain(s) and that the accounts equal the sums of
	// their entries. The error (wrapping ErrTampered) names the first bad entry.
	Verify(ctx context.Context) error
	Close() error
}

// DebitStarter is a Store whose debit can run beside the caller's own work
// without a goroutine of the caller's. wire overlaps each debit with the
// upstream query; with a goroutine per statement for it (its start and two
// more hand-offs between threads) an uncached statement took about 7 µs
// more CPU (13 alternating A/B pairs, docs/benchmarks.md). BoltStore
// implements it; wire runs other stores' Debit in a goroutine.
type DebitStarter interface {
	// StartDebit begins Debit(ctx, c) and returns a function that waits for
	// its outcome. done, when not nil, is called exactly once, as soon as
	// the outcome is known (by StartDebit itself for a charge refused before
	// it is queued, else by the store's writer), before wait returns it;
	// it must not block. A wait cut short by ctx returns ErrUnavailable
	// (the debit may still commit, as with Debit) and done may be called
	// later.
	StartDebit(ctx context.Context, c Charge, done func(error)) (wait func() (Balance, error))
}

var (
	// ErrUnavailable is wrapped (use errors.Is) when the store cannot be
	// reached, is corrupt, is locked by another process or times out. The
	// caller must refuse the query.
	ErrUnavailable = errors.New("ledger: store unavailable")
	// ErrInvalidCharge is wrapped (use errors.Is) when a Charge is malformed
	// (missing ID, analyst or time; negative, NaN or infinite amounts).
	ErrInvalidCharge = errors.New("ledger: invalid charge")
	// ErrIDConflict is wrapped (use errors.Is) when an analyst's charge ID
	// was already used with a different amount. Nothing is debited.
	ErrIDConflict = errors.New("ledger: charge ID reused for a different charge")
	// ErrTampered is wrapped (use errors.Is) by Verify when the audit log or
	// the accounts do not match the hash chain.
	ErrTampered = errors.New("ledger: audit log verification failed")
	// ErrUnsupportedMode is wrapped (use errors.Is) for an accounting mode
	// that is not implemented.
	ErrUnsupportedMode = errors.New("ledger: unsupported accounting mode")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("ledger: store closed")
)

// BudgetError is returned (use errors.As) when a charge would exceed the
// analyst's budget. Nothing is debited and no entry is written.
type BudgetError struct {
	Analyst string
	// Account is the budget that does not hold: "analyst:<name>" for the
	// analyst's own, else the Limit's Account; Bucket is its period.
	Account        string
	Bucket         string
	Requested      float64 // epsilon of the refused charge (rounded up)
	Remaining      float64 // epsilon left
	RequestedDelta float64
	RemainingDelta float64
}

func (e *BudgetError) Error() string {
	which := ""
	if e.Account != "" && e.Account != analystAccount(e.Analyst) {
		which = fmt.Sprintf(" (shared budget %q)", e.Account)
	}
	if e.Bucket != "" {
		which += fmt.Sprintf(" (period %s)", e.Bucket)
	}
	if e.RequestedDelta > e.RemainingDelta {
		return fmt.Sprintf("ledger: privacy budget exceeded for analyst %q%s: requested delta %g, remaining delta %g (epsilon requested %g, remaining %g)",
			e.Analyst, which, e.RequestedDelta, e.RemainingDelta, e.Requested, e.Remaining)
	}
	return fmt.Sprintf("ledger: privacy budget exceeded for analyst %q%s: requested epsilon %g, remaining epsilon %g",
		e.Analyst, which, e.Requested, e.Remaining)
}
