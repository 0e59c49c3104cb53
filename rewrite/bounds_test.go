package rewrite

import (
	"slices"
	"testing"
)

// TestProveBounds reads CHECK constraints as PostgreSQL 15's pg_get_expr
// prints them.
func TestProveBounds(t *testing.T) {
	cases := []struct {
		name   string
		exprs  []string
		column string
		lo, hi float64
		want   []string
	}{
		{"between", []string{"((a >= 0) AND (a <= 100))"}, "a", 0, 100, []string{"((a >= 0) AND (a <= 100))"}},
		{"tighter than the policy", []string{"((a >= 10) AND (a <= 90))"}, "a", 0, 100, []string{"((a >= 10) AND (a <= 90))"}},
		{"wider than the policy", []string{"((a >= 0) AND (a <= 101))"}, "a", 0, 100, nil},
		{"one side only", []string{"(c > (0)::numeric)"}, "c", 0, 100, nil},
		{"two constraints", []string{"(e < (5)::double precision)", "(x > 3)", "(('-5'::integer)::double precision <= e)"}, "e", -5, 5,
			[]string{"(('-5'::integer)::double precision <= e)", "(e < (5)::double precision)"}},
		{"nested casts and decimals", []string{"((b >= ('-50'::integer)::double precision) AND (b <= (60.5)::double precision))"}, "b", -50, 60.5,
			[]string{"((b >= ('-50'::integer)::double precision) AND (b <= (60.5)::double precision))"}},
		{"other conjuncts", []string{"((d <= 10.25) AND (d IS NOT NULL) AND (d >= 0))"}, "d", 0, 11, []string{"((d <= 10.25) AND (d IS NOT NULL) AND (d >= 0))"}},
		{"OR proves nothing", []string{"((f >= 0) OR (f <= 10))"}, "f", 0, 10, nil},
		{"cast column proves nothing", []string{"(((g)::integer <= 3) AND (g >= 0))"}, "g", 0, 3, nil},
		{"other column", []string{"((z >= 0) AND (z <= 1))"}, "a", 0, 1, nil},
		{"rounding cast", []string{"((a >= 0) AND (a <= (10.5)::integer))"}, "a", 0, 10.5, nil},
		{"real cast of a decimal", []string{"((r >= (0)::real) AND (r <= (0.1)::real))"}, "r", 0, 0.1, nil},
		{"NOT", []string{"(NOT ((a < 0) OR (a > 1)))"}, "a", 0, 1, nil},
		{"garbage", []string{"((a >= 0) AND"}, "a", 0, 1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ProveBounds(c.exprs, c.column, c.lo, c.hi)
			if !slices.Equal(got, c.want) {
				t.Fatalf("ProveBounds = %q, want %q", got, c.want)
			}
		})
	}
}
