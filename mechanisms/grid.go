package mechanisms

import (
	"math"
	"math/big"
)

// maxGridValue bounds values in grid units before noise is added: beyond
// 2^52 consecutive grid points are no longer distinct float64 values. The
// clamp is 1-Lipschitz, so it does not increase sensitivity.
const maxGridValue = 1 << 52

// toGrid returns floor(value/g + 1/2), the nearest grid index with ties
// rounded up, computed exactly from the binary values of value and g, then
// clamped to [-2^52, 2^52]. NaN maps to 0.
//
// floor(x + 1/2) is monotone and commutes with integer shifts, so if two
// values differ by at most K*g their grid indices differ by at most K: that
// is why the sensitivity in grid units is ceil(sensitivity / g).
func toGrid(value, g float64) int64 {
	if math.IsNaN(value) {
		return 0
	}
	q := value / g
	if q >= maxGridValue {
		return maxGridValue
	}
	if q <= -maxGridValue {
		return -maxGridValue
	}
	f := math.Floor(q)
	// frac is exact: for |q| >= 1, q - floor(q) consists of q's own
	// fraction bits; for 0 <= q < 1 it is q; for -1 < q < 0 it is q + 1,
	// exact by Sterbenz's lemma when q <= -1/2, and when -1/2 < q < 0 any
	// rounding keeps it above 1/2 (1/2 is a float and rounding is
	// monotone). So the comparisons with 1/2 below are exact.
	frac := q - f
	n := int64(f)
	switch {
	case frac > 0.5:
		n++
	case frac == 0.5:
		// q is exactly a tie point; the true quotient value/g may lie just
		// below it. The residual value - q*g is exact when computed by FMA
		// (the remainder of a correctly rounded division is representable),
		// and its sign says on which side the true quotient lies.
		if r := math.FMA(-q, g, value); r >= 0 {
			n++
		}
	}
	// A tie point strictly between the true quotient and q is impossible:
	// tie points are floats (|q| < 2^52), and a correctly rounded quotient
	// is the float nearest to the true one.
	return n
}

// toGridRat is toGrid for an exact value: floor(x/g + 1/2) in rational
// arithmetic on g's binary value, clamped to [-2^52, 2^52]. For a value a
// float64 holds exactly it equals toGrid. It exists because the grid
// argument above needs the exact values: PostgreSQL's numeric sums are
// decimals, and rounding two of them to float64 first can put them on
// either side of a tie point, one grid step further apart than their
// difference allows (sums 0.4999999999999999 and 1.4999999999999999, one
// step apart, became 0.5 and 1.5 and then grid indices 0 and 2).
func toGridRat(x *big.Rat, g float64) int64 {
	q := new(big.Rat).Quo(x, new(big.Rat).SetFloat64(g))
	q.Add(q, big.NewRat(1, 2))
	n := new(big.Int).Div(q.Num(), q.Denom()) // Euclidean: floor, as Denom > 0
	switch {
	case n.Cmp(big.NewInt(maxGridValue)) >= 0:
		return maxGridValue
	case n.Cmp(big.NewInt(-maxGridValue)) <= 0:
		return -maxGridValue
	}
	return n.Int64()
}

// saturatingAdd returns a+b clamped to the int64 range.
func saturatingAdd(a, b int64) int64 {
	s := a + b
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		if a > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}
