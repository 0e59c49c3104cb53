package answer

import (
	"testing"

	"github.com/dpproxy/dpproxy/rewrite"
)

// TestKeyCanonical: values GROUP BY counts as equal are released as one
// text and matched to a domain entry by value.
func TestKeyCanonical(t *testing.T) {
	numeric := &rewrite.Key{Type: rewrite.TypeNumeric}
	float := &rewrite.Key{Type: rewrite.TypeFloat8}
	padded := &rewrite.Key{Type: rewrite.TypeText, Padded: true}
	text := &rewrite.Key{Type: rewrite.TypeText}
	for _, tc := range []struct {
		key             *rewrite.Key
		in, out, domain string
	}{
		{numeric, "1.50", "1.5", "1.5"},
		{numeric, "2.000", "2", "2"},
		{numeric, "-0.50", "-0.5", "-0.5"},
		{numeric, "0.0", "0", "0"},
		{numeric, "+007.10", "7.1", "7.1"},
		{numeric, "NaN", "NaN", "NaN"},
		{float, "-0", "0", "0"},
		{float, "0.5", "0.5", "0.5"},
		{float, "1e+20", "1e+20", "1e+20"},
		{padded, "ab  ", "ab", "ab"},
		{text, "ab  ", "ab  ", "ab  "},
	} {
		if got := releasedKey(tc.key, tc.in); got != tc.out {
			t.Errorf("releasedKey(%s, %q) = %q, want %q", tc.key.Type.Name, tc.in, got, tc.out)
		}
		if domainMatch(tc.key, tc.in) != domainMatch(tc.key, tc.domain) {
			t.Errorf("%s %q does not match domain entry %q", tc.key.Type.Name, tc.in, tc.domain)
		}
	}
	if domainMatch(float, "1e20") != domainMatch(float, "1e+20") || domainMatch(numeric, "1.5") == domainMatch(numeric, "15") {
		t.Error("floats must match by value, and 1.5 must not match 15")
	}
}
