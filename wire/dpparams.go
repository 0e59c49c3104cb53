package wire

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/dpproxy/dpproxy/pgerror"
)

// Bound parameters of DP statements.
//
// PostgreSQL resolves a comparison of a column with a value of another type
// by converting one side, and when the value's type is the client's choice
// that side can be the column: a numeric column beside a parameter
// declared double precision is converted to double precision, which fails
// beyond ~1.8e308; a bigint column beside one declared oid is converted to
// oid, which fails on negative values. Whether the query then fails would
// depend on a private row. So a DP statement's parameters go upstream
// either with a type whose comparisons with the policy's column types
// convert only the parameter (dpParamTypes), or untyped: a value declared
// real or double precision is sent as text without a type, so PostgreSQL
// gives it the type of what it is compared with (numeric beside a numeric
// column, double precision beside a float column) and converts the
// analyst's value when binding, before any row is read. Other types are
// refused.

// dpParamTypes are the declared parameter types a DP statement keeps: 0
// (unspecified), bool, int2/4/8, text, varchar, bpchar, date, timestamp,
// timestamptz and numeric.
var dpParamTypes = map[uint32]bool{0: true, 16: true, 20: true, 21: true, 23: true, 25: true, 1042: true, 1043: true,
	1082: true, 1114: true, 1184: true, 1700: true}

const (
	oidFloat4 = 700
	oidFloat8 = 701
)

// dpParams returns a's parameters as a DP statement sends them upstream.
func dpParams(a execArgs) (execArgs, error) {
	oids := paramOIDs(a)
	var out execArgs
	for i, oid := range oids {
		if dpParamTypes[oid] {
			continue
		}
		if oid != oidFloat4 && oid != oidFloat8 {
			return a, pgerror.RefuseUnsupported.New("parameter $%d has type oid %d, which DP queries do not accept", i+1, oid).
				WithHint("declare it as a number, text, date or timestamp, or leave its type unspecified")
		}
		if out.params == nil {
			out = a
			out.params = append([][]byte(nil), a.params...)
			out.paramOIDs = append([]uint32(nil), oids...)
			out.paramFormats = make([]int16, len(a.params))
			for j := range out.paramFormats {
				out.paramFormats[j] = formatFor(a.paramFormats, j)
			}
		}
		if v := a.params[i]; v != nil && formatFor(a.paramFormats, i) == 1 {
			text, err := floatText(v, oid)
			if err != nil {
				return a, err
			}
			out.params[i] = text
		}
		out.paramOIDs[i], out.paramFormats[i] = 0, 0
	}
	if out.params == nil {
		return a, nil
	}
	return out, nil
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
