package answer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dpproxy/dpproxy/rewrite"
)

// Explain describes how a plan would be answered at (eps, delta): the
// rewritten SQL, each noisy quantity's mechanism, noise scale and 95%
// half-width, and the cost. It runs nothing and charges nothing.
func Explain(plan *rewrite.Plan, eps, delta float64) ([]string, error) {
	if plan.Selection == nil {
		delta = 0
	}
	mech, err := Calibrate(plan, eps, delta)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(rewrite.RenderPlan(plan), "\n")
	for i, q := range plan.Quantities {
		if q.Choice != nil {
			lines = append(lines, fmt.Sprintf("noise q%d %s: exponential mechanism (report noisy max), epsilon %s", i, q.Expr, ftoa(mech.choiceEps[i])))
			continue
		}
		if mech.laplace[i] == nil {
			lines = append(lines, fmt.Sprintf("noise q%d: partition selection, keep a group with at least %d noisy privacy units (discrete Laplace scale %s)",
				i, mech.selection.Threshold(), strconv.FormatFloat(mech.selection.Scale(), 'g', 6, 64)))
			continue
		}
		l := mech.laplace[i]
		lines = append(lines, fmt.Sprintf("noise q%d %s: discrete Laplace scale %s, ±%s at 95%%, epsilon %s",
			i, q.Expr, strconv.FormatFloat(l.Scale(), 'g', 6, 64), fmtAccuracy(l.HalfWidth(0.95)), ftoa(eps*q.Weight)))
	}
	cost := fmt.Sprintf("cost: epsilon %s", ftoa(eps))
	if delta > 0 {
		cost += fmt.Sprintf(", delta %s", ftoa(delta))
	}
	return append(lines, cost), nil
}
