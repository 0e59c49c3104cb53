package mechanisms

import (
	"errors"
	"fmt"
	"math"
	"math/big"
)

// GaussianOptions configures a discrete Gaussian mechanism. Give either
// Epsilon and Delta, or Rho.
type GaussianOptions struct {
	// Epsilon and Delta are the (epsilon, delta)-DP target. Required unless
	// Rho is set: epsilon > 0 and finite, 0 < delta < 1. Sigma is calibrated
	// by the discrete Gaussian's own exact privacy curve (CKS20 Theorem 7).
	Epsilon, Delta float64
	// Rho is a zero-concentrated DP target (Bun & Steinke 2016), used
	// instead of Epsilon and Delta: sigma = sens/sqrt(2 rho) (CKS20 Thm 4).
	Rho float64
	// L2Sensitivity bounds the change of the (scalar) value between
	// neighbouring databases. Required: > 0 and finite.
	L2Sensitivity float64
	// Granularity is the grid step of released values. Optional, default 1.
	Granularity float64
}

// Gaussian adds discrete Gaussian noise N_Z(0, a/b), scaled by the
// granularity, with sigma^2 = a/b an exact dyadic rational rounded up from
// the calibrated value.
//
// A Gaussian is immutable and safe for concurrent use; the Source is not.
type Gaussian struct {
	epsilon, delta, rho float64
	granularity         float64
	sensGrid            uint64
	sampler             discreteGaussian
	sigma2Grid          float64
}

// NewGaussian validates opts and calibrates the mechanism.
func NewGaussian(opts GaussianOptions) (*Gaussian, error) {
	g, err := defaultGranularity(opts.Granularity)
	if err != nil {
		return nil, err
	}
	k, err := gridSensitivity("l2 sensitivity", opts.L2Sensitivity, g)
	if err != nil {
		return nil, err
	}
	m := &Gaussian{granularity: g, sensGrid: k}
	var sigma2 float64
	switch {
	case opts.Rho != 0:
		if opts.Epsilon != 0 || opts.Delta != 0 {
			return nil, errors.New("give either rho or epsilon and delta, not both")
		}
		if err := checkPositiveFinite("rho", opts.Rho); err != nil {
			return nil, err
		}
		// sigma^2 = k^2 / (2 rho), each step rounded up.
		sigma2 = nextUp(nextUp(float64(k)*float64(k)) / (2 * opts.Rho))
		m.rho = opts.Rho
	default:
		if err := checkPositiveFinite("epsilon", opts.Epsilon); err != nil {
			return nil, err
		}
		if err := checkDelta("delta", opts.Delta); err != nil {
			return nil, err
		}
		sigma, err := DiscreteGaussianSigma(opts.Epsilon, opts.Delta, int64(k))
		if err != nil {
			return nil, err
		}
		sigma2 = nextUp(sigma * sigma)
		m.epsilon, m.delta = opts.Epsilon, opts.Delta
	}
	a, b, err := dyadicCeil("gaussian variance", sigma2)
	if err != nil {
		return nil, err
	}
	m.sampler = newDiscreteGaussian(a, b)
	m.sigma2Grid = float64(a) / float64(b)
	if m.rho == 0 {
		// Re-check the exact curve at the sigma actually used.
		if d := DiscreteGaussianDelta(math.Sqrt(m.sigma2Grid), m.epsilon, int64(k)); d > m.delta {
			return nil, fmt.Errorf("internal error: calibrated discrete gaussian has delta %v > %v", d, m.delta)
		}
		m.rho = roundUpCost(float64(k) * float64(k) / (2 * m.sigma2Grid))
	}
	return m, nil
}

// AddNoise rounds value to the nearest multiple of the granularity (ties
// up, NaN as 0, clamped to +-2^52 steps), adds exact discrete Gaussian noise
// in grid units and returns the result scaled back to value units.
func (m *Gaussian) AddNoise(src Source, value float64) float64 {
	v := saturatingAdd(toGrid(value, m.granularity), m.sampler.sample(src))
	return float64(v) * m.granularity
}

// AddNoiseExact is AddNoise for an exact value (Laplace.AddNoiseExact).
func (m *Gaussian) AddNoiseExact(src Source, value *big.Rat) float64 {
	v := saturatingAdd(toGridRat(value, m.granularity), m.sampler.sample(src))
	return float64(v) * m.granularity
}

// AddNoiseInt adds noise to an integer value. With granularity 1 the result
// is value plus an exact discrete Gaussian sample; otherwise it is
// AddNoise(float64(value)) rounded to the nearest integer (post-processing).
func (m *Gaussian) AddNoiseInt(src Source, value int64) int64 {
	if m.granularity == 1 {
		return saturatingAdd(value, m.sampler.sample(src))
	}
	return int64(math.Round(m.AddNoise(src, float64(value))))
}

// Sigma returns the noise's sigma parameter in value units (granularity
// times the square root of the exact rational variance parameter). The
// discrete Gaussian's variance is slightly below sigma^2.
func (m *Gaussian) Sigma() float64 { return math.Sqrt(m.sigma2Grid) * m.granularity }

// Epsilon and Delta return the configured (epsilon, delta) target (zero
// when the mechanism was configured by Rho).
func (m *Gaussian) Epsilon() float64 { return m.epsilon }

// Delta returns the configured delta target.
func (m *Gaussian) Delta() float64 { return m.delta }

// Rho returns the zCDP parameter sens^2/(2 sigma^2) in grid units, rounded
// up (CKS20 Theorem 4).
func (m *Gaussian) Rho() float64 { return m.rho }

// Granularity returns the grid step of outputs.
func (m *Gaussian) Granularity() float64 { return m.granularity }

// HalfWidth returns the smallest w, a multiple of the granularity, such that
// the noise lies in [-w, w] with probability >= confidence, by summing the
// discrete Gaussian pmf. It returns NaN unless 0 < confidence < 1.
func (m *Gaussian) HalfWidth(confidence float64) float64 {
	if !checkConfidence(confidence) {
		return math.NaN()
	}
	return float64(gaussianHalfWidthGrid(m.sigma2Grid, confidence)) * m.granularity
}

// gaussianHalfWidthGrid returns the smallest integer n >= 0 with
// P[|X| <= n] >= confidence for X ~ N_Z(0, s2): 2 T(n+1)/Z <= 1-confidence.
func gaussianHalfWidthGrid(s2, confidence float64) int64 {
	z := dgMass(s2)
	limit := (1 - confidence) * z / 2
	ok := func(n int64) bool { return dgTail(n+1, s2) <= limit }
	hi := int64(1)
	for !ok(hi) {
		hi *= 2
	}
	lo := int64(-1) // ok(-1) is false: T(0) > Z/2 >= limit
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// RDP returns the mechanism's Renyi-DP curve alpha * rho at the package's
// orders (CKS20 Theorem 4: the discrete Gaussian is rho-zCDP).
func (m *Gaussian) RDP() RDPVector { return RDPZCDP(m.rho) }
