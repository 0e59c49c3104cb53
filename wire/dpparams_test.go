package wire

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// TestDPParams: parameters declared real or double precision go upstream
// untyped, as text (binary values converted); the kept types pass as they
// are; other types are refused.
func TestDPParams(t *testing.T) {
	f8 := func(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
	f4 := func(f float32) []byte { return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)) }
	for _, tc := range []struct {
		name        string
		in          execArgs
		params      []string
		oids        []uint32
		formats     []int16
		wantErrCode string
	}{
		{name: "kept", in: execArgs{params: [][]byte{[]byte("1"), f8(2)}, paramOIDs: []uint32{23, 1700}, paramFormats: []int16{0, 1}},
			params: []string{"1", string(f8(2))}, oids: []uint32{23, 1700}, formats: []int16{0, 1}},
		{name: "float8 text", in: execArgs{params: [][]byte{[]byte("0.5")}, paramOIDs: []uint32{701}},
			params: []string{"0.5"}, oids: []uint32{0}, formats: []int16{0}},
		{name: "binary floats, one format for all", in: execArgs{params: [][]byte{f8(0.1), f4(1.5), f8(math.Inf(-1)), f8(math.NaN())}, paramOIDs: []uint32{701, 700, 701, 701}, paramFormats: []int16{1}},
			params: []string{"0.1", "1.5", "-Infinity", "NaN"}, oids: []uint32{0, 0, 0, 0}, formats: []int16{0, 0, 0, 0}},
		{name: "binary int beside a float", in: execArgs{params: [][]byte{{0, 0, 0, 7}, f8(1e300)}, paramOIDs: []uint32{23, 701}, paramFormats: []int16{1}},
			params: []string{"\x00\x00\x00\x07", "1e+300"}, oids: []uint32{23, 0}, formats: []int16{1, 0}},
		{name: "null float", in: execArgs{params: [][]byte{nil}, paramOIDs: []uint32{701}, paramFormats: []int16{1}},
			params: []string{""}, oids: []uint32{0}, formats: []int16{0}},
		{name: "oid refused", in: execArgs{params: [][]byte{[]byte("1")}, paramOIDs: []uint32{26}}, wantErrCode: "0A000"},
		{name: "short float8", in: execArgs{params: [][]byte{{1, 2, 3}}, paramOIDs: []uint32{701}, paramFormats: []int16{1}}, wantErrCode: "22P03"},
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
			if !slices.Equal(params, tc.params) || !slices.Equal(paramOIDs(out), tc.oids) {
				t.Fatalf("params %q oids %v, want %q %v", params, paramOIDs(out), tc.params, tc.oids)
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
