package answer

import (
	"fmt"
	"math"

	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/rewrite"
)

// utilityScale makes fractional ranks integral for the exponential
// mechanism; the sensitivity is scaled with it, plus utilitySlack: each
// utility is rounded to the scale (at most 1/2 either way, so two
// neighbours' utilities can differ by one more than the scaled bound), and
// a quantile's ranks are float sums (each within 2^-35 of a rank, in scaled
// units, while the counts total at most maxChoiceRows). Without the slack a
// change of exactly the bound could round to one unit over it.
const (
	utilityScale  = 1 << 16
	utilitySlack  = 3
	maxChoiceRows = 1 << 35
)

// choose answers a Choice quantity from its exact counts.
//
// Mode: report noisy max over the counts of every domain value; one unit
// changes one count by at most its row bound.
//
// Quantile (Smith 2011, on buckets): the utility of bucket i is minus the
// distance from q·n to the range of ranks [c_i, c_i + count_i] its values
// hold. Adding or removing one row moves c_i or count_i by one and q·n by
// q <= 1, so the utility's sensitivity is the row bound. The answer is the
// chosen bucket's midpoint.
func choose(q rewrite.Quantity, eps float64, counts []float64, src mechanisms.Source) (Value, error) {
	sens := int64(math.Max(1, q.L1Sensitivity))*utilityScale + utilitySlack
	c := q.Choice
	total := 0.0
	for _, x := range counts {
		total += math.Abs(x)
	}
	if total > maxChoiceRows {
		return Value{}, fmt.Errorf("a quantile or mode over %g rows: its ranks are exact only up to %d rows", total, int64(maxChoiceRows))
	}
	if c.Kind == rewrite.ChoiceMode {
		i, err := mechanisms.ReportNoisyMax(src, modeUtilities(counts), eps, sens)
		if err != nil {
			return Value{}, err
		}
		return Value{Str: c.Domain[i], IsStr: true}, nil
	}
	i, err := mechanisms.ReportNoisyMax(src, quantileUtilities(c.Q, counts), eps, sens)
	if err != nil {
		return Value{}, err
	}
	mid := (c.Edges[i] + c.Edges[i+1]) / 2
	if q.Granularity > 0 {
		mid = math.Round(mid/q.Granularity) * q.Granularity
	}
	return Value{Num: mid}, nil
}

// modeUtilities are the counts on the integer scale. Counts can be
// fractional (a privacy unit's counts scaled to its row bound).
func modeUtilities(counts []float64) []int64 {
	util := make([]int64, len(counts))
	for i, n := range counts {
		util[i] = int64(math.Round(n * utilityScale))
	}
	return util
}

// quantileUtilities are minus each bucket's distance from the q-quantile's
// rank, on the integer scale.
func quantileUtilities(q float64, counts []float64) []int64 {
	n := 0.0
	for _, x := range counts {
		n += x
	}
	target := q * n
	util := make([]int64, len(counts))
	below := 0.0
	for i, x := range counts {
		var d float64
		switch {
		case target < below:
			d = below - target
		case target > below+x:
			d = target - below - x
		}
		util[i] = -int64(math.Round(d * utilityScale))
		below += x
	}
	return util
}
