package rewrite

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
)

// Quoted constants compared with a column take the column's type, and
// PostgreSQL reads them when it analyses the statement: `floor = 'x'` or
// `rate = '1e400'` fails then, after dpproxy has charged the statement.
// The failure does not depend on any row, so it leaks nothing, but the
// analyst pays for a typo. checkLiterals refuses such constants first,
// for the forms where PostgreSQL surely fails; anything it cannot judge
// (other spellings of dates, PostgreSQL 16's 0x and 1_000 integers) goes
// upstream as before.

// checkLiterals checks the quoted constants among a comparison's leaves
// (comparisonLeaves) against the one type they are compared with: the
// leaves' columns' and numbers', and also's (an IN subquery's column).
// Beside values of several types (an IN list or coalesce takes their
// common type: i IN ('1.5', 2.5) compares in numeric), or any other
// expression, PostgreSQL's choice of type is not judged here.
func checkLiterals(leaves []*pg_query.Node, also string, sc *scope) error {
	typ := also
	var literals []string
	for _, n := range leaves {
		switch t := partnerType(n, sc); t {
		case "?":
			return nil
		case "":
			if s := n.GetAConst().GetSval(); s != nil {
				literals = append(literals, s.Sval)
			}
		default:
			if typ != "" && typ != t {
				return nil
			}
			typ = t
		}
	}
	for _, lit := range literals {
		if why := literalFails(typ, lit); why != "" {
			return pgerror.RefuseInvalidLiteral.New("%q is not a valid %s: %s", lit, typ, why)
		}
	}
	return nil
}

var (
	decimalInteger    = regexp.MustCompile(`^[+-]?[0-9]+$`)
	decimalLiteral    = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)
	nonDecimalLiteral = regexp.MustCompile(`^[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+)$`)
	isoDateLiteral    = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})-([0-9]{2})($|[ T].*$)`)
	isoTimeLiteral    = regexp.MustCompile(`^[ T]([0-9]{1,2}):([0-9]{2})(:([0-9]{2})(\.[0-9]+)?)?([zZ]|[+-][0-9]{2}(:?[0-9]{2})?)?$`)
)

// literalFails says why PostgreSQL would refuse s as a value of typ, or ""
// when it would accept it or this cannot tell.
func literalFails(typ, s string) string {
	t := strings.Trim(s, " \t\n\r\f\v")
	if strings.Contains(t, "_") && typ != "boolean" {
		return "" // PostgreSQL 16 reads 1_000
	}
	switch typ {
	case "smallint", "integer", "bigint":
		bits := 64
		switch typ {
		case "smallint":
			bits = 16
		case "integer":
			bits = 32
		}
		if decimalInteger.MatchString(t) {
			if _, err := strconv.ParseInt(strings.TrimPrefix(t, "+"), 10, bits); err != nil {
				return "it is out of range for the type"
			}
			return ""
		}
		if !nonDecimalLiteral.MatchString(t) {
			return "an integer has digits only"
		}
	case "numeric":
		if !isSpecialNumber(t, false) && !decimalLiteral.MatchString(t) && !nonDecimalLiteral.MatchString(t) {
			return "a number has digits, an optional point and an optional exponent only"
		}
	case "real", "double precision":
		return floatLiteralFails(t, typ)
	case "boolean":
		if !isBoolLiteral(strings.ToLower(t)) {
			return "a boolean is true, false, yes, no, on, off, 1 or 0"
		}
	case "date", "timestamp", "timestamptz":
		return dateLiteralFails(t)
	}
	return ""
}

// isSpecialNumber matches the non-finite values numeric and the float
// types accept, in any case: Infinity and inf with an optional sign, and
// NaN, which only the float types (strtod) accept with a sign.
func isSpecialNumber(t string, float bool) bool {
	switch strings.ToLower(strings.TrimLeft(t, "+-")) {
	case "infinity", "inf":
		return true
	case "nan":
		return !strings.ContainsAny(t[:1], "+-") || float
	}
	return false
}

func floatLiteralFails(t, typ string) string {
	if isSpecialNumber(t, true) || strings.HasPrefix(strings.ToLower(strings.TrimLeft(t, "+-")), "nan(") {
		return "" // strtod also reads nan(chars)
	}
	if !decimalLiteral.MatchString(t) {
		if nonDecimalLiteral.MatchString(t) || strings.HasPrefix(strings.ToLower(strings.TrimLeft(t, "+-")), "0x") {
			return "" // strtod reads hexadecimal floats
		}
		return "a number has digits, an optional point and an optional exponent only"
	}
	bits := 64
	if typ == "real" {
		bits = 32
	}
	f, err := strconv.ParseFloat(t, bits)
	mantissa, _, _ := strings.Cut(strings.ToLower(t), "e")
	switch {
	case errors.Is(err, strconv.ErrRange) || math.IsInf(f, 0):
		return "it is out of range for the type"
	case f == 0 && strings.ContainsAny(mantissa, "123456789"):
		return "it is too small for the type (it would be rounded to zero)"
	}
	return ""
}

// isBoolLiteral matches what PostgreSQL's boolin accepts: a prefix of true,
// false, yes or no, on, of or off, 1 or 0 (lower-cased).
func isBoolLiteral(t string) bool {
	if t == "" {
		return false
	}
	for _, word := range []string{"true", "false", "yes", "no"} {
		if strings.HasPrefix(word, t) {
			return true
		}
	}
	switch t {
	case "on", "of", "off", "1", "0":
		return true
	}
	return false
}

// dateLiteralFails judges ISO dates (YYYY-MM-DD, optionally with a time):
// a day, month, year 0 or time of day that does not exist. Other
// spellings are PostgreSQL's to judge.
func dateLiteralFails(t string) string {
	m := isoDateLiteral.FindStringSubmatch(t)
	if m == nil {
		return ""
	}
	var tm []string
	if m[4] != "" {
		// Only a time of day, with an optional offset: BC years have
		// other leap years, and zone names are PostgreSQL's to read.
		if tm = isoTimeLiteral.FindStringSubmatch(m[4]); tm == nil {
			return ""
		}
	}
	year, _ := strconv.Atoi(m[1])
	month, _ := strconv.Atoi(m[2])
	day, _ := strconv.Atoi(m[3])
	if year == 0 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return "that day does not exist"
	}
	if tm == nil {
		return ""
	}
	hour, _ := strconv.Atoi(tm[1])
	minute, _ := strconv.Atoi(tm[2])
	second, _ := strconv.Atoi(tm[4])
	fraction := strings.Trim(tm[5], ".0")
	switch {
	case hour > 24 || minute > 59 || second > 60:
		return "that time of day does not exist"
	case hour == 24 && (minute > 0 || second > 0 || fraction != "") && len(tm[5]) <= 7:
		// Longer fractions are rounded to microseconds first
		// (24:00:00.0000001 is midnight), which is PostgreSQL's to judge.
		return "that time of day does not exist"
	}
	return ""
}

func daysIn(year, month int) int {
	switch month {
	case 4, 6, 9, 11:
		return 30
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31
}
