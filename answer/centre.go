package answer

import (
	"fmt"
	"math/big"
	"strconv"

	"github.com/dpproxy/dpproxy/rewrite"
)

// CentredSum is a centred sum Σ(x - c.Mid) computed exactly from what the
// rewritten SQL returned for it (rewrite.Quantity.Centre): the plain sum
// Σx and the count n of the same values, as Postgres's text (a nil sum is
// the sum of no rows). The result is the one float64 nearest the exact
// value, as parsing Σ(x - Mid) from the database would give, and the exact
// value when that float64 is not it (Row.Exact).
func CentredSum(c *rewrite.Centre, sum, count []byte) (float64, *big.Rat, error) {
	n, err := strconv.ParseInt(string(count), 10, 64)
	if err != nil || n < 0 {
		return 0, nil, fmt.Errorf("centred sum: count %q is not a count", count)
	}
	if sum == nil {
		if n != 0 {
			return 0, nil, fmt.Errorf("centred sum: no sum over %d values", n)
		}
		return 0, nil, nil
	}
	// Integers (int4 columns summed as int8, integer midpoints) stay in
	// int64 while nothing can overflow; numeric sums go through big.Rat.
	if s, err := strconv.ParseInt(string(sum), 10, 64); err == nil {
		// |m·n| < 2^62; the difference is exact in float64 below 2^53.
		if m, err := strconv.ParseInt(c.Mid, 10, 32); err == nil && n < 1<<31 {
			if v, ok := sub64(s, m*n); ok && v > -1<<53 && v < 1<<53 {
				return float64(v), nil, nil
			}
		}
	}
	s, ok := new(big.Rat).SetString(string(sum))
	if !ok {
		return 0, nil, fmt.Errorf("centred sum: sum %q is not a number", sum)
	}
	m, ok := new(big.Rat).SetString(c.Mid)
	if !ok {
		return 0, nil, fmt.Errorf("centred sum: midpoint %q is not a number", c.Mid)
	}
	s.Sub(s, m.Mul(m, new(big.Rat).SetInt64(n)))
	f, exact := s.Float64()
	if exact {
		return f, nil, nil
	}
	return f, s, nil
}

// sub64 is a - b, and whether it did not overflow: it can only when a and
// b have opposite signs, and then the result has b's sign.
func sub64(a, b int64) (int64, bool) {
	d := a - b
	return d, (a >= 0) == (b >= 0) || (d >= 0) == (a >= 0)
}
