// Package audit estimates, from samples of a mechanism's outputs on two
// neighbouring databases, a statistical lower bound on the ε the mechanism
// actually provides. A correct mechanism's bound stays below the ε it
// charges (with the chosen confidence); a bound above it is proof, at that
// confidence, that the mechanism leaks more than it charges for.
//
// The test is the threshold (distinguishing) test of Jagielski, Ullman &
// Oprea, "Auditing Differentially Private Machine Learning" (NeurIPS 2020)
// and Nasr et al., "Adversary Instantiation" (IEEE S&P 2021): for an event
// E = {output >= t} (or {output <= t}), (ε, δ)-DP requires
//
//	P[M(D1) ∈ E] <= e^ε P[M(D0) ∈ E] + δ,
//
// so ε >= ln((p1 - δ) / p0) for the true probabilities. The threshold and
// direction are chosen on a first (selection) half of each sample; the
// probabilities are then bounded on the second half with exact
// Clopper–Pearson intervals, each at confidence 1 - α/2 (union bound), so
// the reported bound holds with probability at least 1 - α. Both orders of
// the pair (D0, D1) are tried on the selection half, since DP is symmetric.
//
// The package is pure: no I/O, no clock, no randomness of its own.
// [Simulate] runs the planner's mechanisms and post-processing (package
// answer) on exact per-group values obtained once from a database, so it
// audits the mechanism plus post-processing given the rewritten SQL's exact
// results; the end-to-end path through the proxy is audited separately with
// fewer samples (see integration/audit_test.go).
package audit

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// Options tune [LowerBound].
type Options struct {
	// Alpha is the failure probability of the bound (default 0.05).
	Alpha float64
	// Delta is the δ of the mechanism under audit (default 0).
	Delta float64
}

// Result is one audit's outcome.
type Result struct {
	Epsilon   float64 // the lower bound on ε (0 when nothing is shown)
	Threshold float64 // the chosen threshold t
	Upper     bool    // the event is output >= t (else output <= t)
	Swapped   bool    // the event is likelier on D0 than on D1
	P1Lower   float64 // Clopper–Pearson lower bound of P[M(D1) ∈ E]
	P0Upper   float64 // Clopper–Pearson upper bound of P[M(D0) ∈ E]
	N         int     // samples per database used for the bound
}

func (r Result) String() string {
	dir := ">="
	if !r.Upper {
		dir = "<="
	}
	return fmt.Sprintf("ε >= %.4f (event output %s %g, p1 >= %.4f, p0 <= %.4f, n = %d)", r.Epsilon, dir, r.Threshold, r.P1Lower, r.P0Upper, r.N)
}

// ClopperPearson returns the exact two-sided binomial confidence interval
// for k successes in n trials at confidence 1 - alpha: each side has
// failure probability alpha/2.
func ClopperPearson(k, n int, alpha float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(alpha / 2)
	}
	hi = 1
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - alpha/2)
	}
	return lo, hi
}

// LowerBound computes the lower bound on ε from s0 (outputs on D0) and s1
// (outputs on D1). Each sample is split in halves: the first selects the
// event, the second bounds it. The samples must be independent draws.
func LowerBound(s0, s1 []float64, o Options) (Result, error) {
	if o.Alpha == 0 {
		o.Alpha = 0.05
	}
	if !(o.Alpha > 0 && o.Alpha < 1) || o.Delta < 0 || o.Delta >= 1 {
		return Result{}, errors.New("audit: alpha must be in (0, 1) and delta in [0, 1)")
	}
	if len(s0) < 20 || len(s1) < 20 {
		return Result{}, errors.New("audit: need at least 20 samples per database")
	}
	sel0, test0 := s0[:len(s0)/2], s0[len(s0)/2:]
	sel1, test1 := s1[:len(s1)/2], s1[len(s1)/2:]

	best := Result{}
	bestScore := math.Inf(-1)
	for _, swapped := range []bool{false, true} {
		a, b := sel1, sel0 // the event should be likely under a, unlikely under b
		if swapped {
			a, b = sel0, sel1
		}
		for _, upper := range []bool{true, false} {
			for _, t := range candidates(a, b) {
				ka, kb := countEvent(a, t, upper), countEvent(b, t, upper)
				// Score with the same conservative bounds as the test, on
				// the selection half, so that rare events are not chosen
				// for a lucky empirical ratio.
				pa, _ := ClopperPearson(ka, len(a), o.Alpha)
				_, pb := ClopperPearson(kb, len(b), o.Alpha)
				if s := epsFrom(pa, pb, o.Delta); s > bestScore {
					bestScore = s
					best = Result{Threshold: t, Upper: upper, Swapped: swapped}
				}
			}
		}
	}
	a, b := test1, test0
	if best.Swapped {
		a, b = test0, test1
	}
	ka, kb := countEvent(a, best.Threshold, best.Upper), countEvent(b, best.Threshold, best.Upper)
	best.P1Lower, _ = ClopperPearson(ka, len(a), o.Alpha)
	_, best.P0Upper = ClopperPearson(kb, len(b), o.Alpha)
	best.Epsilon = epsFrom(best.P1Lower, best.P0Upper, o.Delta)
	best.N = min(len(a), len(b))
	return best, nil
}

func epsFrom(p1, p0, delta float64) float64 {
	if p1-delta <= 0 || p0 <= 0 {
		return 0
	}
	return math.Max(0, math.Log((p1-delta)/p0))
}

func countEvent(s []float64, t float64, upper bool) int {
	k := 0
	for _, x := range s {
		if (upper && x >= t) || (!upper && x <= t) {
			k++
		}
	}
	return k
}

// candidates are the distinct values of both samples, thinned to at most
// 200 quantiles so the search stays linear.
func candidates(a, b []float64) []float64 {
	all := append(append([]float64{}, a...), b...)
	sort.Float64s(all)
	var uniq []float64
	for i, x := range all {
		if i == 0 || x != all[i-1] {
			uniq = append(uniq, x)
		}
	}
	if len(uniq) <= 200 {
		return uniq
	}
	out := make([]float64, 0, 201)
	for i := range 200 {
		out = append(out, uniq[i*len(uniq)/200])
	}
	return append(out, uniq[len(uniq)-1])
}
