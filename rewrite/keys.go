package rewrite

import (
	"math/big"
	"strconv"
	"strings"
)

// Group keys as PostgreSQL prints them. GROUP BY puts equal values in one
// group and prints the value of whichever row it met first, and three
// kinds of key have equal values that print differently: numeric 1.5 and
// 1.50, float -0 and 0, and character(n) values with and without trailing
// spaces. Matched to a public domain byte for byte, a group printed as one
// unit's 1.50 missed its domain entry 1.5 and was released as empty: one
// unit wiped out a whole group. Released as printed (partition
// selection), the text was that unit's. So answer/ releases printed keys
// canonical (Released) and matches them to domain entries by value
// (Match); keyOf drops domain entries that name one value twice, which
// would release one group twice.

// Released is the text released for a key PostgreSQL printed as s: one
// text for all the values GROUP BY counts as equal.
func (k *Key) Released(s string) string {
	switch {
	case k.Padded:
		return strings.TrimRight(s, " ")
	case k.Type == TypeNumeric:
		return trimDecimal(s)
	case k.Type == TypeFloat8 || k.Type == TypeFloat4:
		if f, err := strconv.ParseFloat(s, 64); err == nil && f == 0 {
			return "0"
		}
	}
	return s
}

// Match is what a printed key and a domain entry are compared by: their
// value, in a canonical text.
func (k *Key) Match(s string) string {
	switch {
	case k.Padded:
		return strings.TrimRight(s, " ")
	case k.Type.IsInteger():
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
	case k.Type == TypeNumeric:
		if smallExponent(s) {
			if r, ok := new(big.Rat).SetString(strings.TrimSpace(s)); ok {
				return r.RatString()
			}
		}
	case k.Type == TypeFloat8 || k.Type == TypeFloat4:
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			if f == 0 {
				return "0"
			}
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return s
}

// trimDecimal drops a plain decimal's trailing zeros after the point (1.50
// → 1.5, 2.0 → 2, -0.0 → 0), as PostgreSQL prints numeric; other texts
// (NaN, Infinity) are returned as they are.
func trimDecimal(s string) string {
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || strings.ContainsFunc(frac, func(r rune) bool { return r < '0' || r > '9' }) {
		return s
	}
	frac = strings.TrimRight(frac, "0")
	if frac != "" {
		return whole + "." + frac
	}
	if whole == "-0" {
		return "0"
	}
	return whole
}

// smallExponent reports whether a decimal's exponent, if any, is one
// big.Rat can expand cheaply (1e1000000000 would take gigabytes).
func smallExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return len(s) <= 1000
	}
	e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
	return err == nil && e >= -1000 && e <= 1000 && i <= 1000
}
