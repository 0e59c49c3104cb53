package mechanisms

import (
	"math"
	"sort"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// falseFailureRate is the probability with which each statistical test in
// this package fails on a correct implementation. Tests use seeded sources,
// so they are deterministic; the rate bounds how unlucky a seed can be.
const falseFailureRate = 1e-6

// chiSquaredCritical returns the 1-falseFailureRate quantile of the
// chi-squared distribution with df degrees of freedom.
func chiSquaredCritical(df int) float64 {
	return distuv.ChiSquared{K: float64(df)}.Quantile(1 - falseFailureRate)
}

// chiSquaredGOF runs Pearson's goodness-of-fit test of integer samples
// against pmf. Cells with expected count < 5 are pooled with their
// neighbours towards the tails: everything left of the first cell with
// expected count >= 5 forms one cell, and likewise on the right. It returns
// the statistic, the degrees of freedom and the critical value.
func chiSquaredGOF(t *testing.T, samples []int64, pmf func(int64) float64) (stat float64, df int, crit float64) {
	t.Helper()
	n := float64(len(samples))
	counts := map[int64]int{}
	for _, s := range samples {
		counts[s]++
	}
	// Find the central window of cells with expected >= 5, scanning out from
	// the mode (0 for all our symmetric samplers, else the most common value).
	mode := int64(0)
	best := -1.0
	for k := range counts {
		if p := pmf(k); p > best {
			best, mode = p, k
		}
	}
	lo, hi := mode, mode
	for n*pmf(lo-1) >= 5 {
		lo--
	}
	for n*pmf(hi+1) >= 5 {
		hi++
	}
	var inner float64
	type cell struct{ obs, exp float64 }
	var cells []cell
	for k := lo; k <= hi; k++ {
		p := pmf(k)
		inner += p
		cells = append(cells, cell{float64(counts[k]), n * p})
	}
	var left, right float64
	for k, c := range counts {
		if k < lo {
			left += float64(c)
		} else if k > hi {
			right += float64(c)
		}
	}
	// Tail probabilities: sum pmf outwards until negligible.
	var pl, pr float64
	for k := lo - 1; ; k-- {
		p := pmf(k)
		pl += p
		if p < 1e-18 || lo-k > 1<<22 {
			break
		}
	}
	for k := hi + 1; ; k++ {
		p := pmf(k)
		pr += p
		if p < 1e-18 || k-hi > 1<<22 {
			break
		}
	}
	// Pool a tail into its neighbour if its expectation is below 5.
	if n*pl >= 5 {
		cells = append(cells, cell{left, n * pl})
	} else {
		cells[0].obs += left
		cells[0].exp += n * pl
	}
	if n*pr >= 5 {
		cells = append(cells, cell{right, n * pr})
	} else {
		cells[len(cells)-1].obs += right
		cells[len(cells)-1].exp += n * pr
	}
	if math.Abs(inner+pl+pr-1) > 1e-9 {
		t.Fatalf("pmf does not sum to 1: %v", inner+pl+pr)
	}
	for _, c := range cells {
		d := c.obs - c.exp
		stat += d * d / c.exp
	}
	df = len(cells) - 1
	if df < 1 {
		t.Fatalf("too few cells for a chi-squared test")
	}
	return stat, df, chiSquaredCritical(df)
}

// ksCritical returns the critical value of the one-sample Kolmogorov-Smirnov
// statistic sqrt(n)*D for a discrete null, using the Dvoretzky-Kiefer-Wolfowitz
// inequality with Massart's constant: P[sqrt(n) D > x] <= 2 exp(-2x^2). This
// is conservative for discrete distributions.
func ksCritical() float64 {
	return math.Sqrt(math.Log(2/falseFailureRate) / 2)
}

// ksStatistic returns sqrt(n) * sup |F_n(x) - F(x)| for integer samples.
func ksStatistic(samples []int64, cdf func(int64) float64) float64 {
	s := append([]int64(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := float64(len(s))
	var d float64
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		f := cdf(s[i])
		// Empirical CDF just below s[i] is i/n, at s[i] is j/n.
		d = math.Max(d, math.Abs(float64(j)/n-f))
		d = math.Max(d, math.Abs(float64(i)/n-cdfBelow(cdf, s[i])))
		i = j
	}
	return d * math.Sqrt(n)
}

func cdfBelow(cdf func(int64) float64, x int64) float64 { return cdf(x - 1) }

// meanVar returns the sample mean and unbiased variance.
func meanVar(samples []int64) (mean, variance float64) {
	n := float64(len(samples))
	for _, s := range samples {
		mean += float64(s)
	}
	mean /= n
	for _, s := range samples {
		d := float64(s) - mean
		variance += d * d
	}
	return mean, variance / (n - 1)
}
