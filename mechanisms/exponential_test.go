package mechanisms

import (
	"fmt"
	"math"
	"testing"
)

// emProbabilities returns the exact selection probabilities of the
// exponential mechanism with the mechanism's own (rounded) base.
func emProbabilities(m *Exponential, utilities []int64, weights []uint64) []float64 {
	beta, _ := m.beta.Float64()
	umax := utilities[0]
	for _, u := range utilities {
		umax = max(umax, u)
	}
	p := make([]float64, len(utilities))
	var z float64
	for j, u := range utilities {
		w := 1.0
		if weights != nil {
			w = float64(weights[j])
		}
		p[j] = w * math.Pow(beta, float64(uint64(umax)-uint64(u)))
		z += p[j]
	}
	for j := range p {
		p[j] /= z
	}
	return p
}

// categoricalCheck runs a chi-squared test of counts against probabilities,
// pooling cells with expected count < 5 into one.
func categoricalCheck(t *testing.T, counts []int, p []float64) {
	t.Helper()
	var n float64
	for _, c := range counts {
		n += float64(c)
	}
	var stat, poolObs, poolExp float64
	cells := 0
	for j := range counts {
		e := n * p[j]
		if e < 5 {
			poolObs += float64(counts[j])
			poolExp += e
			if p[j] == 0 && counts[j] > 0 {
				t.Fatalf("cell %d has probability 0 but was drawn %d times", j, counts[j])
			}
			continue
		}
		stat += (float64(counts[j]) - e) * (float64(counts[j]) - e) / e
		cells++
	}
	if poolExp > 0 {
		stat += (poolObs - poolExp) * (poolObs - poolExp) / math.Max(poolExp, 1e-300)
		cells++
	}
	if cells < 2 {
		return
	}
	if crit := chiSquaredCritical(cells - 1); stat > crit {
		t.Fatalf("chi2 = %.2f > %.2f (df %d); counts %v, p %v", stat, crit, cells-1, counts, p)
	}
}

func TestExponentialDistribution(t *testing.T) {
	cases := []struct {
		eps       float64
		sens      int64
		utilities []int64
		weights   []uint64
	}{
		{1, 1, []int64{0, 1, 2, 3, 4}, nil},
		{2, 1, []int64{10, 10, 9, 0, -5}, []uint64{1, 3, 0, 100, 1 << 40}},
		{0.1, 3, []int64{5, 4, 3}, []uint64{7, 1, 1000}},
		{5, 1, []int64{math.MaxInt64, math.MinInt64, 0}, nil}, // huge utility range
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			m, err := NewExponential(ExponentialOptions{Epsilon: c.eps, Sensitivity: c.sens})
			if err != nil {
				t.Fatal(err)
			}
			src := NewSeededSourceForTest(uint64(i) + 100)
			counts := make([]int, len(c.utilities))
			n := 20000
			if i == 3 {
				n = 1000 // 64-bit exponents: slower
			}
			for k := 0; k < n; k++ {
				j, err := m.Select(src, c.utilities, c.weights)
				if err != nil {
					t.Fatal(err)
				}
				counts[j]++
			}
			categoricalCheck(t, counts, emProbabilities(m, c.utilities, c.weights))
		})
	}
}

func TestExponentialBaseRoundsUp(t *testing.T) {
	for _, eps := range []float64{1e-6, 0.1, 1, 10, 100} {
		m, err := NewExponential(ExponentialOptions{Epsilon: eps, Sensitivity: 1})
		if err != nil {
			t.Fatal(err)
		}
		beta, _ := m.beta.Float64()
		// True epsilon 2 ln(1/beta) must not exceed eps.
		if got := 2 * math.Log(1/beta); got > eps || got < eps*(1-1e-8) {
			t.Errorf("eps %v: base gives %v", eps, got)
		}
	}
	if _, err := NewExponential(ExponentialOptions{Epsilon: 1, Sensitivity: 0}); err == nil {
		t.Error("sensitivity 0 accepted")
	}
	m, _ := NewExponential(ExponentialOptions{Epsilon: 1, Sensitivity: 1})
	src := NewSeededSourceForTest(1)
	if _, err := m.Select(src, nil, nil); err == nil {
		t.Error("empty candidates accepted")
	}
	if _, err := m.Select(src, []int64{1, 2}, []uint64{0, 0}); err == nil {
		t.Error("all-zero weights accepted")
	}
	if _, err := m.Select(src, []int64{1, 2}, []uint64{1}); err == nil {
		t.Error("mismatched weights accepted")
	}
}

// permuteAndFlipProbabilities enumerates all orders of a small candidate set.
func permuteAndFlipProbabilities(utilities []int64, c float64) []float64 {
	n := len(utilities)
	umax := utilities[0]
	for _, u := range utilities {
		umax = max(umax, u)
	}
	acc := make([]float64, n)
	for i, u := range utilities {
		acc[i] = math.Exp(-c * float64(umax-u))
	}
	p := make([]float64, n)
	var perms func(prefix []int, used []bool)
	count := 0
	perms = func(prefix []int, used []bool) {
		if len(prefix) == n {
			count++
			reach := 1.0
			for _, r := range prefix {
				p[r] += reach * acc[r]
				reach *= 1 - acc[r]
			}
			return
		}
		for i := 0; i < n; i++ {
			if !used[i] {
				used[i] = true
				perms(append(prefix, i), used)
				used[i] = false
			}
		}
	}
	perms(nil, make([]bool, n))
	for i := range p {
		p[i] /= float64(count)
	}
	return p
}

func TestReportNoisyMaxDistribution(t *testing.T) {
	cases := []struct {
		eps       float64
		sens      int64
		utilities []int64
	}{
		{1, 1, []int64{0, 1, 2, 3}},
		{0.5, 2, []int64{10, 10, 7, 0, 3}},
		{3, 1, []int64{1, 1, 1}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			src := NewSeededSourceForTest(uint64(i) + 7)
			counts := make([]int, len(c.utilities))
			const n = 100000
			for k := 0; k < n; k++ {
				j, err := ReportNoisyMax(src, c.utilities, c.eps, c.sens)
				if err != nil {
					t.Fatal(err)
				}
				counts[j]++
			}
			categoricalCheck(t, counts, permuteAndFlipProbabilities(c.utilities, c.eps/(2*float64(c.sens))))
		})
	}
	if _, err := ReportNoisyMax(NewSeededSourceForTest(1), nil, 1, 1); err == nil {
		t.Error("empty candidates accepted")
	}
}

func TestModeFindsClearWinner(t *testing.T) {
	src := NewSeededSourceForTest(4)
	counts := []int64{3, 500, 20, 0, 41}
	for i := 0; i < 100; i++ {
		// P[not 1] <= 4 exp(-0.5 * 459 / 2) ~ 1e-49.
		if j, _ := Mode(src, counts, 1, 1); j != 1 {
			t.Fatalf("mode %d", j)
		}
	}
}

// TestQuantileDistribution compares a quantile release on a tiny data set
// with the exact law of the exponential mechanism over grid points.
func TestQuantileDistribution(t *testing.T) {
	q, err := NewQuantile(QuantileOptions{Epsilon: 2, Lower: 0, Upper: 10})
	if err != nil {
		t.Fatal(err)
	}
	values := []float64{2, 5, 5, 8, -3, 42} // clamped to 0 and 10
	beta, _ := q.em.beta.Float64()
	n := int64(len(values))
	nq := int64(quantileDen / 2)
	clamped := []int64{0, 2, 5, 5, 8, 10}
	p := make([]float64, 11)
	var z float64
	var best int64 = math.MinInt64
	util := make([]int64, 11)
	for y := int64(0); y <= 10; y++ {
		var c int64
		for _, v := range clamped {
			if v <= y {
				c++
			}
		}
		d := quantileDen*c - nq*n
		util[y] = -max(d, -d)
		best = max(best, util[y])
	}
	for y := range p {
		p[y] = math.Pow(beta, float64(best-util[y]))
		z += p[y]
	}
	for y := range p {
		p[y] /= z
	}
	src := NewSeededSourceForTest(8)
	counts := make([]int, 11)
	for i := 0; i < 20000; i++ {
		r, err := q.Release(src, values, 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if r != math.Trunc(r) || r < 0 || r > 10 {
			t.Fatalf("release %v off the grid or range", r)
		}
		counts[int(r)]++
	}
	categoricalCheck(t, counts, p)
}

func TestQuantileAccuracy(t *testing.T) {
	q, err := NewQuantile(QuantileOptions{Epsilon: 1, Lower: 0, Upper: 1e6, Granularity: 1})
	if err != nil {
		t.Fatal(err)
	}
	values := make([]float64, 1001)
	for i := range values {
		values[i] = float64(i) // 0..1000; median 500, range much wider than the data
	}
	src := NewSeededSourceForTest(21)
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0, 0}, {0.95, 950}, {0.9, 900}} {
		r, err := q.Release(src, values, c.q)
		if err != nil {
			t.Fatal(err)
		}
		// The empty part of the range (10^6 points) is at least 50 ranks
		// from each target, weight 1e6 exp(-50/2) ~ 1e-5; ranks more than 60
		// away have weight below exp(-30) each. (At q = 0.99 the empty
		// range, only 10 ranks away, rightly dominates at epsilon 1.)
		if math.Abs(r-c.want) > 60 {
			t.Errorf("quantile %v = %v, want about %v", c.q, r, c.want)
		}
	}
	// q = 1: every point above the maximum has the best utility.
	if r, _ := q.Release(src, values, 1); r < 1000-60 {
		t.Errorf("maximum %v below the data's maximum", r)
	}
	if _, err := NewQuantile(QuantileOptions{Epsilon: 1, Lower: 1, Upper: 1}); err == nil {
		t.Error("empty range accepted")
	}
	if _, err := q.Release(src, values, 1.5); err == nil {
		t.Error("quantile 1.5 accepted")
	}
	// No data: uniform over the range.
	if r, err := q.Release(src, nil, 0.5); err != nil || r < 0 || r > 1e6 {
		t.Errorf("empty data: %v %v", r, err)
	}
}

func TestPartitionSelection(t *testing.T) {
	cases := []struct {
		eps, delta float64
		m          int64
	}{{1, 1e-5, 1}, {1, 1e-5, 4}, {0.1, 1e-8, 1}, {3, 1e-3, 2}}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/%v/%d", c.eps, c.delta, c.m), func(t *testing.T) {
			p, err := NewPartitionSelection(PartitionSelectionOptions{Epsilon: c.eps, Delta: c.delta, MaxPartitionsContributed: c.m})
			if err != nil {
				t.Fatal(err)
			}
			// A partition held by one unit is kept with probability <= delta/m,
			// and tau is the smallest such threshold.
			if got := p.KeepProbability(1); got > c.delta/float64(c.m) {
				t.Errorf("keep(1) = %v > %v", got, c.delta/float64(c.m))
			}
			b := float64(c.m) / c.eps
			pp := math.Exp(-1 / b)
			k := float64(p.Threshold() - 2) // one lower threshold
			if k >= 1 && math.Pow(pp, k)/(1+pp) <= c.delta/float64(c.m) {
				t.Errorf("threshold %d is not minimal", p.Threshold())
			}
		})
	}
	// Published figure: Wilson et al. 2020 (eps = ln 3, delta = 1e-5, m = 1)
	// use the continuous-Laplace threshold 1 + ln(1/(2 delta))/eps = 11.5;
	// the discrete threshold is the next integer above its own tail bound.
	p, _ := NewPartitionSelection(PartitionSelectionOptions{Epsilon: math.Log(3), Delta: 1e-5})
	if tau := p.Threshold(); tau < 11 || tau > 13 {
		t.Errorf("threshold %d", tau)
	}
	// Empirical keep rate of a single-unit partition at a generous delta.
	p, _ = NewPartitionSelection(PartitionSelectionOptions{Epsilon: 1, Delta: 0.05})
	src := NewSeededSourceForTest(17)
	const n = 200000
	var kept int
	for i := 0; i < n; i++ {
		if _, ok := p.Keep(src, 1); ok {
			kept++
		}
	}
	binomialCheck(t, kept, n, p.KeepProbability(1))
	if _, err := NewPartitionSelection(PartitionSelectionOptions{Epsilon: 1}); err == nil {
		t.Error("delta 0 accepted")
	}
}
