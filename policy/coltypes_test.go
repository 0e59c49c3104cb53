package policy

import (
	"strings"
	"testing"
)

// TestCarryColumnTypes: when the catalog cannot be read, a table declared
// as before keeps its verdict (good or bad), and any other table is
// refused until a read succeeds.
func TestCarryColumnTypes(t *testing.T) {
	prev, err := Parse("p.yaml", []byte(carryPolicy), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	prev = prev.WithColumnTypes(map[string]string{"ref.icd10": "missing"}, map[string]string{"public.visits.cost": "it is double precision in the policy but numeric upstream"},
		map[string]string{"public.visits.urgent": "950"}).WithUpstreamColumns(map[string]map[string]string{"public.visits": {"dp_rank": "", "other": ""}, "public.patients": {"dp_rank": ""}})
	edited, err := Parse("p.yaml", []byte(strings.Replace(carryPolicy, "{name: age, type: integer,", "{name: age, type: bigint,", 1)), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	const unread = "types unread"
	for _, tc := range []struct {
		name string
		prev *Policy
		// per table: its problem, and the problem of one column
		table, column, wantTable, wantColumn string
	}{
		{"unchanged, with a column problem", prev, "public.visits", "cost", "", "it is double precision in the policy but numeric upstream"},
		{"unchanged, sound", prev, "public.visits", "urgent", "", ""},
		{"unchanged, missing upstream", prev, "ref.icd10", "", "missing", ""},
		{"a column's type changed", prev, "public.patients", "age", unread, ""},
		{"never checked", mustUnchecked(t), "public.visits", "cost", unread, ""},
		{"no previous policy", nil, "public.visits", "cost", unread, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := edited.CarryColumnTypes(tc.prev, unread)
			schema, name, _ := strings.Cut(tc.table, ".")
			tb := got.Table(schema, name)
			if !got.TypesChecked() || got.TypeProblem(tb) != tc.wantTable || got.ColumnTypeProblem(tb, tc.column) != tc.wantColumn {
				t.Errorf("%s: table %q column %q; want %q %q", tc.table, got.TypeProblem(tb), got.ColumnTypeProblem(tb, tc.column), tc.wantTable, tc.wantColumn)
			}
		})
	}
	if got := edited.CarryColumnTypes(prev, unread); got.ColumnCollation(got.Table("public", "visits"), "urgent") != "950" {
		t.Error("the collation of an unchanged table was not carried")
	}
	if got := edited.CarryColumnTypes(prev, unread); !got.HasUpstreamColumn(got.Table("public", "visits"), "dp_rank") ||
		!got.HasUpstreamColumn(got.Table("public", "visits"), "other") || got.HasUpstreamColumn(got.Table("public", "patients"), "dp_rank") {
		t.Error("upstream column names carried wrongly: want an unchanged table's kept, a changed one's dropped")
	}
	if a, b := prev.CatalogTag(), prev.WithUpstreamColumns(map[string]map[string]string{"public.visits": {"dp_rank": ""}}).CatalogTag(); a == b {
		t.Errorf("catalog tags equal (%q) although the upstream column names differ", a)
	}
	if a, b := prev.CatalogTag(), edited.CarryColumnTypes(prev, unread).CatalogTag(); a == b {
		t.Errorf("catalog tags equal (%q) although the verdicts differ", a)
	}
}

var carryPolicy = basePolicy + `  - name: visits
    privacy: row
    columns:
      - {name: cost, type: double precision, bounds: [0, 5000]}
      - {name: urgent, type: boolean}
  - {name: icd10, schema: ref, privacy: public}
`

func mustUnchecked(t *testing.T) *Policy {
	p, err := Parse("p.yaml", []byte(carryPolicy), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
