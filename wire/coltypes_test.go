package wire

import (
	"reflect"
	"testing"

	"github.com/dpproxy/dpproxy/policy"
)

func TestColumnTypeProblems(t *testing.T) {
	pol, err := policy.Parse("fuzz.yaml", []byte(fuzzPolicy+`  - name: claims
    privacy: row
    columns:
      - {name: amount, type: numeric, bounds: [0, 10]}
      - {name: filed, type: date}
      - {name: kind, type: text}
`), policy.Env{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	up := func(m map[string]string) map[string]upstreamColumn {
		out := map[string]upstreamColumn{}
		for k, v := range m {
			out[k] = upstreamColumn{typ: v}
		}
		return out
	}
	match := up(map[string]string{"age": "integer", "sex": "character varying(1)"})
	for _, tc := range []struct {
		name            string
		actual          map[string]map[string]upstreamColumn
		tables, columns map[string]string
	}{
		{"all as declared; an enum reads as text",
			map[string]map[string]upstreamColumn{"public.patients": match, "public.claims": up(map[string]string{"amount": "numeric", "filed": "date", "kind": "text"})},
			map[string]string{}, map[string]string{}},
		{"numeric declared, double precision upstream; an extra column upstream is fine; claims missing",
			map[string]map[string]upstreamColumn{"public.patients": up(map[string]string{"age": "double precision", "sex": "text", "note": "jsonb"})},
			map[string]string{"public.claims": "it does not exist upstream, or the proxy's database role cannot see it"},
			map[string]string{"public.patients.age": "it is integer in the policy but double precision upstream"}},
		{"two wrong, one missing; typmods ignored",
			map[string]map[string]upstreamColumn{"public.patients": up(map[string]string{"age": "smallint", "sex": "text"}), "public.claims": up(map[string]string{"amount": "numeric(10,2)", "filed": "timestamp without time zone"})},
			map[string]string{},
			map[string]string{
				"public.patients.age": "it is integer in the policy but smallint upstream",
				"public.claims.filed": "it is date in the policy but timestamp without time zone upstream",
				"public.claims.kind":  "it does not exist upstream"}},
		{"a type dpproxy does not know",
			map[string]map[string]upstreamColumn{"public.patients": up(map[string]string{"age": "integer[]", "sex": "text"}), "public.claims": up(map[string]string{"amount": "numeric", "filed": "date", "kind": "citext"})},
			map[string]string{},
			map[string]string{"public.patients.age": "it is integer in the policy but integer[] upstream", "public.claims.kind": "it is text in the policy but citext upstream"}},
		{"a case-insensitive collation",
			map[string]map[string]upstreamColumn{"public.patients": match, "public.claims": {"amount": {typ: "numeric"}, "filed": {typ: "date"}, "kind": {typ: "text", nondeterministic: true}}},
			map[string]string{},
			map[string]string{"public.claims.kind": "its collation is nondeterministic (e.g. case-insensitive), which dpproxy does not support"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables, columns, _ := columnTypeProblems(pol, tc.actual)
			if !reflect.DeepEqual(tables, tc.tables) || !reflect.DeepEqual(columns, tc.columns) {
				t.Errorf("got %q %q\nwant %q %q", tables, columns, tc.tables, tc.columns)
			}
		})
	}
	// A column's collation other than the default is remembered.
	_, _, collations := columnTypeProblems(pol, map[string]map[string]upstreamColumn{
		"public.patients": {"age": {typ: "integer"}, "sex": {typ: "text", collation: "950"}}})
	if !reflect.DeepEqual(collations, map[string]string{"public.patients.sex": "950"}) {
		t.Errorf("collations %q", collations)
	}
}
