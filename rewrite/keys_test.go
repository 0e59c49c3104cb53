package rewrite

import "testing"

// TestKeyCanonical: values GROUP BY counts as equal are released as one
// text and matched to a domain entry by value, however the policy spells
// it.
func TestKeyCanonical(t *testing.T) {
	numeric := &Key{Type: TypeNumeric}
	float := &Key{Type: TypeFloat8}
	real := &Key{Type: TypeFloat4}
	integer := &Key{Type: TypeInt4}
	padded := &Key{Type: TypeText, Padded: true}
	text := &Key{Type: TypeText}
	for _, tc := range []struct {
		key          *Key
		printed, out string
		domain       []string // spellings that must match
	}{
		{numeric, "1.50", "1.5", []string{"1.5", "1.50", "+1.5", "15e-1"}},
		{numeric, "0.50", "0.5", []string{".5", "+.5", "0.5"}},
		{numeric, "100", "100", []string{"1e2", "100.0"}},
		{numeric, "2.000", "2", []string{"2"}},
		{numeric, "-0.0", "0", []string{"0"}},
		{numeric, "NaN", "NaN", []string{"NaN"}},
		{float, "-0", "0", []string{"0", "-0", "0.0"}},
		{float, "1e+20", "1e+20", []string{"1e20", "100000000000000000000"}},
		{real, "0.5", "0.5", []string{".5"}},
		{integer, "5", "5", []string{"05", "+5"}},
		{padded, "ab  ", "ab", []string{"ab", "ab "}},
		{text, "ab  ", "ab  ", []string{"ab  "}},
	} {
		if got := tc.key.Released(tc.printed); got != tc.out {
			t.Errorf("Released(%s, %q) = %q, want %q", tc.key.Type.Name, tc.printed, got, tc.out)
		}
		for _, d := range tc.domain {
			if tc.key.Match(tc.printed) != tc.key.Match(d) {
				t.Errorf("%s %q does not match domain entry %q", tc.key.Type.Name, tc.printed, d)
			}
		}
	}
	if numeric.Match("1e1000000000") != "1e1000000000" {
		t.Error("a huge exponent must be left as written, not expanded")
	}
	if numeric.Match("1.5") == numeric.Match("15") || text.Match("ab") == text.Match("ab ") {
		t.Error("1.5 must not match 15, nor text ab match ab with a space")
	}
}

// TestDomainSpelledTwice: a domain that names one value twice (1.5 and
// 1.50) answers it once; released twice, the group would have had two
// noisy draws for one charge.
func TestDomainSpelledTwice(t *testing.T) {
	pol := goldenPolicy(t)
	amount := pol.Table("public", "claims").Column("amount")
	saved := amount.Domain
	amount.Domain = []string{"1.5", "1.50", "2", "2.0", "+.5", "0.5"}
	defer func() { amount.Domain = saved }()
	stmts, err := Classify("SELECT amount, count(*) FROM claims GROUP BY amount", pol)
	if err != nil {
		t.Fatal(err)
	}
	if got := stmts[0].Plan.Keys[0].Domain; len(got) != 3 || got[0] != "1.5" || got[1] != "2" || got[2] != "+.5" {
		t.Errorf("domain %q; want each value once, as first spelled: [1.5 2 +.5]", got)
	}
}
