package mechanisms

import (
	"fmt"
	"math"
	"testing"
)

func TestUniformIsUnbiased(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 10, 1000, 1<<63 + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src := NewSeededSourceForTest(n)
			const draws = 100000
			if n > 1000 {
				// Largest n: rejection region is almost half the space; check
				// that results stay below n and split evenly around n/2.
				var below int
				for i := 0; i < draws; i++ {
					v := uniform(src, n)
					if v >= n {
						t.Fatalf("uniform(%d) = %d out of range", n, v)
					}
					if v < n/2 {
						below++
					}
				}
				stat := math.Pow(float64(below)-draws/2, 2) / (draws / 2) * 2
				if crit := chiSquaredCritical(1); stat > crit {
					t.Fatalf("halves unbalanced: %d of %d below n/2 (chi2 %v > %v)", below, draws, stat, crit)
				}
				return
			}
			counts := make([]float64, n)
			for i := 0; i < draws; i++ {
				v := uniform(src, n)
				if v >= n {
					t.Fatalf("uniform(%d) = %d out of range", n, v)
				}
				counts[v]++
			}
			if n == 1 {
				return
			}
			exp := float64(draws) / float64(n)
			var stat float64
			for _, c := range counts {
				stat += (c - exp) * (c - exp) / exp
			}
			if crit := chiSquaredCritical(int(n) - 1); stat > crit {
				t.Fatalf("chi2 = %v > %v", stat, crit)
			}
		})
	}
}

// binomialCheck fails the test if k successes out of n trials are
// implausible for success probability p at the package false-failure rate
// (normal approximation with a chi-squared(1) critical value; n p (1-p) is
// large in every use).
func binomialCheck(t *testing.T, k, n int, p float64) {
	t.Helper()
	exp := float64(n) * p
	v := exp * (1 - p)
	stat := (float64(k) - exp) * (float64(k) - exp) / v
	if crit := chiSquaredCritical(1); stat > crit {
		t.Fatalf("%d successes of %d, expected %.1f (p=%v): chi2 %v > %v", k, n, exp, p, stat, crit)
	}
}

func TestBernoulliExpNeg(t *testing.T) {
	cases := []struct{ num, den uint64 }{
		{0, 1}, {1, 2}, {1, 1}, {3, 2}, {5, 1}, {7, 3}, {1, 1 << 40}, {1<<62 + 1, 1 << 62},
		{(1 << 63) - 1, (1 << 63) - 1}, // den*K overflows: product path
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d/%d", c.num, c.den), func(t *testing.T) {
			src := NewSeededSourceForTest(c.num ^ c.den)
			const n = 200000
			var k int
			for i := 0; i < n; i++ {
				if bernoulliExpNeg(src, c.num, c.den) {
					k++
				}
			}
			p := math.Exp(-float64(c.num) / float64(c.den))
			if p == 1 {
				if k != n {
					t.Fatalf("exp(0) gave %d of %d", k, n)
				}
				return
			}
			binomialCheck(t, k, n, p)
		})
	}
}

func TestBernoulliExpNegBigMatchesFast(t *testing.T) {
	// The big-integer path must have the same law as the fast path.
	cases := []struct{ num, den string }{
		{"3", "2"},
		{"340282366920938463463374607431768211455", "226854911280625642308916404954512140970"}, // ~1.5, den > 2^64
		{"1", "340282366920938463463374607431768211456"},
	}
	for _, c := range cases {
		num, den := bigFromString(c.num), bigFromString(c.den)
		src := NewSeededSourceForTest(7)
		const n = 200000
		var k int
		for i := 0; i < n; i++ {
			if bernoulliExpNegBig(src, num, den) {
				k++
			}
		}
		nf, _ := num.Float64()
		df, _ := den.Float64()
		binomialCheck(t, k, n, math.Exp(-nf/df))
	}
}

func discreteLaplacePMF(scale float64) func(int64) float64 {
	p := math.Exp(-1 / scale)
	c := (1 - p) / (1 + p)
	return func(k int64) float64 { return c * math.Pow(p, math.Abs(float64(k))) }
}

func TestDiscreteLaplaceDistribution(t *testing.T) {
	cases := []struct{ s, t uint64 }{
		{1, 1}, {2, 1}, {1, 3}, {10, 1}, {3, 7}, {1 << 20, 1 << 20}, {1 << 20, 5 << 21}, {1, 50},
		{1, 2}, {2, 3}, {1 << 20, (2 << 20) + 1}, // either side of the small-scale switch at t/s = 2
	}
	for _, c := range cases {
		scale := float64(c.t) / float64(c.s)
		t.Run(fmt.Sprintf("scale=%d/%d", c.t, c.s), func(t *testing.T) {
			d := discreteLaplace{s: c.s, t: c.t}
			src := NewSeededSourceForTest(c.s*31 + c.t)
			const n = 200000
			samples := make([]int64, n)
			for i := range samples {
				samples[i] = d.sample(src)
			}
			stat, df, crit := chiSquaredGOF(t, samples, discreteLaplacePMF(scale))
			if stat > crit {
				t.Fatalf("chi2 = %.2f > %.2f (df %d)", stat, crit, df)
			}
			// Variance of Lap_Z(b): 2p/(1-p)^2 with p = exp(-1/b).
			p := math.Exp(-1 / scale)
			wantVar := 2 * p / ((1 - p) * (1 - p))
			_, v := meanVar(samples)
			checkVariance(t, v, wantVar, n, kurtosisOf(discreteLaplacePMF(scale)))
			// The same samples must be rejected as draws from a law whose
			// scale is 3% off: evidence that the test has power.
			if stat, _, crit := chiSquaredGOF(t, samples, discreteLaplacePMF(scale*1.03)); stat <= crit && scale > 0.5 && scale < 20 {
				t.Errorf("chi2 cannot tell scale %v from %v (%.2f <= %.2f)", scale, scale*1.03, stat, crit)
			}
		})
	}
}

// kurtosisOf returns E[X^4]/E[X^2]^2 for a symmetric integer law, by summing
// its pmf.
func kurtosisOf(pmf func(int64) float64) float64 {
	var m2, m4 float64
	for k := int64(1); ; k++ {
		p := pmf(k)
		x := float64(k)
		m2 += 2 * p * x * x
		m4 += 2 * p * x * x * x * x
		if p < 1e-300 || (p*x*x*x*x < 1e-18*m4 && k > 10) {
			break
		}
	}
	return m4 / (m2 * m2)
}

// checkVariance compares a sample variance with its expectation. The sample
// variance of n draws has standard deviation about var*sqrt((kurt-1)/n); the
// test allows 5.33 of those (two-sided normal tail 1e-7), so it fails on a
// correct sampler with probability well below falseFailureRate.
func checkVariance(t *testing.T, got, want float64, n int, kurtosis float64) {
	t.Helper()
	sd := want * math.Sqrt((kurtosis-1)/float64(n))
	if math.Abs(got-want) > 5.33*sd {
		t.Fatalf("variance %v, want %v +- %v", got, want, 5.33*sd)
	}
}

// TestSecureSourceNoReuse draws across several 4 KiB refills and checks that
// no 64-bit word repeats (a repeat has probability ~2^-40 here).
func TestSecureSourceNoReuse(t *testing.T) {
	src := NewSecureSource()
	seen := map[uint64]bool{}
	for i := 0; i < 3*secureBufSize/8+5; i++ {
		v := src.Uint64()
		if seen[v] {
			t.Fatalf("word %x repeated after %d draws", v, i)
		}
		seen[v] = true
	}
}
