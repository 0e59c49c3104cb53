package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Charge is one debit request: the cost of one answer, paid before the answer
// is computed. The caller fills every field; the ledger never reads a clock.
type Charge struct {
	// ID is the idempotency key (required), e.g. 128 random bits in hex,
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
	// It is rounded DOWN to the fixed-point units.
	Budget Budget
	// Statement is the statement text (never results). Fingerprint is the
	// normalised statement fingerprint, if the caller has one.
	Statement     string
	Fingerprint   string
	Tables        []string
	Mechanisms    string // short summary, e.g. "laplace(count) scale=2"
	PolicyVersion string
	CacheHit      bool
	Time          time.Time // required; the caller supplies the clock
}

// Budget is an analyst's (epsilon, delta) limit under basic composition.
type Budget struct {
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
}

// Balance is an analyst's account. Budget is the budget passed with the most
// recent successful charge (zero if the analyst has never been charged).
type Balance struct {
	Analyst      string  `json:"analyst"`
	SpentEpsilon float64 `json:"spent_epsilon"`
	SpentDelta   float64 `json:"spent_delta"`
	Budget       Budget  `json:"budget"`
	Queries      int64   `json:"queries"`
}

// RemainingEpsilon is Budget.Epsilon - SpentEpsilon, never below zero,
// computed in fixed point so it matches what the next Debit will allow.
func (b Balance) RemainingEpsilon() float64 {
	return fromEps(remainingUnits(floorUnits(b.Budget.Epsilon, epsScale), ceilUnits(b.SpentEpsilon, epsScale)))
}

// RemainingDelta is Budget.Delta - SpentDelta, never below zero.
func (b Balance) RemainingDelta() float64 {
	return fromDelta(remainingUnits(floorUnits(b.Budget.Delta, deltaScale), ceilUnits(b.SpentDelta, deltaScale)))
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
	Seq           uint64    `json:"seq"`
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
	Mode          Mode      `json:"mode"`
	// Totals for the analyst after this charge.
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
	// ModeRDP is reserved for Rényi-DP accounting, which will take its
	// per-order vectors from mechanisms/ once that package defines them.
	// Opening a store with it currently fails with ErrUnsupportedMode.
	ModeRDP Mode = "rdp"
)

func checkMode(m Mode) (Mode, error) {
	switch m {
	case "", ModeBasic:
		return ModeBasic, nil
	default:
		return "", fmt.Errorf("%w: %q (only %q is implemented)", ErrUnsupportedMode, m, ModeBasic)
	}
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
	// Verify checks the hash chain(s) and that the accounts equal the sums of
	// their entries. The error (wrapping ErrTampered) names the first bad entry.
	Verify(ctx context.Context) error
	Close() error
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
	Analyst        string
	Requested      float64 // epsilon of the refused charge (rounded up)
	Remaining      float64 // epsilon left
	RequestedDelta float64
	RemainingDelta float64
}

func (e *BudgetError) Error() string {
	if e.RequestedDelta > e.RemainingDelta {
		return fmt.Sprintf("ledger: privacy budget exceeded for analyst %q: requested delta %g, remaining delta %g (epsilon requested %g, remaining %g)",
			e.Analyst, e.RequestedDelta, e.RemainingDelta, e.Requested, e.Remaining)
	}
	return fmt.Sprintf("ledger: privacy budget exceeded for analyst %q: requested epsilon %g, remaining epsilon %g",
		e.Analyst, e.Requested, e.Remaining)
}

// amounts is a validated charge in fixed point.
type amounts struct {
	eps, delta             int64
	budgetEps, budgetDelta int64
}

func validate(c *Charge) (amounts, error) {
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
	var err error
	if a.eps, err = chargeUnits("epsilon", c.Epsilon, epsScale); err != nil {
		return a, err
	}
	if a.delta, err = chargeUnits("delta", c.Delta, deltaScale); err != nil {
		return a, err
	}
	if a.budgetEps, err = budgetUnits("budget epsilon", c.Budget.Epsilon, epsScale); err != nil {
		return a, err
	}
	if a.budgetDelta, err = budgetUnits("budget delta", c.Budget.Delta, deltaScale); err != nil {
		return a, err
	}
	if c.Delta > 1 || c.Budget.Delta > 1 {
		return a, fmt.Errorf("%w: delta must be at most 1", ErrInvalidCharge)
	}
	return a, nil
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

func budgetUnits(name string, x float64, scale int64) (int64, error) {
	if err := checkAmount(name, x); err != nil {
		return 0, err
	}
	if x > maxAmount(scale) {
		return 0, fmt.Errorf("%w: %s %g exceeds the maximum %g", ErrInvalidCharge, name, x, maxAmount(scale))
	}
	return floorUnits(x, scale), nil
}

func (a amounts) exceeds(spentEps, spentDelta int64) bool {
	return spentEps+a.eps > a.budgetEps || spentDelta+a.delta > a.budgetDelta
}

func budgetError(analyst string, a amounts, spentEps, spentDelta int64) *BudgetError {
	return &BudgetError{
		Analyst:        analyst,
		Requested:      fromEps(a.eps),
		Remaining:      fromEps(remainingUnits(a.budgetEps, spentEps)),
		RequestedDelta: fromDelta(a.delta),
		RemainingDelta: fromDelta(remainingUnits(a.budgetDelta, spentDelta)),
	}
}

// account is an analyst's state in fixed point, shared by both backends.
type account struct {
	SpentEps    int64  `json:"spent_eps_units"`
	SpentDelta  int64  `json:"spent_delta_units"`
	BudgetEps   int64  `json:"budget_eps_units"`
	BudgetDelta int64  `json:"budget_delta_units"`
	Queries     int64  `json:"queries"`
	Seq         uint64 `json:"seq,omitempty"`  // RedisStore: last entry of this analyst's chain
	Head        string `json:"head,omitempty"` // RedisStore: hash of that entry
}

func (a account) balance(analyst string) Balance {
	return Balance{
		Analyst:      analyst,
		SpentEpsilon: fromEps(a.SpentEps),
		SpentDelta:   fromDelta(a.SpentDelta),
		Budget:       Budget{Epsilon: fromEps(a.BudgetEps), Delta: fromDelta(a.BudgetDelta)},
		Queries:      a.Queries,
	}
}
