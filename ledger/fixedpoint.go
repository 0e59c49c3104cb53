package ledger

import (
	"math"
	"strconv"
	"strings"
)

// Fixed-point accounting.
//
// Spent amounts and budgets are stored as integers, never as float sums:
//
//   - epsilon in units of EpsilonUnit (1e-9), delta in units of DeltaUnit (1e-15);
//   - a charge is converted from the shortest decimal that round-trips its
//     float64 (so 0.1 is exactly 1e8 units, not 0.1000000000000000055…) and
//     rounded UP to a whole unit: a non-zero charge always costs at least one
//     unit and the ledger never undercharges;
//   - a budget is converted the same way and rounded DOWN;
//   - a charge succeeds iff spent+charge <= budget, in integers, for both
//     epsilon and delta.
//
// So ten charges of 0.1 against a budget of 1.0 all succeed and the eleventh
// fails. Amounts are limited to MaxEpsilon and MaxDelta so every integer stays
// below 2^53 and is exact in a Redis Lua number (a double) too.
const (
	EpsilonUnit = 1e-9
	DeltaUnit   = 1e-15
	MaxEpsilon  = 1e6
	MaxDelta    = 1.0

	epsScale   int64 = 1_000_000_000
	deltaScale int64 = 1_000_000_000_000_000
	maxUnits   int64 = 1_000_000_000_000_000 // MaxEpsilon/EpsilonUnit = MaxDelta/DeltaUnit
)

func maxAmount(scale int64) float64 { return float64(maxUnits / scale) }

func fromEps(u int64) float64   { return float64(u) / float64(epsScale) }
func fromDelta(u int64) float64 { return float64(u) / float64(deltaScale) }

// ceilUnits returns ceil(x*scale) computed exactly on the shortest decimal
// representation of x. x must be finite, non-negative and at most
// maxAmount(scale); larger values saturate at maxUnits+1 (never allowed).
func ceilUnits(x float64, scale int64) int64 { return toUnits(x, scale, true) }

// floorUnits is floor(x*scale), like ceilUnits.
func floorUnits(x float64, scale int64) int64 { return toUnits(x, scale, false) }

func toUnits(x float64, scale int64, up bool) int64 {
	if !(x > 0) { // zero, negative, NaN
		return 0
	}
	if x > maxAmount(scale) {
		return maxUnits + 1
	}
	if x == math.Trunc(x) {
		// A whole number (budgets mostly are) is exactly that many units
		// of 1/scale; x <= maxAmount(scale) keeps the product in range.
		return int64(x) * scale
	}
	// "d.dddde±XX": value = D × 10^(exp-(len(D)-1)).
	s := strconv.FormatFloat(x, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	d, _ := strconv.ParseUint(digits, 10, 64) // at most 17 digits
	k := exp - (len(digits) - 1)
	for sc := scale; sc > 1; sc /= 10 {
		k++
	}
	if k >= 0 {
		for ; k > 0; k-- {
			d *= 10 // bounded: x <= maxAmount(scale) keeps d <= maxUnits
		}
		return int64(d)
	}
	if -k > 19 {
		if up {
			return 1
		}
		return 0
	}
	p := uint64(1)
	for ; k < 0; k++ {
		p *= 10
	}
	q, r := d/p, d%p
	if up && r != 0 {
		q++
	}
	return int64(q)
}
