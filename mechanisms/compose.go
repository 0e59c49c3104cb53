package mechanisms

import (
	"errors"
	"fmt"
	"math"
)

// ApproxDP is an (epsilon, delta)-DP guarantee.
type ApproxDP struct {
	Epsilon, Delta float64
}

func (c ApproxDP) validate() error {
	if !(c.Epsilon >= 0) || math.IsInf(c.Epsilon, 0) {
		return fmt.Errorf("epsilon must be non-negative and finite, got %v", c.Epsilon)
	}
	if !(c.Delta >= 0 && c.Delta < 1) {
		return fmt.Errorf("delta must be in [0, 1), got %v", c.Delta)
	}
	return nil
}

// ComposeBasic returns the sequential composition of the given guarantees
// by the basic composition theorem: epsilons and deltas add (Dwork, McSherry,
// Nissim & Smith 2006; Dwork & Roth 2014, Theorem 3.16). Sums are rounded up.
func ComposeBasic(costs ...ApproxDP) (ApproxDP, error) {
	var sum ApproxDP
	for _, c := range costs {
		if err := c.validate(); err != nil {
			return ApproxDP{}, err
		}
		sum.Epsilon += c.Epsilon
		sum.Delta += c.Delta
	}
	sum.Epsilon, sum.Delta = roundUpCost(sum.Epsilon), math.Min(1, roundUpCost(sum.Delta))
	return sum, nil
}

// ComposeParallel returns the guarantee of mechanisms run on disjoint parts
// of the data, split by the privacy unit: the maximum epsilon and delta
// (McSherry, "Privacy Integrated Queries", SIGMOD 2009, Theorem 4).
func ComposeParallel(costs ...ApproxDP) (ApproxDP, error) {
	var m ApproxDP
	for _, c := range costs {
		if err := c.validate(); err != nil {
			return ApproxDP{}, err
		}
		m.Epsilon = math.Max(m.Epsilon, c.Epsilon)
		m.Delta = math.Max(m.Delta, c.Delta)
	}
	return m, nil
}

// ComposeAdvanced returns the k-fold composition of an (eps, delta)-DP
// mechanism by the advanced composition theorem of Dwork, Rothblum & Vadhan,
// "Boosting and Differential Privacy", FOCS 2010, Theorem III.3:
//
//	(eps sqrt(2k ln(1/deltaSlack)) + k eps (e^eps - 1), k delta + deltaSlack).
//
// The result is never worse than basic composition (k eps, k delta).
func ComposeAdvanced(c ApproxDP, k int, deltaSlack float64) (ApproxDP, error) {
	if err := c.validate(); err != nil {
		return ApproxDP{}, err
	}
	if k < 1 {
		return ApproxDP{}, fmt.Errorf("composition count must be at least 1, got %d", k)
	}
	if err := checkDelta("delta slack", deltaSlack); err != nil {
		return ApproxDP{}, err
	}
	kf := float64(k)
	eps := c.Epsilon*math.Sqrt(2*kf*math.Log(1/deltaSlack)) + kf*c.Epsilon*math.Expm1(c.Epsilon)
	delta := kf*c.Delta + deltaSlack
	if eps >= kf*c.Epsilon {
		eps, delta = kf*c.Epsilon, kf*c.Delta
	}
	if delta >= 1 {
		return ApproxDP{}, errors.New("composed delta reaches 1")
	}
	return ApproxDP{roundUpCost(eps), math.Min(1, roundUpCost(delta))}, nil
}

// ComposeOptimal returns the smallest epsilon such that the k-fold
// composition of an (eps, delta)-DP mechanism is (epsilon, targetDelta)-DP,
// by the optimal composition theorem of Kairouz, Oh & Viswanath, "The
// Composition Theorem for Differential Privacy", ICML 2015, Theorem 3.3. The
// k-fold composition is dominated by k-fold randomized response, whose
// privacy profile is computed exactly:
//
//	delta(e) = 1 - (1-delta)^k (1 - sum_l C(k,l) [q^l p^(k-l) - e^e q^(k-l) p^l]_+),
//
// with p = e^eps/(1+e^eps), q = 1-p; epsilon is found by bisection to a
// relative 1e-12 and rounded up. targetDelta must exceed 1-(1-delta)^k.
// The cost is O(k) per bisection step.
func ComposeOptimal(c ApproxDP, k int, targetDelta float64) (ApproxDP, error) {
	if err := c.validate(); err != nil {
		return ApproxDP{}, err
	}
	if k < 1 {
		return ApproxDP{}, fmt.Errorf("composition count must be at least 1, got %d", k)
	}
	if err := checkDelta("target delta", targetDelta); err != nil {
		return ApproxDP{}, err
	}
	kf := float64(k)
	base := -math.Expm1(kf * math.Log1p(-c.Delta)) // 1-(1-delta)^k
	if targetDelta <= base {
		return ApproxDP{}, fmt.Errorf("target delta %v must exceed 1-(1-delta)^k = %v", targetDelta, base)
	}
	// Required delta of the randomized-response part.
	need := 1 - (1-targetDelta)/math.Exp(kf*math.Log1p(-c.Delta))
	eps := c.Epsilon
	if eps == 0 {
		return ApproxDP{0, targetDelta}, nil
	}
	logp := eps - logSumExp(0, eps) // log(e^eps/(1+e^eps))
	logq := -logSumExp(0, eps)
	lgk, _ := math.Lgamma(kf + 1)
	rrDelta := func(e float64) float64 {
		var s float64
		for l := 0; l <= k; l++ {
			lf := float64(l)
			if (kf-2*lf)*eps <= e {
				break // privacy loss (k-2l) eps no longer exceeds e
			}
			lgl, _ := math.Lgamma(lf + 1)
			lgkl, _ := math.Lgamma(kf - lf + 1)
			lc := lgk - lgl - lgkl
			s += math.Exp(lc+(kf-lf)*logp+lf*logq) * -math.Expm1(e-(kf-2*lf)*eps)
		}
		return s * (1 + 1e-10) // lgamma/exp rounding margin
	}
	lo, hi := 0.0, kf*eps
	if rrDelta(0) <= need {
		return ApproxDP{0, targetDelta}, nil
	}
	for hi-lo > 1e-12*hi {
		mid := lo + (hi-lo)/2
		if rrDelta(mid) <= need {
			hi = mid
		} else {
			lo = mid
		}
	}
	return ApproxDP{roundUpCost(hi), targetDelta}, nil
}

// ZCDPEpsilon converts rho-zCDP to (epsilon, delta)-DP with the tight
// conversion of CKS20 Proposition 12 minimised over all real orders alpha > 1
// (not only the tracked ones):
//
//	epsilon = min_alpha alpha rho + (log(1/delta) + (alpha-1) log(1-1/alpha) - log alpha)/(alpha-1),
//
// never more than Bun & Steinke's rho + 2 sqrt(rho log(1/delta)). Rounded up.
func ZCDPEpsilon(rho, delta float64) (float64, error) {
	if !(rho >= 0) || math.IsInf(rho, 0) {
		return 0, fmt.Errorf("rho must be non-negative and finite, got %v", rho)
	}
	if err := checkDelta("delta", delta); err != nil {
		return 0, err
	}
	if rho == 0 {
		return 0, nil
	}
	ld := math.Log(delta)
	f := func(a float64) float64 {
		return a*rho + math.Log((a-1)/a) - (ld+math.Log(a))/(a-1)
	}
	// f is unimodal in alpha; golden-section search on log(alpha-1).
	lo, hi := math.Log(1e-6), math.Log(1e6)
	g := func(x float64) float64 { return f(1 + math.Exp(x)) }
	const phi = 0.6180339887498949
	x1, x2 := hi-phi*(hi-lo), lo+phi*(hi-lo)
	f1, f2 := g(x1), g(x2)
	for i := 0; i < 200 && hi-lo > 1e-12; i++ {
		if f1 < f2 {
			hi, x2, f2 = x2, x1, f1
			x1 = hi - phi*(hi-lo)
			f1 = g(x1)
		} else {
			lo, x1, f1 = x1, x2, f2
			x2 = lo + phi*(hi-lo)
			f2 = g(x2)
		}
	}
	eps := math.Min(math.Min(f1, f2), rho+2*math.Sqrt(rho*math.Log(1/delta)))
	return roundUpCost(math.Max(eps, 0)), nil
}

// GDPDelta returns delta(epsilon) of a mu-GDP mechanism (Dong, Roth & Su,
// "Gaussian Differential Privacy", JRSS-B 2022, Corollary 2.13):
//
//	delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2).
//
// The continuous Gaussian mechanism with sigma is (sens/sigma)-GDP; the
// discrete Gaussian is not exactly, so account for it by its own curve.
func GDPDelta(mu, epsilon float64) float64 {
	d := stdNormalCDF(-epsilon/mu+mu/2) - math.Exp(epsilon)*stdNormalCDF(-epsilon/mu-mu/2)
	return roundUpCost(math.Max(d, 0))
}

// GDPEpsilon returns the smallest epsilon (rounded up) with GDPDelta(mu,
// epsilon) <= delta.
func GDPEpsilon(mu, delta float64) (float64, error) {
	if err := checkPositiveFinite("mu", mu); err != nil {
		return 0, err
	}
	if err := checkDelta("delta", delta); err != nil {
		return 0, err
	}
	if GDPDelta(mu, 0) <= delta {
		return 0, nil
	}
	lo, hi := 0.0, 1.0
	for GDPDelta(mu, hi) > delta {
		lo, hi = hi, hi*2
	}
	for hi-lo > 1e-12*hi {
		mid := lo + (hi-lo)/2
		if GDPDelta(mu, mid) <= delta {
			hi = mid
		} else {
			lo = mid
		}
	}
	return roundUpCost(hi), nil
}

// ComposeGDP returns the composition of mu_i-GDP mechanisms:
// sqrt(sum mu_i^2)-GDP (Dong, Roth & Su, Corollary 3.3). Rounded up.
func ComposeGDP(mus ...float64) float64 {
	var s float64
	for _, m := range mus {
		s += m * m
	}
	return roundUpCost(math.Sqrt(s))
}
