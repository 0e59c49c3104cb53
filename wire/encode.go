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
		size := int16(8)
		if out.Type == rewrite.TypeNumeric {
			size = -1
		}
		fields[i] = pgproto3.FieldDescription{
			Name: []byte(out.Name), DataTypeOID: out.Type.OID, DataTypeSize: size, TypeModifier: -1,
			Format: formatFor(formats, i),
		}
	}
	return fields
}

// encodeRow encodes a DP answer's text values in the requested formats.
func encodeRow(plan *rewrite.Plan, values []string, formats []int16) (*pgproto3.DataRow, error) {
	row := &pgproto3.DataRow{Values: make([][]byte, len(values))}
	for i, v := range values {
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

var typeMap = pgtype.NewMap()

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
	}
	var n pgtype.Numeric
	if err := n.Scan(v); err != nil {
		return nil, err
	}
	return typeMap.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, n, nil)
}
