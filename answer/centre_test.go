package answer

import (
	"math"
	"math/big"
	"testing"

	"github.com/dpproxy/dpproxy/rewrite"
)

func TestCentredSum(t *testing.T) {
	for _, tc := range []struct {
		mid        string
		sum, count []byte
		want       float64
		err        bool
	}{
		{"125000", []byte("5000000"), []byte("40"), 0, false},
		{"125000", []byte("17"), []byte("1"), 17 - 125000, false},
		{"500", []byte("1234.56"), []byte("3"), 1234.56 - 1500, false},
		{"2.5", []byte("10"), []byte("4"), 0, false},
		{"-2.5", []byte("-10"), []byte("4"), 0, false},
		{"0.1", []byte("0.3"), []byte("3"), 0, false}, // exact: 0.3 - 3·0.1 is 0, not float64's 4e-17
		{"500", nil, []byte("0"), 0, false},           // the sum of no rows
		{"500", nil, []byte("2"), 0, true},
		{"500", []byte("1"), []byte("x"), 0, true},
		{"500", []byte("1x"), []byte("1"), 0, true},
		{"500", []byte("1"), []byte("-1"), 0, true},
		// int64 overflow and values past 2^53 take the exact path.
		{"2147483647", []byte("-9223372036854775808"), []byte("2147483647"), -9223372036854775808 - 2147483647.0*2147483647, false},
		{"1", []byte("9007199254740993"), []byte("0"), 9007199254740992, false},
		{"1000", []byte("123456789012345678901234567890.25"), []byte("10"), 1.2345678901234568e29, false},
		{"0.5", []byte("1.4999999999999999"), []byte("1"), 1, false}, // not a float64: kept exact
		{"500", []byte("0.004999999999999999"), []byte("0"), 0.005, false},
	} {
		got, exact, err := CentredSum(&rewrite.Centre{Mid: tc.mid}, tc.sum, tc.count)
		if (err != nil) != tc.err {
			t.Errorf("CentredSum(%s, %q, %q) error %v, want error %v", tc.mid, tc.sum, tc.count, err, tc.err)
			continue
		}
		if !tc.err && got != tc.want && !(math.Abs(got-tc.want) <= 1e-9*math.Abs(tc.want)) {
			t.Errorf("CentredSum(%s, %q, %q) = %v, want %v", tc.mid, tc.sum, tc.count, got, tc.want)
		}
		if tc.err {
			continue
		}
		// The exact value is returned exactly when the float64 is not it.
		want := new(big.Rat)
		if tc.sum != nil {
			s, _ := new(big.Rat).SetString(string(tc.sum))
			m, _ := new(big.Rat).SetString(tc.mid)
			n, _ := new(big.Rat).SetString(string(tc.count))
			want.Sub(s, m.Mul(m, n))
		}
		_, floatExact := want.Float64()
		switch {
		case floatExact && exact != nil:
			t.Errorf("CentredSum(%s, %q, %q) returned an exact value %s the float64 already holds", tc.mid, tc.sum, tc.count, exact.RatString())
		case !floatExact && (exact == nil || exact.Cmp(want) != 0):
			t.Errorf("CentredSum(%s, %q, %q) exact value %v, want %s", tc.mid, tc.sum, tc.count, exact, want.RatString())
		}
	}
}
