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
	match := map[string]string{"age": "integer", "sex": "character varying(1)"}
	for _, tc := range []struct {
		name   string
		actual map[string]map[string]string
		want   map[string]string
	}{
		{"all as declared; an enum reads as text; claims missing upstream",
			map[string]map[string]string{"public.patients": match}, map[string]string{}},
		{"numeric declared, double precision upstream; an extra column upstream is fine",
			map[string]map[string]string{"public.patients": match, "public.claims": {"amount": "double precision", "filed": "date", "kind": "text", "note": "jsonb"}},
			map[string]string{"public.claims": "column amount is numeric in the policy but double precision upstream"}},
		{"two wrong, one missing; typmods ignored",
			map[string]map[string]string{"public.patients": {"age": "smallint", "sex": "text"}, "public.claims": {"amount": "numeric(10,2)", "filed": "timestamp without time zone"}},
			map[string]string{
				"public.patients": "column age is integer in the policy but smallint upstream",
				"public.claims":   "column filed is date in the policy but timestamp without time zone upstream; column kind does not exist upstream"}},
		{"a type dpproxy does not know",
			map[string]map[string]string{"public.patients": {"age": "integer[]", "sex": "text"}},
			map[string]string{"public.patients": "column age is integer in the policy but integer[] upstream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := columnTypeProblems(pol, tc.actual); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
