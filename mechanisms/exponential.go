package mechanisms

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"sort"
)

// ExponentialOptions configures an exponential mechanism over candidates
// with integer utilities.
type ExponentialOptions struct {
	// Epsilon is the privacy parameter. Required: > 0 and finite.
	Epsilon float64
	// Sensitivity bounds how much any candidate's utility can change between
	// neighbouring databases. Required: >= 1.
	Sensitivity int64
}

// Exponential is the exponential mechanism of McSherry & Talwar, "Mechanism
// Design via Differential Privacy", FOCS 2007: it selects candidate j with
// probability proportional to w_j exp(epsilon u_j / (2 sensitivity)), where
// w_j is an integer base weight. It is epsilon-DP.
//
// Sampling is exact. The base beta = exp(-epsilon/(2 sensitivity)) is
// rounded UP to a float64, an exact dyadic rational (a larger base means
// a flatter, more private distribution), so weights w_j beta^(u_max - u_j)
// are exact binary rationals. Their lower and upper bounds are computed with
// directed rounding (math/big.Float), and the index is drawn by inversion
// with a lazily refined uniform number: more random bits or more precision
// are used until the bounds decide the draw, so the result has exactly the
// intended law.
type Exponential struct {
	epsilon     float64
	sensitivity int64
	beta        *big.Float // exact dyadic
}

// NewExponential validates opts and calibrates the mechanism.
func NewExponential(opts ExponentialOptions) (*Exponential, error) {
	if err := checkPositiveFinite("epsilon", opts.Epsilon); err != nil {
		return nil, err
	}
	if opts.Sensitivity < 1 {
		return nil, fmt.Errorf("utility sensitivity must be at least 1, got %d", opts.Sensitivity)
	}
	c := opts.Epsilon / (2 * float64(opts.Sensitivity))
	// math.Exp is accurate to 1 ulp; with the 2^-50 margin x >= exp(-c),
	// and x, a float64, is itself an exact dyadic rational.
	x := math.Exp(-c) * (1 + 0x1p-50)
	if x == 0 {
		x = math.SmallestNonzeroFloat64 // exp(-c) underflowed: still >= exp(-c)
	}
	if x >= 1 {
		return nil, fmt.Errorf("epsilon/sensitivity %v is too small for the exponential mechanism", 2*c)
	}
	beta := new(big.Float).SetFloat64(x)
	return &Exponential{epsilon: opts.Epsilon, sensitivity: opts.Sensitivity, beta: beta}, nil
}

// Epsilon returns the configured epsilon (the true one is at most this).
func (m *Exponential) Epsilon() float64 { return m.epsilon }

// Select returns an index j with probability proportional to
// weights[j] * exp(epsilon utilities[j] / (2 sensitivity)). A nil weights
// slice means weight 1 for every candidate. Candidates of weight 0 are never
// selected; at least one weight must be positive.
func (m *Exponential) Select(src Source, utilities []int64, weights []uint64) (int, error) {
	n := len(utilities)
	if n == 0 {
		return 0, errors.New("exponential mechanism needs at least one candidate")
	}
	if weights != nil && len(weights) != n {
		return 0, fmt.Errorf("got %d weights for %d candidates", len(weights), n)
	}
	umax := int64(math.MinInt64)
	any := false
	for j, u := range utilities {
		if weights == nil || weights[j] > 0 {
			any = true
			umax = max(umax, u)
		}
	}
	if !any {
		return 0, errors.New("exponential mechanism needs a candidate of positive weight")
	}
	d := make([]uint64, n)
	for j, u := range utilities {
		d[j] = uint64(umax) - uint64(u) // exact: u <= umax for weighted candidates
		if weights != nil && weights[j] == 0 {
			d[j] = 0
		}
	}
	w := func(j int) uint64 {
		if weights == nil {
			return 1
		}
		return weights[j]
	}
	return sampleWeightedPowers(src, m.beta, d, w), nil
}

// powCache holds lower and upper bounds of beta^(2^i) at one precision.
type powCache struct {
	prec   uint
	lo, hi []*big.Float
}

func newPowCache(beta *big.Float, prec uint) *powCache {
	c := &powCache{prec: prec}
	c.lo = append(c.lo, new(big.Float).SetPrec(prec).Set(beta))
	c.hi = append(c.hi, new(big.Float).SetPrec(prec).Set(beta))
	return c
}

func (c *powCache) level(i int) (*big.Float, *big.Float) {
	for len(c.lo) <= i {
		l, h := c.lo[len(c.lo)-1], c.hi[len(c.hi)-1]
		c.lo = append(c.lo, mulRound(l, l, c.prec, big.ToNegativeInf))
		c.hi = append(c.hi, mulRound(h, h, c.prec, big.ToPositiveInf))
	}
	return c.lo[i], c.hi[i]
}

// tinyPositive is a positive upper bound for numbers below big.Float's range.
var tinyPositive = new(big.Float).SetMantExp(big.NewFloat(1), big.MinExp)

func mulRound(a, b *big.Float, prec uint, mode big.RoundingMode) *big.Float {
	z := new(big.Float).SetPrec(prec).SetMode(mode).Mul(a, b)
	if mode == big.ToPositiveInf && z.Sign() == 0 && a.Sign() != 0 && b.Sign() != 0 {
		z.Set(tinyPositive) // underflow: keep a valid upper bound
	}
	return z
}

// addRound returns a+b (a, b >= 0) rounded by mode (ToNegativeInf or
// ToPositiveInf) to prec bits. When the exponents are far apart it does not
// materialise the exact sum (math/big would shift a mantissa by up to 2^31
// bits): the smaller operand then only moves the result by one ulp.
func addRound(a, b *big.Float, prec uint, mode big.RoundingMode) *big.Float {
	if a.Sign() == 0 || b.Sign() == 0 {
		return new(big.Float).SetPrec(prec).SetMode(mode).Add(a, b)
	}
	if a.MantExp(nil) < b.MantExp(nil) {
		a, b = b, a
	}
	ea := a.MantExp(nil)
	if ea-b.MantExp(nil) > int(prec)+4 {
		z := new(big.Float).SetPrec(prec).SetMode(mode).Set(a)
		if mode == big.ToPositiveInf {
			ulp := new(big.Float).SetMantExp(big.NewFloat(1), ea-int(prec))
			z.Add(z, ulp)
		}
		return z
	}
	return new(big.Float).SetPrec(prec).SetMode(mode).Add(a, b)
}

// mulPow multiplies (lo, hi) by beta^e with directed rounding.
func (c *powCache) mulPow(lo, hi *big.Float, e uint64) (*big.Float, *big.Float) {
	for i := 0; e != 0; i++ {
		if e&1 == 1 {
			pl, ph := c.level(i)
			lo = mulRound(lo, pl, c.prec, big.ToNegativeInf)
			hi = mulRound(hi, ph, c.prec, big.ToPositiveInf)
		}
		e >>= 1
	}
	return lo, hi
}

// sampleWeightedPowers returns j with probability proportional to
// w(j) * beta^d[j], exactly, by inversion against interval bounds.
func sampleWeightedPowers(src Source, beta *big.Float, d []uint64, w func(int) uint64) int {
	n := len(d)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return d[order[a]] < d[order[b]] })

	// The uniform U in [0,1) is revealed 64 bits at a time: U lies in
	// [u/2^m, (u+1)/2^m).
	u := new(big.Int)
	m := uint(0)
	for prec := uint(128); ; prec *= 2 {
		c := newPowCache(beta, prec)
		// Prefix sums of the weights, in the sorted order, with lower and
		// upper bounds.
		sLo := make([]*big.Float, n)
		sHi := make([]*big.Float, n)
		accLo := new(big.Float).SetPrec(prec)
		accHi := new(big.Float).SetPrec(prec)
		pLo := new(big.Float).SetPrec(prec).SetInt64(1)
		pHi := new(big.Float).SetPrec(prec).SetInt64(1)
		var prev uint64
		for i, j := range order {
			pLo, pHi = c.mulPow(pLo, pHi, d[j]-prev)
			prev = d[j]
			wj := new(big.Float).SetPrec(prec).SetUint64(w(j))
			tLo := mulRound(pLo, wj, prec, big.ToNegativeInf)
			tHi := mulRound(pHi, wj, prec, big.ToPositiveInf)
			accLo = addRound(accLo, tLo, prec, big.ToNegativeInf)
			accHi = addRound(accHi, tHi, prec, big.ToPositiveInf)
			sLo[i], sHi[i] = accLo, accHi
		}
		zLo, zHi := sLo[n-1], sHi[n-1]
		// a_i <= S_i/Z <= b_i.
		a := make([]*big.Float, n)
		b := make([]*big.Float, n)
		for i := range order {
			a[i] = new(big.Float).SetPrec(prec).SetMode(big.ToNegativeInf).Quo(sLo[i], zHi)
			b[i] = new(big.Float).SetPrec(prec).SetMode(big.ToPositiveInf).Quo(sHi[i], zLo)
		}
		a[n-1] = big.NewFloat(1) // S_{n-1}/Z = 1 exactly
		b[n-1] = big.NewFloat(1)
		for m+64 <= prec {
			u.Lsh(u, 64)
			u.Or(u, new(big.Int).SetUint64(src.Uint64()))
			m += 64
			uLo := new(big.Float).SetPrec(m+64).SetMantExp(new(big.Float).SetPrec(m+64).SetInt(u), -int(m))
			u1 := new(big.Int).Add(u, big.NewInt(1))
			uHi := new(big.Float).SetPrec(m+64).SetMantExp(new(big.Float).SetPrec(m+64).SetInt(u1), -int(m))
			// The answer is the smallest i with U < S_i/Z. It is at least
			// the smallest i with b_i > uLo, and at most the smallest i with
			// a_i >= uHi.
			first := sort.Search(n, func(i int) bool { return b[i].Cmp(uLo) > 0 })
			last := sort.Search(n, func(i int) bool { return a[i].Cmp(uHi) >= 0 })
			if first >= last {
				return order[last]
			}
		}
	}
}

// ReportNoisyMax returns the index of an approximately largest utility by
// the permute-and-flip mechanism (McKenna & Sheldon, "Permute-and-Flip: A
// new mechanism for differentially private selection", NeurIPS 2020), which
// is report-noisy-max with exponential noise (Ding, Kifer et al., "The
// Permute-and-Flip Mechanism is Identical to Report-Noisy-Max with
// Exponential Noise", 2021). Candidates are visited in a uniformly random
// order and candidate r is accepted with probability
// exp(-c (u_max - u_r)), c = epsilon/(2 sensitivity) rounded DOWN to a
// dyadic rational, through exact Bernoulli(exp(-gamma)) coins (CKS20
// Algorithm 1). The candidate with utility u_max is always accepted, so one
// pass suffices. It is epsilon-DP.
func ReportNoisyMax(src Source, utilities []int64, epsilon float64, sensitivity int64) (int, error) {
	if err := checkPositiveFinite("epsilon", epsilon); err != nil {
		return 0, err
	}
	if sensitivity < 1 {
		return 0, fmt.Errorf("utility sensitivity must be at least 1, got %d", sensitivity)
	}
	n := len(utilities)
	if n == 0 {
		return 0, errors.New("report-noisy-max needs at least one candidate")
	}
	// c = cNum / 2^cShift <= epsilon / (2 sensitivity).
	c := epsilon / (2 * float64(sensitivity))
	shift := 0
	for shift < 62 && math.Ldexp(c, shift) < 1<<40 {
		shift++
	}
	cf := math.Floor(math.Ldexp(c, shift) * (1 - 0x1p-50))
	if cf < 1 || cf >= 0x1p63 {
		return 0, fmt.Errorf("epsilon/sensitivity %v out of range for report-noisy-max", 2*c)
	}
	cNum, cDen := uint64(cf), uint64(1)<<shift
	umax := utilities[0]
	for _, u := range utilities {
		umax = max(umax, u)
	}
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- { // Fisher-Yates with unbiased draws
		j := int(uniform(src, uint64(i+1)))
		perm[i], perm[j] = perm[j], perm[i]
	}
	for _, r := range perm {
		d := uint64(umax) - uint64(utilities[r])
		hi, lo := bits.Mul64(cNum, d)
		var accept bool
		if hi < cDen {
			q, rem := bits.Div64(hi, lo, cDen)
			accept = bernoulliExpNegParts(src, q, rem, cDen)
		} else {
			num := new(big.Int).Mul(new(big.Int).SetUint64(cNum), new(big.Int).SetUint64(d))
			accept = bernoulliExpNegBig(src, num, new(big.Int).SetUint64(cDen))
		}
		if accept {
			return r, nil
		}
	}
	// Unreachable: the maximum has d = 0 and is accepted with probability 1.
	return perm[n-1], nil
}

// Mode returns the index of an approximately most frequent value of a
// declared (public) domain, given each domain value's count, by
// ReportNoisyMax. sensitivity bounds how much one privacy unit can change
// any single count (its maximum number of contributed rows). It is
// epsilon-DP; the counts of all domain values, including zeros, must be
// passed so that the candidate set does not depend on the data.
func Mode(src Source, counts []int64, epsilon float64, sensitivity int64) (int, error) {
	return ReportNoisyMax(src, counts, epsilon, sensitivity)
}

// QuantileOptions configures DP quantiles over a clamped range.
type QuantileOptions struct {
	// Epsilon is the privacy parameter for one quantile. Required.
	Epsilon float64
	// Lower and Upper are the public clamping bounds. Required, finite,
	// Lower < Upper.
	Lower, Upper float64
	// Granularity is the grid step of outputs. Optional, default 1.
	Granularity float64
	// MaxContributions is the largest number of values one privacy unit
	// contributes. Optional, default 1.
	MaxContributions int64
}

// Quantile releases quantiles by the exponential mechanism over the
// intervals between sorted clamped values (Smith, STOC 2011; as in Google's
// and OpenDP's libraries). For q = 0 or 1 every point beyond the extreme
// value has the best utility, so the minimum and maximum are drawn almost
// uniformly between the extreme value and the bound: ask for q = 0.01 or
// 0.99 when the bounds are loose. Every grid point y in [Lower, Upper] is a
// candidate with utility -|D #{x_i <= y} - N n| for q = N/D (D = 2^16), whose
// sensitivity is D per contributed value; points are grouped into the
// intervals between consecutive sorted values, weighted by their number of
// grid points, an interval is drawn by [Exponential] and a point is drawn
// uniformly inside it. One release is epsilon-DP.
type Quantile struct {
	em     *Exponential
	g      float64
	lo, hi int64 // grid indices of the range
}

// quantileDen is D, the denominator quantiles are rounded to.
const quantileDen = 1 << 16

// NewQuantile validates opts and calibrates the mechanism.
func NewQuantile(opts QuantileOptions) (*Quantile, error) {
	g, err := defaultGranularity(opts.Granularity)
	if err != nil {
		return nil, err
	}
	if math.IsNaN(opts.Lower) || math.IsNaN(opts.Upper) || math.IsInf(opts.Lower, 0) || math.IsInf(opts.Upper, 0) || !(opts.Lower < opts.Upper) {
		return nil, fmt.Errorf("quantile bounds must be finite with lower < upper, got [%v, %v]", opts.Lower, opts.Upper)
	}
	m := opts.MaxContributions
	if m == 0 {
		m = 1
	}
	if m < 1 || m > 1<<40 {
		return nil, fmt.Errorf("max contributions must be between 1 and 2^40, got %d", m)
	}
	lo := int64(math.Ceil(opts.Lower / g))
	hi := int64(math.Floor(opts.Upper / g))
	if math.Abs(opts.Lower/g) >= maxGridValue || math.Abs(opts.Upper/g) >= maxGridValue {
		return nil, fmt.Errorf("quantile bounds span more than 2^52 granularity steps; use a coarser granularity")
	}
	if lo > hi {
		return nil, fmt.Errorf("no multiple of granularity %v lies in [%v, %v]", g, opts.Lower, opts.Upper)
	}
	em, err := NewExponential(ExponentialOptions{Epsilon: opts.Epsilon, Sensitivity: quantileDen * m})
	if err != nil {
		return nil, err
	}
	return &Quantile{em: em, g: g, lo: lo, hi: hi}, nil
}

// Release returns a DP estimate of the q-quantile (0 <= q <= 1; 0 is the
// minimum, 0.5 the median, 1 the maximum) of values, clamped to the range
// and rounded to the grid. NaN values count as 0 before clamping.
func (m *Quantile) Release(src Source, values []float64, q float64) (float64, error) {
	if !(q >= 0 && q <= 1) {
		return 0, fmt.Errorf("quantile must be in [0, 1], got %v", q)
	}
	nq := int64(math.Round(q * quantileDen))
	v := make([]int64, len(values))
	for i, x := range values {
		v[i] = min(max(toGrid(x, m.g), m.lo), m.hi)
	}
	sort.Slice(v, func(a, b int) bool { return v[a] < v[b] })
	n := int64(len(v))
	utilities := make([]int64, n+1)
	weights := make([]uint64, n+1)
	for j := int64(0); j <= n; j++ {
		start := m.lo
		if j > 0 {
			start = v[j-1]
		}
		end := m.hi + 1
		if j < n {
			end = v[j]
		}
		weights[j] = uint64(end - start)
		diff := quantileDen*j - nq*n
		if diff < 0 {
			diff = -diff
		}
		utilities[j] = -diff
	}
	j, err := m.em.Select(src, utilities, weights)
	if err != nil {
		return 0, err
	}
	start := m.lo
	if j > 0 {
		start = v[j-1]
	}
	point := start + int64(uniform(src, weights[j]))
	return float64(point) * m.g, nil
}
