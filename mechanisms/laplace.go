package mechanisms

import (
	"math"
	"math/big"
)

// LaplaceOptions configures a discrete Laplace mechanism.
type LaplaceOptions struct {
	// Epsilon is the privacy parameter. Required: > 0 and finite.
	Epsilon float64
	// L1Sensitivity bounds |f(D) - f(D')| over neighbouring databases, in
	// value units. Required: > 0 and finite.
	L1Sensitivity float64
	// Granularity is the grid step of released values. Optional, default 1:
	// outputs are integer multiples of it, and the sensitivity is rounded UP
	// to a whole number of steps.
	Granularity float64
}

// Laplace adds discrete Laplace noise Lap_Z(t/s), scaled by the granularity,
// where t/s >= ceil(L1Sensitivity/Granularity)/Epsilon is an exact dyadic
// rational (rounded up). It is epsilon-DP (CKS20, Proposition 2 / Ghosh,
// Roughgarden & Sundararajan 2009 for the geometric mechanism).
//
// A Laplace is immutable and safe for concurrent use; the Source is not.
type Laplace struct {
	epsilon     float64
	sensitivity float64
	granularity float64
	sensGrid    uint64
	sampler     discreteLaplace
	scaleGrid   float64 // t/s as a float, for reporting
}

// NewLaplace validates opts and calibrates the mechanism.
func NewLaplace(opts LaplaceOptions) (*Laplace, error) {
	if err := checkPositiveFinite("epsilon", opts.Epsilon); err != nil {
		return nil, err
	}
	g, err := defaultGranularity(opts.Granularity)
	if err != nil {
		return nil, err
	}
	k, err := gridSensitivity("l1 sensitivity", opts.L1Sensitivity, g)
	if err != nil {
		return nil, err
	}
	// Scale in grid units, k/epsilon, rounded up twice: nextUp covers the
	// division's rounding, dyadicCeil makes it an exact rational t/s.
	t, s, err := dyadicCeil("laplace scale", nextUp(float64(k)/opts.Epsilon))
	if err != nil {
		return nil, err
	}
	return &Laplace{
		epsilon:     opts.Epsilon,
		sensitivity: opts.L1Sensitivity,
		granularity: g,
		sensGrid:    k,
		sampler:     discreteLaplace{s: s, t: t},
		scaleGrid:   float64(t) / float64(s),
	}, nil
}

// AddNoise rounds value to the nearest multiple of the granularity (ties
// up, NaN as 0, clamped to +-2^52 steps), adds exact discrete Laplace noise
// in grid units and returns the result scaled back to value units.
func (m *Laplace) AddNoise(src Source, value float64) float64 {
	v := saturatingAdd(toGrid(value, m.granularity), m.sampler.sample(src))
	return float64(v) * m.granularity
}

// AddNoiseExact is AddNoise for an exact value, rounded to the grid
// without passing through float64 (toGridRat): the values dpproxy noises
// are PostgreSQL's exact sums, which a float64 may not hold.
func (m *Laplace) AddNoiseExact(src Source, value *big.Rat) float64 {
	v := saturatingAdd(toGridRat(value, m.granularity), m.sampler.sample(src))
	return float64(v) * m.granularity
}

// AddNoiseInt adds noise to an integer value such as a count. With
// granularity 1 the result is value plus an exact discrete Laplace sample;
// with another granularity it is AddNoise(float64(value)) rounded to the
// nearest integer (post-processing).
func (m *Laplace) AddNoiseInt(src Source, value int64) int64 {
	if m.granularity == 1 {
		return saturatingAdd(value, m.sampler.sample(src))
	}
	return int64(math.Round(m.AddNoise(src, float64(value))))
}

// Scale returns the noise scale b in value units: the noise is
// granularity * Lap_Z(b / granularity), with P[X = x] proportional to
// exp(-|x| granularity / b).
func (m *Laplace) Scale() float64 { return m.scaleGrid * m.granularity }

// Epsilon returns the epsilon the mechanism was configured with. The
// mechanism's true epsilon, ceil(sens/g) * s/t, is at most this.
func (m *Laplace) Epsilon() float64 { return m.epsilon }

// Granularity returns the grid step of outputs.
func (m *Laplace) Granularity() float64 { return m.granularity }

// HalfWidth returns the smallest w, a multiple of the granularity, such that
// the noise lies in [-w, w] with probability >= confidence, computed from the
// discrete pmf: P[|X| <= n] = 1 - 2 p^(n+1)/(1+p) with p = exp(-1/b) and b
// the scale in grid units. The noisy output is within w of the value rounded
// to the grid, and within w + granularity/2 of the value itself. It returns
// NaN unless 0 < confidence < 1.
func (m *Laplace) HalfWidth(confidence float64) float64 {
	if !checkConfidence(confidence) {
		return math.NaN()
	}
	return float64(laplaceHalfWidthGrid(m.scaleGrid, confidence)) * m.granularity
}

// laplaceHalfWidthGrid returns the smallest integer n >= 0 with
// P[|X| <= n] >= confidence for X ~ Lap_Z(scale).
func laplaceHalfWidthGrid(scale, confidence float64) int64 {
	logp := -1 / scale
	p := math.Exp(logp)
	// tail(n) = P[|X| > n] = 2 p^(n+1)/(1+p); in logs.
	logTail := func(n int64) float64 { return math.Log(2) + float64(n+1)*logp - math.Log1p(p) }
	target := math.Log1p(-confidence)
	n := int64(math.Ceil((target-math.Log(2)+math.Log1p(p))/logp)) - 1
	if n < 0 {
		n = 0
	}
	for n > 0 && logTail(n-1) <= target {
		n--
	}
	for logTail(n) > target {
		n++
	}
	return n
}

// RDP returns the mechanism's Renyi-DP curve at the package's orders: the
// exact curve of the discrete Laplace (RDPDiscreteLaplace), never more than
// its pure epsilon.
func (m *Laplace) RDP() RDPVector {
	return RDPDiscreteLaplace(m.scaleGrid, float64(m.sensGrid))
}
