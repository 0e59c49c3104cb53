package mechanisms

import (
	"fmt"
	"math"
	"math/big"
)

func checkPositiveFinite(name string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("%s must be strictly positive and finite, got %v", name, v)
	}
	return nil
}

func checkDelta(name string, v float64) error {
	if !(v > 0 && v < 1) {
		return fmt.Errorf("%s must be in the open interval (0, 1), got %v", name, v)
	}
	return nil
}

func checkConfidence(c float64) bool { return c > 0 && c < 1 }

// defaultGranularity returns g, or 1 when g is zero.
func defaultGranularity(g float64) (float64, error) {
	if g == 0 {
		return 1, nil
	}
	if err := checkPositiveFinite("granularity", g); err != nil {
		return 0, err
	}
	return g, nil
}

// maxGridSensitivity bounds sensitivities in grid units so that every
// intermediate of the samplers stays in the fast 64/128-bit paths.
const maxGridSensitivity = 1 << 40

// gridSensitivity returns ceil(sens/g) computed exactly on the binary values
// of sens and g: the sensitivity rounded UP to a whole number of grid steps.
func gridSensitivity(name string, sens, g float64) (uint64, error) {
	if err := checkPositiveFinite(name, sens); err != nil {
		return 0, err
	}
	q := sens / g
	if !(q <= maxGridSensitivity) {
		return 0, fmt.Errorf("%s %v is more than 2^40 granularity steps of %v; use a coarser granularity", name, sens, g)
	}
	k := uint64(math.Ceil(q))
	if k == 0 {
		k = 1
	}
	// The float quotient may be off by half an ulp: settle ceil exactly.
	rs := new(big.Rat).SetFloat64(sens)
	rg := new(big.Rat).SetFloat64(g)
	mul := func(k uint64) *big.Rat { return new(big.Rat).Mul(new(big.Rat).SetInt64(int64(k)), rg) }
	for mul(k).Cmp(rs) < 0 {
		k++
	}
	for k > 1 && mul(k-1).Cmp(rs) >= 0 {
		k--
	}
	return k, nil
}

// minDyadicNum is the smallest numerator dyadicCeil aims for: the rational
// is then within a relative 2^-20 (about 1e-6) above the float it rounds.
const minDyadicNum = 1 << 20

// maxDyadicNum bounds numerators so that products in the samplers fit.
const maxDyadicNum = 1 << 62

// dyadicCeil returns num/2^k >= x with the smallest k in [0, 62] such that
// num >= 2^20 (or k = 62). The computation is exact: x*2^k is a float
// multiplication by a power of two and math.Ceil is exact.
func dyadicCeil(name string, x float64) (num, den uint64, err error) {
	if !(x > 0) || math.IsInf(x, 0) {
		return 0, 0, fmt.Errorf("%s must be strictly positive and finite, got %v", name, x)
	}
	if x > maxDyadicNum {
		return 0, 0, fmt.Errorf("%s %v is too large (more than 2^62 granularity steps); use a coarser granularity", name, x)
	}
	k := 0
	for k < 62 && math.Ldexp(x, k) < minDyadicNum {
		k++
	}
	n := math.Ceil(math.Ldexp(x, k))
	if n > maxDyadicNum {
		// Only reachable for x just below 2^62 with k = 0.
		return 0, 0, fmt.Errorf("%s %v is too large; use a coarser granularity", name, x)
	}
	return uint64(n), uint64(1) << k, nil
}

// nextUp returns the smallest float64 greater than x. Because IEEE division
// and multiplication are correctly rounded, nextUp(a/b) >= a/b exactly.
func nextUp(x float64) float64 { return math.Nextafter(x, math.Inf(1)) }

// roundUpCost inflates a privacy cost computed in floating point by a
// relative 1e-12, which dominates the rounding error of every formula in
// this package, so reported costs are never below the true cost.
func roundUpCost(x float64) float64 {
	if x <= 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return x
	}
	return nextUp(x * (1 + 1e-12))
}
