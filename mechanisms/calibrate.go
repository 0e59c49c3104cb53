package mechanisms

import (
	"fmt"
	"math"
)

// Calibration is data-independent arithmetic on public parameters, so it may
// use floating point; every result is rounded in the direction that adds
// noise (larger scale or sigma) or reports a larger privacy cost.

// stdNormalCDF returns Phi(x).
func stdNormalCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// ContinuousGaussianDelta returns the exact delta(epsilon) of the continuous
// Gaussian mechanism N(0, sigma^2) for L2 sensitivity sens, Balle & Wang,
// "Improving the Gaussian Mechanism for Differential Privacy: Analytical
// Calibration and Optimal Denoising", ICML 2018, Theorem 8:
//
//	delta = Phi(sens/(2 sigma) - eps sigma/sens) - e^eps Phi(-sens/(2 sigma) - eps sigma/sens).
func ContinuousGaussianDelta(sigma, epsilon, sens float64) float64 {
	a := sens / (2 * sigma)
	b := epsilon * sigma / sens
	d := stdNormalCDF(a-b) - math.Exp(epsilon)*stdNormalCDF(-a-b)
	return math.Max(d, 0)
}

// AnalyticGaussianSigma returns the smallest sigma (to a relative 1e-12,
// rounded up) such that the continuous Gaussian mechanism with L2
// sensitivity sens is (epsilon, delta)-DP, by bisection on the exact curve of
// Balle & Wang 2018 (their Algorithm 1 solves the same equation).
//
// Do not use it for the discrete Gaussian: at epsilon = 1, delta = 1e-5,
// sens = 1 its sigma gives the discrete Gaussian delta = 1.03e-5 (see
// DiscreteGaussianDelta and DiscreteGaussianSigma).
func AnalyticGaussianSigma(epsilon, delta, sens float64) (float64, error) {
	if err := checkPositiveFinite("epsilon", epsilon); err != nil {
		return 0, err
	}
	if err := checkDelta("delta", delta); err != nil {
		return 0, err
	}
	if err := checkPositiveFinite("l2 sensitivity", sens); err != nil {
		return 0, err
	}
	f := func(s float64) bool { return ContinuousGaussianDelta(s, epsilon, sens) <= delta }
	return bisectSigma(f, sens), nil
}

// bisectSigma returns an upper end of the smallest sigma with ok(sigma),
// assuming ok is monotone (false then true). The result satisfies ok.
func bisectSigma(ok func(float64) bool, start float64) float64 {
	lo, hi := start, start
	for !ok(hi) {
		lo = hi
		hi *= 2
	}
	for ok(lo) && lo > 1e-300 {
		hi = lo
		lo /= 2
	}
	for i := 0; i < 200 && hi-lo > 1e-13*hi; i++ {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// dgDirectMaxSigma is the sigma above which the discrete Gaussian sums are
// evaluated by the Euler-Maclaurin formula instead of term by term.
const dgDirectMaxSigma = 512

// dgUnnorm returns exp(-k^2/(2 s2)).
func dgUnnorm(k, s2 float64) float64 { return math.Exp(-k * k / (2 * s2)) }

// dgMass returns Z = sum over all integers k of exp(-k^2/(2 s2)).
func dgMass(s2 float64) float64 {
	sigma := math.Sqrt(s2)
	if sigma >= dgDirectMaxSigma {
		// Poisson summation: Z = sigma sqrt(2 pi) (1 + 2 sum_m exp(-2 pi^2 sigma^2 m^2));
		// the correction is below exp(-5e6) here.
		return sigma * math.Sqrt(2*math.Pi)
	}
	return 1 + 2*dgTail(1, s2)
}

// dgTail returns T(n) = sum_{k >= n} exp(-k^2/(2 s2)) for an integer n.
func dgTail(n int64, s2 float64) float64 {
	if n <= 0 {
		// sum_{k >= n} = Z - sum_{k <= n-1} = Z - T(1-n) by symmetry.
		return dgMass(s2) - dgTail(1-n, s2)
	}
	sigma := math.Sqrt(s2)
	if sigma >= dgDirectMaxSigma {
		t, _ := dgTailEM(float64(n), sigma)
		return t
	}
	return dgTailDirect(n, s2)
}

// dgTailDirect sums the tail term by term, from the far end inwards so that
// small terms are added first.
func dgTailDirect(n int64, s2 float64) float64 {
	x := float64(n)
	// Stop where terms are below 2^-70 of the first one.
	end := x + 1
	for dgUnnorm(end, s2) > dgUnnorm(x, s2)*0x1p-70 {
		end += math.Ceil(math.Sqrt(s2))
	}
	var sum float64
	for k := end; k >= x; k-- {
		sum += dgUnnorm(k, s2)
	}
	return sum
}

// dgTailEM evaluates T(n) for real n >= 0 by the Euler-Maclaurin formula
// with three Bernoulli terms,
//
//	T(n) = int_n^inf f + f(n)/2 - f'(n)/12 + f'''(n)/720 - f^(5)(n)/30240 + R,
//
// where f(x) = exp(-x^2/(2 sigma^2)) and f^(m)(x) = (-1)^m He_m(u) f(x) / sigma^m
// with u = x/sigma (Hermite polynomials). It also returns the bound
// |R| <= 2 zeta(6)/(2 pi)^6 * int |f^(6)| <= 2.3e-3 / sigma^5.
func dgTailEM(n, sigma float64) (float64, float64) {
	u := n / sigma
	fn := math.Exp(-u * u / 2)
	integral := sigma * math.Sqrt(math.Pi/2) * math.Erfc(u/math.Sqrt2)
	he1 := u
	he3 := u*u*u - 3*u
	he5 := u*u*u*u*u - 10*u*u*u + 15*u
	d1 := -he1 * fn / sigma
	d3 := -he3 * fn / (sigma * sigma * sigma)
	d5 := -he5 * fn / math.Pow(sigma, 5)
	t := integral + fn/2 - d1/12 + d3/720 - d5/30240
	return t, 2.3e-3 / math.Pow(sigma, 5)
}

// DiscreteGaussianDelta returns the exact delta(epsilon) of adding discrete
// Gaussian noise N_Z(0, sigma^2) to an integer query of sensitivity sens
// (CKS20 Theorem 7):
//
//	delta = P[X > eps sigma^2/sens - sens/2] - e^eps P[X > eps sigma^2/sens + sens/2],
//
// evaluated as the hockey-stick divergence sum_k [P(k) - e^eps P(k+sens)]_+,
// term by term with expm1 (no cancellation) for sigma < 512, and by the
// Euler-Maclaurin formula, plus its remainder bound, above. The result is
// rounded up.
func DiscreteGaussianDelta(sigma, epsilon float64, sens int64) float64 {
	s2 := sigma * sigma
	d := float64(sens)
	c1 := epsilon*s2/d - d/2
	n1 := int64(math.Floor(c1)) + 1 // smallest integer > c1
	if sigma >= dgDirectMaxSigma {
		z := dgMass(s2)
		_, r := dgTailEM(0, sigma) // remainder bound of each tail evaluation
		t1 := dgTail(n1, s2)
		t2 := dgTail(n1+sens, s2)
		e := math.Exp(epsilon)
		delta := (t1 - e*t2 + r + e*r) / z
		// Relative float error of t1 and t2 (~1e-15 each) amplified by the
		// subtraction: bound it by 1e-13 of the larger term.
		delta += 1e-13 * t1 / z
		return roundUpCost(math.Min(1, math.Max(delta, 0)))
	}
	z := dgMass(s2)
	// Terms k > c1 are the positive ones: P(k)/P(k+sens) > e^eps there.
	var sum float64
	x := float64(n1)
	end := x + 1
	for dgUnnorm(end, s2) > dgUnnorm(x, s2)*0x1p-70 && end < x+1e7 {
		end += math.Ceil(sigma)
	}
	for k := end; k >= x; k-- {
		// f(k) - e^eps f(k+sens) = f(k) (1 - exp(eps - (2 k sens + sens^2)/(2 sigma^2)))
		term := dgUnnorm(k, s2) * -math.Expm1(epsilon-(2*k*d+d*d)/(2*s2))
		if term > 0 {
			sum += term
		}
	}
	return roundUpCost(math.Min(1, sum/z*(1+1e-13)))
}

// DiscreteGaussianSigma returns a sigma, within a relative 1e-9 of the
// smallest, such that discrete Gaussian noise N_Z(0, sigma^2) on an integer
// query of sensitivity sens is (epsilon, delta)-DP by the exact curve of
// DiscreteGaussianDelta (CKS20 Theorem 7). It differs from
// AnalyticGaussianSigma: larger at epsilon 1 (3.7405 against 3.7306 for
// delta 1e-5, sensitivity 1), smaller at large epsilon.
func DiscreteGaussianSigma(epsilon, delta float64, sens int64) (float64, error) {
	if err := checkPositiveFinite("epsilon", epsilon); err != nil {
		return 0, err
	}
	if err := checkDelta("delta", delta); err != nil {
		return 0, err
	}
	if sens < 1 {
		return 0, fmt.Errorf("sensitivity must be a positive integer, got %d", sens)
	}
	start, err := AnalyticGaussianSigma(epsilon, delta, float64(sens))
	if err != nil {
		return 0, err
	}
	ok := func(s float64) bool { return DiscreteGaussianDelta(s, epsilon, sens) <= delta }
	lo, hi := start*(1-1e-6), start
	for !ok(hi) {
		lo = hi
		hi *= 1.01
	}
	for ok(lo) {
		hi = lo
		lo /= 2
	}
	for hi-lo > 1e-10*hi {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}
