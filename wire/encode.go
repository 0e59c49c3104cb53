package wire

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// formatFor returns the result format of column i under the Bind message's
// result format codes (none: text; one: for all columns; else one each).
func formatFor(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

// dpFields describes a DP answer's columns with the types a direct query
// would report. Table OIDs are 0: the values are computed, not stored.
func dpFields(plan *rewrite.Plan, formats []int16) []pgproto3.FieldDescription {
	fields := make([]pgproto3.FieldDescription, len(plan.Outputs))
	for i, out := range plan.Outputs {
		fields[i] = pgproto3.FieldDescription{
			Name: []byte(out.Name), DataTypeOID: out.Type.OID, DataTypeSize: typeSize(out.Type), TypeModifier: -1,
			Format: formatFor(formats, i),
		}
	}
	return fields
}

func typeSize(t rewrite.ResultType) int16 {
	switch t {
	case rewrite.TypeBool:
		return 1
	case rewrite.TypeInt2:
		return 2
	case rewrite.TypeInt4, rewrite.TypeFloat4, rewrite.TypeDate:
		return 4
	case rewrite.TypeInt8, rewrite.TypeFloat8, rewrite.TypeTimestamp, rewrite.TypeTimestamptz:
		return 8
	}
	return -1
}

// encodeRow encodes a DP answer's text values in the requested formats.
func encodeRow(plan *rewrite.Plan, values []string, nulls []bool, formats []int16) (*pgproto3.DataRow, error) {
	row := &pgproto3.DataRow{Values: make([][]byte, len(values))}
	for i, v := range values {
		if nulls[i] {
			continue
		}
		if formatFor(formats, i) == 0 {
			row.Values[i] = []byte(v)
			continue
		}
		b, err := encodeBinary(plan.Outputs[i].Type, v)
		if err != nil {
			return nil, pgerror.Wrapf(err, pgerror.CodeInternalError, "cannot encode result column %q", plan.Outputs[i].Name)
		}
		row.Values[i] = b
	}
	return row, nil
}

// encodeBinary converts Postgres's text form of a value to its binary form.
// It takes a pgtype.Map from typeMaps (dpparams.go): a Map memoizes its
// plans in maps without locks, and a shared one was written by concurrent
// sessions, a fatal error no recover catches.
func encodeBinary(t rewrite.ResultType, v string) ([]byte, error) {
	switch t {
	case rewrite.TypeInt8:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
	case rewrite.TypeFloat8:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case rewrite.TypeText:
		return []byte(v), nil
	case rewrite.TypeNumeric:
		var n pgtype.Numeric
		if err := n.Scan(v); err != nil {
			return nil, err
		}
		typeMap := typeMaps.Get().(*pgtype.Map)
		defer typeMaps.Put(typeMap)
		return typeMap.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, n, nil)
	}
	typeMap := typeMaps.Get().(*pgtype.Map)
	defer typeMaps.Put(typeMap)
	var val any
	if err := typeMap.Scan(t.OID, pgtype.TextFormatCode, []byte(v), &val); err != nil {
		return nil, err
	}
	return typeMap.Encode(t.OID, pgtype.BinaryFormatCode, val, nil)
}
