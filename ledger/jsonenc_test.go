package ledger

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
)

// trickyStrings are strings encoding/json escapes in each of its ways.
var trickyStrings = []string{"", "plain", `q"uote`, `back\slash`, "a<b>c&d", "\b\f\n\r\t\x00\x1f\x7f", "héllo ☃",
	"bad \xff\xfe utf8", "\u2028\u2029", "SELECT count(*) FROM t WHERE a > 1", "\xed\xa0\x80 surrogate"}

// fill sets every field of v (a pointer to a struct) to random values,
// empty ones included, so that a field an encoder forgets shows.
func fill(r *rand.Rand, v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		fill(r, v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			fill(r, v.Field(i))
		}
	case reflect.String:
		if r.IntN(3) > 0 {
			v.SetString(trickyStrings[r.IntN(len(trickyStrings))])
		} else {
			v.SetString("")
		}
	case reflect.Int, reflect.Int64:
		switch r.IntN(3) {
		case 0:
			v.SetInt(0)
		case 1:
			v.SetInt(r.Int64() - r.Int64())
		default:
			v.SetInt(int64(r.IntN(1000)))
		}
	case reflect.Uint64:
		if r.IntN(2) == 0 {
			v.SetUint(0)
		} else {
			v.SetUint(r.Uint64())
		}
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Slice:
		switch r.IntN(3) {
		case 0: // nil
			v.SetZero()
		default:
			n := r.IntN(3)
			s := reflect.MakeSlice(v.Type(), n, n)
			for i := range n {
				fill(r, s.Index(i))
			}
			v.Set(s)
		}
	default:
		panic("fill: add kind " + v.Kind().String())
	}
}

func TestJSONEncodersMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(name string, v any, got []byte) {
		t.Helper()
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s:\n got: %s\nwant: %s", name, got, want)
		}
	}
	for range 2000 {
		var b entryBody
		fill(r, reflect.ValueOf(&b))
		check("entryBody", &b, b.appendJSON(nil))
		var rec record
		fill(r, reflect.ValueOf(&rec))
		check("record", &rec, rec.appendJSON(nil))
		var a account
		fill(r, reflect.ValueOf(&a))
		check("account", &a, a.appendJSON([]byte{})) // appends, as to a reused buffer
	}
}

// BenchmarkEncodeEntry: a typical charge's body and record, by the
// hand-written encoders and by encoding/json.
func BenchmarkEncodeEntry(b *testing.B) {
	body := entryBody{V: bodyVersion, ID: "2f1c9a7e0b3d4c5e8f6a1b2c3d4e5f60", Time: "2026-11-30T07:20:38.123456789Z",
		Analyst: "bench", EpsUnits: 100000000, BudgetEps: 1e15, Statement: "SELECT count(*) FROM tiny WHERE flag > 3",
		Fingerprint: "a1b2c3d4e5f6", Tables: []string{"public.tiny"}, Mechanisms: "laplace(count(*)) epsilon=0.1 scale=10",
		PolicyVersion: "sha256:0123456789abcdef", Mode: ModeBasic}
	rec := record{Seq: 123456, Prev: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Hash: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", SpentEps: 123456789, Queries: 1234}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bb := body.appendJSON(make([]byte, 0, 512))
			r := rec
			r.Body = string(bb)
			_ = r.appendJSON(make([]byte, 0, 128+2*len(bb)))
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bb, _ := json.Marshal(&body)
			r := rec
			r.Body = string(bb)
			_, _ = json.Marshal(&r)
		}
	})
}
