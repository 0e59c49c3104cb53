package wire

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// TestDPParams: every parameter goes upstream untyped, in text (binary
// values converted) unless sent in binary without a type; declared types
// outside numbers, text, dates, timestamps and booleans are refused.
func TestDPParams(t *testing.T) {
	f8 := func(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
	f4 := func(f float32) []byte { return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)) }
	// 123.45 in numeric's binary form: 2 base-10000 digits, weight 0,
	// positive, 2 decimals: 123, 4500.
	num := []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94}
	day := binary.BigEndian.AppendUint32(nil, uint32(int32(9132))) // 2025-01-01 is 9132 days after 2000-01-01
	dayInf := binary.BigEndian.AppendUint32(nil, uint32(math.MaxInt32))
	ts := binary.BigEndian.AppendUint64(nil, uint64(int64(9132)*86400e6+3600e6+500))
	for _, tc := range []struct {
		name        string
		in          execArgs
		params      []string
		oids        []uint32
		formats     []int16
		wantErrCode string
	}{
		{name: "text values lose their types", in: execArgs{params: [][]byte{[]byte("1"), []byte("2.5"), []byte("x")}, paramOIDs: []uint32{23, 1700, 25}},
			params: []string{"1", "2.5", "x"}, oids: []uint32{0, 0, 0}, formats: []int16{0, 0, 0}},
		{name: "float8 text", in: execArgs{params: [][]byte{[]byte("0.5")}, paramOIDs: []uint32{701}},
			params: []string{"0.5"}, oids: []uint32{0}, formats: []int16{0}},
		{name: "binary floats, one format for all", in: execArgs{params: [][]byte{f8(0.1), f4(1.5), f8(math.Inf(-1)), f8(math.NaN())}, paramOIDs: []uint32{701, 700, 701, 701}, paramFormats: []int16{1}},
			params: []string{"0.1", "1.5", "-Infinity", "NaN"}, oids: []uint32{0, 0, 0, 0}, formats: []int16{0, 0, 0, 0}},
		{name: "binary integers, numeric, bool, text", in: execArgs{params: [][]byte{{0, 0, 0, 7}, {0xff, 0xfe}, binary.BigEndian.AppendUint64(nil, 3000000000), num, {1}, []byte("zé")},
			paramOIDs: []uint32{23, 21, 20, 1700, 16, 1043}, paramFormats: []int16{1}},
			params: []string{"7", "-2", "3000000000", "123.45", "t", "zé"}, oids: []uint32{0, 0, 0, 0, 0, 0}, formats: []int16{0, 0, 0, 0, 0, 0}},
		{name: "binary dates and timestamps", in: execArgs{params: [][]byte{day, dayInf, ts, ts}, paramOIDs: []uint32{1082, 1082, 1114, 1184}, paramFormats: []int16{1}},
			params: []string{"2025-01-01", "infinity", "2025-01-01 01:00:00.0005", "2025-01-01 01:00:00.0005Z"}, oids: []uint32{0, 0, 0, 0}, formats: []int16{0, 0, 0, 0}},
		{name: "binary without a type stays binary", in: execArgs{params: [][]byte{{0, 0, 0, 7}, []byte("3")}, paramFormats: []int16{1, 0}},
			params: []string{"\x00\x00\x00\x07", "3"}, oids: []uint32{0, 0}, formats: []int16{1, 0}},
		{name: "null float", in: execArgs{params: [][]byte{nil}, paramOIDs: []uint32{701}, paramFormats: []int16{1}},
			params: []string{""}, oids: []uint32{0}, formats: []int16{0}},
		{name: "oid refused", in: execArgs{params: [][]byte{[]byte("1")}, paramOIDs: []uint32{26}}, wantErrCode: "0A000"},
		{name: "short float8", in: execArgs{params: [][]byte{{1, 2, 3}}, paramOIDs: []uint32{701}, paramFormats: []int16{1}}, wantErrCode: "22P03"},
		{name: "short date", in: execArgs{params: [][]byte{{1, 2}}, paramOIDs: []uint32{1082}, paramFormats: []int16{1}}, wantErrCode: "22P03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := dpParams(tc.in)
			if tc.wantErrCode != "" {
				if code := pgerror.Code(err); code != tc.wantErrCode {
					t.Fatalf("error %v (%s), want %s", err, code, tc.wantErrCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var params []string
			for _, p := range out.params {
				params = append(params, string(p))
			}
			// An OID not sent is unspecified (0), as PostgreSQL reads it.
			oids := make([]uint32, len(out.params))
			copy(oids, out.paramOIDs)
			if !slices.Equal(params, tc.params) || len(out.paramOIDs) > len(out.params) || !slices.Equal(oids, tc.oids) {
				t.Fatalf("params %q oids %v, want %q %v", params, out.paramOIDs, tc.params, tc.oids)
			}
			for i := range tc.formats {
				if got := formatFor(out.paramFormats, i); got != tc.formats[i] {
					t.Fatalf("format of $%d: %d, want %d", i+1, got, tc.formats[i])
				}
			}
			if tc.name == "binary floats, one format for all" && tc.in.paramFormats[0] != 1 {
				t.Fatal("the client's formats were changed in place")
			}
		})
	}
}

// TestCheckParamValues: a text value that is not one of its parameter's
// type is refused (DP023); NULL, binary values (sent untyped, which
// PostgreSQL reads itself) and parameters without one type pass.
func TestCheckParamValues(t *testing.T) {
	plan := &rewrite.Plan{ParamTypes: map[int32]string{1: "integer", 3: "date"}}
	for _, tc := range []struct {
		name    string
		a       execArgs
		refused bool
	}{
		{"valid", execArgs{params: [][]byte{[]byte("42"), []byte("x"), []byte("2024-02-29")}}, false},
		{"not an integer", execArgs{params: [][]byte{[]byte("4.2"), nil, nil}}, true},
		{"no such day", execArgs{params: [][]byte{[]byte("1"), nil, []byte("2025-02-29")}}, true},
		{"untyped parameter", execArgs{params: [][]byte{nil, []byte("anything")}}, false},
		{"NULL", execArgs{params: [][]byte{nil}}, false},
		{"binary", execArgs{params: [][]byte{{0, 0, 0, 1}}, paramFormats: []int16{1}}, false},
		{"a fraction for an integer", execArgs{params: [][]byte{[]byte("2.5")}}, true},
	} {
		_, err := checkParamValues(plan, tc.a)
		if refused := pgerror.Code(err) == pgerror.CodeInvalidTextRepresentation; refused != tc.refused {
			t.Errorf("%s: %v; want refused %v", tc.name, err, tc.refused)
		}
	}
	// A whole number with a point, as JDBC's setDouble sends it, is passed
	// on as an integer; the client's values are not written over.
	client := [][]byte{[]byte("2.00"), []byte("x")}
	got, err := checkParamValues(plan, execArgs{params: client})
	if err != nil || string(got.params[0]) != "2" || string(client[0]) != "2.00" {
		t.Errorf("2.00 for an integer: %q, %v; client's value now %q; want 2 sent, 2.00 kept", got.params, err, client[0])
	}
}
