package answer

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/dpproxy/dpproxy/rewrite"
)

// Group keys as PostgreSQL prints them. GROUP BY puts equal values in one
// group and prints the value of whichever row it met first, and three
// kinds of key have equal values that print differently: numeric 1.5 and
// 1.50, float -0 and 0, and character(n) values with and without trailing
// spaces. Matched to a public domain byte for byte, a group printed as one
// unit's 1.50 missed its domain entry 1.5 and was released as empty: one
// unit wiped out a whole group. Released as printed (partition
// selection), the text was that unit's. So printed keys are made canonical
// when parsed (releasedKey), and matched to domain entries made canonical
// the same way (domainMatch).

var plainDecimal = regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]*)?$`)

// releasedKey is the text released for a key PostgreSQL printed as s: one
// text for all the values GROUP BY counts as equal.
func releasedKey(k *rewrite.Key, s string) string {
	switch {
	case k.Padded:
		return strings.TrimRight(s, " ")
	case k.Type == rewrite.TypeNumeric:
		return canonicalDecimal(s)
	case k.Type == rewrite.TypeFloat8 || k.Type == rewrite.TypeFloat4:
		if f, err := strconv.ParseFloat(s, 64); err == nil && f == 0 {
			return "0"
		}
	}
	return s
}

// domainMatch is what a released key and a domain entry are compared by.
func domainMatch(k *rewrite.Key, s string) string {
	if k.Type == rewrite.TypeFloat8 || k.Type == rewrite.TypeFloat4 {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			if f == 0 {
				return "0"
			}
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return releasedKey(k, s)
}

// canonicalDecimal drops a plain decimal's sign +, leading zeros and
// trailing zeros after the point (1.50 → 1.5, 2.0 → 2, -0.0 → 0); other
// texts (NaN, Infinity) are returned as they are.
func canonicalDecimal(s string) string {
	if !plainDecimal.MatchString(s) {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	frac = strings.TrimRight(frac, "0")
	if whole == "" {
		whole = "0"
	}
	out := whole
	if frac != "" {
		out += "." + frac
	}
	if neg && out != "0" {
		out = "-" + out
	}
	return out
}
