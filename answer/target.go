package answer

import (
	"fmt"
	"math"

	"github.com/dpproxy/dpproxy/rewrite"
)

// EpsilonForTarget finds the smallest ε, up to maxEps, at which every count
// and sum of plan has a 95% half-width of at most target (in the output's
// units), for accuracy-first queries (SET dp.target_error). Ratios (avg,
// variance), quantiles and modes have no data-independent interval and do
// not constrain the search. It returns an error when even maxEps misses the
// target, saying what that ε would achieve.
func EpsilonForTarget(plan *rewrite.Plan, target, delta, maxEps float64) (float64, error) {
	constrained := map[int]bool{}
	for _, a := range plan.Aggs {
		if a.Kind == rewrite.AggCount || a.Kind == rewrite.AggSum {
			constrained[a.Value] = true
		}
	}
	if len(constrained) == 0 {
		return 0, fmt.Errorf("the query has no count or sum for dp.target_error to apply to")
	}
	worst := func(eps float64) (float64, error) {
		m, err := Calibrate(plan, eps, delta)
		if err != nil {
			return 0, err
		}
		w := 0.0
		for i := range constrained {
			w = math.Max(w, m.laplace[i].HalfWidth(0.95))
		}
		return w, nil
	}
	w, err := worst(maxEps)
	if err != nil {
		return 0, err
	}
	if w > target {
		return 0, fmt.Errorf("a 95%% half-width of %g needs more than the per-query cap of epsilon %g, which gives ±%g", target, maxEps, w)
	}
	// Half-widths fall as ε grows: bisect on a log scale, keeping hi feasible.
	lo, hi := math.Log(1e-6), math.Log(maxEps)
	for range 40 {
		mid := (lo + hi) / 2
		w, err := worst(math.Exp(mid))
		if err != nil {
			return 0, err
		}
		if w <= target {
			hi = mid
		} else {
			lo = mid
		}
	}
	// Round up to 4 significant digits, then confirm.
	eps := math.Exp(hi)
	p := math.Pow(10, 3-math.Floor(math.Log10(eps)))
	eps = math.Min(maxEps, math.Ceil(eps*p)/p)
	if w, err := worst(eps); err != nil || w > target {
		return maxEps, nil
	}
	return eps, nil
}
