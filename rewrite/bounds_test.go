package rewrite

import (
	"slices"
	"testing"

	"github.com/dpproxy/dpproxy/policy"
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
		{"two constraints", []string{"(e < (5)::numeric)", "(x > 3)", "(('-5'::integer)::numeric <= e)"}, "e", -5, 5,
			[]string{"(('-5'::integer)::numeric <= e)", "(e < (5)::numeric)"}},
		{"nested casts and decimals", []string{"((b >= ('-50'::integer)::numeric) AND (b <= 60.5))"}, "b", -50, 60.5,
			[]string{"((b >= ('-50'::integer)::numeric) AND (b <= 60.5))"}},
		{"floating-point constants", []string{"((b >= ('-50'::integer)::double precision) AND (b <= (60.5)::double precision))"}, "b", -50, 60.5, nil},
		{"a constant past float64's precision", []string{"((x >= 0) AND (x <= '9007199254740993'::bigint))"}, "x", 0, 9007199254740992, nil},
		{"decimals compared exactly", []string{"((x >= 0) AND (x <= 1000.0070000000000001))"}, "x", 0, 1000.007, nil},
		{"other conjuncts", []string{"((d <= 10.25) AND (d IS NOT NULL) AND (d >= 0))"}, "d", 0, 11, []string{"((d <= 10.25) AND (d IS NOT NULL) AND (d >= 0))"}},
		{"OR proves nothing", []string{"((f >= 0) OR (f <= 10))"}, "f", 0, 10, nil},
		{"cast column proves nothing", []string{"(((g)::integer <= 3) AND (g >= 0))"}, "g", 0, 3, nil},
		{"other column", []string{"((z >= 0) AND (z <= 1))"}, "a", 0, 1, nil},
		{"rounding cast", []string{"((a >= 0) AND (a <= (10.5)::integer))"}, "a", 0, 10.5, nil},
		{"real cast", []string{"((r >= (0)::real) AND (r <= (0.5)::real))"}, "r", 0, 0.5, nil},
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

// TestCopyClamp: the columns a shadow copy clamps are those a proof of its
// CHECK condition unclamps, and the condition proves the column's bounds.
func TestCopyClamp(t *testing.T) {
	for _, tc := range []struct {
		col  policy.Column
		want string
	}{
		{policy.Column{Name: "amount", Type: "numeric", Bounds: &policy.Bounds{Lower: -5, Upper: 1000.5}},
			"CASE WHEN r.amount < (-5) THEN (-5) WHEN r.amount > 1000.5 THEN 1000.5 ELSE r.amount END"},
		{policy.Column{Name: "age", Type: "integer", Bounds: &policy.Bounds{Lower: 0, Upper: 100}},
			"CASE WHEN r.age < 0 THEN 0 WHEN r.age > 100 THEN 100 ELSE r.age END"},
		{policy.Column{Name: "temp", Type: "double precision", Bounds: &policy.Bounds{Lower: 0, Upper: 1}}, ""},
		{policy.Column{Name: "n", Type: "integer", Bounds: &policy.Bounds{Lower: 0.5, Upper: 10}}, ""},
		{policy.Column{Name: "m", Type: "integer"}, ""},
	} {
		expr, check, ok := CopyClamp(&tc.col, "r."+tc.col.Name, tc.col.Name)
		if expr != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: CopyClamp = %q, %v; want %q", tc.col.Name, expr, ok, tc.want)
			continue
		}
		if ok && ProveBounds([]string{"(" + check + ")"}, tc.col.Name, tc.col.Bounds.Lower, tc.col.Bounds.Upper) == nil {
			t.Errorf("%s: CHECK (%s) does not prove [%v, %v]", tc.col.Name, check, tc.col.Bounds.Lower, tc.col.Bounds.Upper)
		}
	}
}
