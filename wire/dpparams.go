package wire

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Bound parameters of DP statements.
//
// A parameter's declared type is the client's choice, and PostgreSQL makes
// a comparison of a column with a value of another type by converting one
// of them. When it converts the column (a numeric column beside a double
// precision parameter, a bigint beside an oid), the conversion can fail on
// some rows' values. When it converts the parameter, it does so on each
// row the condition reaches whenever the conversion is not done at
// planning: in a generic plan of a prepared statement, or for a
// TimeZone-dependent conversion (a date parameter in an IN list with a
// timestamptz). Either way whether the query fails would depend on a
// private row. So every parameter of a DP statement goes upstream untyped,
// as text (binary values converted here): PostgreSQL gives it the type of
// what it is compared with and converts the analyst's text when binding,
// before any row is read, and nothing converts it again. A value sent in
// binary with no declared type is passed on as it is: PostgreSQL reads it
// in the type it infers. Declared types other than numbers, text, dates,
// timestamps and booleans are refused before any charge.
//
// Statements with parameters are not prepared upstream (prepared.go): an
// inferred type would be frozen into the prepared statement and outlive an
// ALTER COLUMN TYPE.

// dpParamTypes are the declared parameter types a DP statement accepts: 0
// (unspecified), bool, int2/4/8, float4/8, text, varchar, bpchar, date,
// timestamp, timestamptz and numeric.
var dpParamTypes = map[uint32]bool{0: true, 16: true, 20: true, 21: true, 23: true, 25: true, 700: true, 701: true, 1042: true, 1043: true,
	1082: true, 1114: true, 1184: true, 1700: true}

const (
	oidFloat4 = 700
	oidFloat8 = 701
)

// dpParams returns a's parameters as a DP statement sends them upstream:
// untyped, in text unless sent in binary without a type.
func dpParams(a execArgs) (execArgs, error) {
	oids := paramOIDs(a)
	for i, oid := range oids {
		if !dpParamTypes[oid] {
			return a, pgerror.RefuseUnsupported.New("parameter $%d has type oid %d, which DP queries do not accept", i+1, oid).
				WithHint("declare it as a number, text, date or timestamp, or leave its type unspecified")
		}
	}
	if len(a.params) == 0 {
		return a, nil
	}
	out := a
	out.paramOIDs = nil // none: untyped
	if !slices.ContainsFunc(a.paramFormats, func(f int16) bool { return f != 0 }) {
		// All in text already (the common case): nothing to convert or copy.
		out.paramFormats = nil
		return out, nil
	}
	out.params = make([][]byte, len(a.params))
	out.paramFormats = make([]int16, len(a.params))
	for i, v := range a.params {
		var oid uint32
		if i < len(oids) {
			oid = oids[i]
		}
		format := formatFor(a.paramFormats, i)
		switch {
		case v == nil || format == 0:
			out.params[i] = v
		case oid == 0:
			out.params[i], out.paramFormats[i] = v, 1
		default:
			text, err := binaryParamText(v, oid)
			if err != nil {
				return a, err
			}
			out.params[i] = text
		}
	}
	return out, nil
}

// checkParamValues refuses a bound value PostgreSQL would refuse for the
// type it reads the parameter in (rewrite.Plan.InvalidParamValue): it
// would do so when binding, after the charge. a is dpParams' output, whose
// values are text but for those sent in binary without a type. A whole
// number written with a point (2.0, as JDBC's setDouble and setBigDecimal
// send it) for an integer parameter is passed on as 2: the client may have
// declared it double precision or numeric, which PostgreSQL would have
// compared with the column exactly; dpproxy sends parameters untyped.
func checkParamValues(plan *rewrite.Plan, a execArgs) (execArgs, error) {
	if len(plan.ParamTypes) == 0 {
		return a, nil
	}
	copied := false
	for i, v := range a.params {
		typ, typed := plan.ParamTypes[int32(i+1)]
		if !typed || v == nil || formatFor(a.paramFormats, i) != 0 {
			continue
		}
		why := plan.InvalidParamValue(i+1, string(v))
		if why == "" {
			continue
		}
		if whole, ok := wholeNumber(v); ok && policy.IsIntegerType(typ) && plan.InvalidParamValue(i+1, string(whole)) == "" {
			if !copied {
				a.params, copied = slices.Clone(a.params), true
			}
			a.params[i] = whole
			continue
		}
		return a, pgerror.RefuseInvalidLiteral.New("parameter $%d: %s", i+1, why).
			WithHint("bind a valid value of the type, e.g. 42, 1.5, true or 2025-01-31")
	}
	return a, nil
}

// wholeNumber is v without a point and zeros after it (2.0, -7.00), when
// that is all v has beyond its digits.
func wholeNumber(v []byte) ([]byte, bool) {
	s := strings.TrimSpace(string(v))
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || strings.Trim(frac, "0") != "" || strings.Trim(strings.TrimLeft(whole, "+-"), "0123456789") != "" || strings.TrimLeft(whole, "+-") == "" {
		return nil, false
	}
	return []byte(whole), true
}

// typeMaps decode binary parameters; a pgtype.Map is not safe for
// concurrent use.
var typeMaps = sync.Pool{New: func() any { return pgtype.NewMap() }}

// binaryParamText is a binary value of a dpParamTypes type in
// PostgreSQL's text form.
func binaryParamText(v []byte, oid uint32) ([]byte, error) {
	switch oid {
	case oidFloat4, oidFloat8:
		return floatText(v, oid)
	case 25, 1042, 1043: // text's binary form is its text
		return v, nil
	}
	m := typeMaps.Get().(*pgtype.Map)
	defer typeMaps.Put(m)
	var value any
	switch oid {
	case 16:
		value = &pgtype.Bool{}
	case 20, 21, 23:
		value = &pgtype.Int8{}
	case 1700:
		value = &pgtype.Numeric{}
	case 1082:
		value = &pgtype.Date{}
	case 1114:
		value = &pgtype.Timestamp{}
	case 1184:
		value = &pgtype.Timestamptz{}
	}
	if err := m.Scan(oid, pgtype.BinaryFormatCode, v, value); err != nil {
		return nil, pgerror.Newf(pgerror.CodeInvalidBinaryRepresentation, "incorrect binary data format in bind parameter: %v", err).
			WithHint("send the value in text format, or in the binary format of its declared type")
	}
	text, err := m.Encode(oid, pgtype.TextFormatCode, value, nil)
	if err != nil || text == nil {
		return nil, pgerror.Newf(pgerror.CodeInvalidBinaryRepresentation, "cannot read the binary bind parameter of type oid %d", oid).
			WithHint("send the value in text format")
	}
	return text, nil
}

// floatText is a binary float4 or float8 in PostgreSQL's text form.
func floatText(v []byte, oid uint32) ([]byte, error) {
	var f float64
	bits := 64
	switch {
	case oid == oidFloat4 && len(v) == 4:
		f, bits = float64(math.Float32frombits(binary.BigEndian.Uint32(v))), 32
	case oid == oidFloat8 && len(v) == 8:
		f = math.Float64frombits(binary.BigEndian.Uint64(v))
	default:
		return nil, pgerror.Newf(pgerror.CodeInvalidBinaryRepresentation, "incorrect binary data format in bind parameter").
			WithHint("a real takes 4 bytes in binary format, a double precision 8")
	}
	switch {
	case math.IsNaN(f):
		return []byte("NaN"), nil
	case math.IsInf(f, 1):
		return []byte("Infinity"), nil
	case math.IsInf(f, -1):
		return []byte("-Infinity"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, bits), nil
}
