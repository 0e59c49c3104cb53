package rewrite

import (
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// literalCase is a line of testdata/literals.tsv.
type literalCase struct {
	typ, lit      string
	pgFails, pass bool
}

func readLiteralCases(t *testing.T) []literalCase {
	t.Helper()
	data, err := os.ReadFile("testdata/literals.tsv")
	if err != nil {
		t.Fatal(err)
	}
	var cases []literalCase
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 || !strings.HasPrefix(f[1], "|") || !strings.HasSuffix(f[1], "|") {
			t.Fatalf("malformed line %q", line)
		}
		cases = append(cases, literalCase{f[0], f[1][1 : len(f[1])-1], f[2] == "true", f[3] == "true"})
	}
	return cases
}

func TestLiteralFails(t *testing.T) {
	for _, tc := range readLiteralCases(t) {
		refused := literalFails(tc.typ, tc.lit) != ""
		if want := tc.pgFails && !tc.pass; refused != want {
			t.Errorf("%q as %s: refused %v, want %v", tc.lit, tc.typ, refused, want)
		}
	}
}

// TestInvalidLiterals: a quoted constant PostgreSQL would refuse for the
// type of the column it is compared with is refused before the charge,
// wherever it meets the column.
func TestInvalidLiterals(t *testing.T) {
	pol := goldenPolicy(t)
	for _, tc := range []struct {
		sql     string
		refused bool
	}{
		{"SELECT count(*) FROM visits WHERE patient_id = 'x'", true},
		{"SELECT count(*) FROM visits WHERE patient_id IN ('1', '2.5')", true},
		{"SELECT count(*) FROM visits WHERE patient_id BETWEEN '1' AND '9'", false},
		{"SELECT count(*) FROM visits WHERE visit_date >= '2025-02-30'", true},
		{"SELECT count(*) FROM visits WHERE coalesce(visit_date, '2025-13-01') > '2025-01-01'", true},
		{"SELECT count(*) FROM visits WHERE visit_date >= '2025-02-28'", false},
		{"SELECT count(*) FROM visits WHERE department IN (SELECT name FROM departments WHERE floor = 'one')", true},
		{"SELECT count(*) FROM visits WHERE ('x', department) IN (SELECT floor, name FROM departments)", true},
		{"SELECT count(*) FROM visits WHERE ('3', department) IN (SELECT floor, name FROM departments)", false},
		// Beside an expression, the type is PostgreSQL's to choose.
		{"SELECT count(*) FROM visits WHERE patient_id + 1 = '7'", false},
		// So it is beside values of several types: an IN list and coalesce
		// take their common type (numeric here), BETWEEN compares twice.
		{"SELECT count(*) FROM visits WHERE patient_id IN ('1.5', 2.5)", false},
		{"SELECT count(*) FROM visits WHERE coalesce(patient_id, 2.5) = '1.5'", false},
		{"SELECT count(*) FROM visits WHERE 2.5 BETWEEN patient_id AND '1.5'", false},
		{"SELECT count(*) FROM visits WHERE patient_id IN ('x', 2)", true},
	} {
		_, err := Classify(tc.sql, pol)
		if refused := err != nil && pgerror.Code(err) == pgerror.CodeInvalidTextRepresentation; refused != tc.refused {
			t.Errorf("%s: %v; want refused as an invalid constant %v", tc.sql, err, tc.refused)
		}
	}
}

// TestParamTypes: the types wire checks bound values against are those
// PostgreSQL infers where the statement compares a parameter with values
// of one type; none elsewhere. A parameter number far beyond the bound
// values costs nothing, and a thousand linked parameters plan at once.
func TestParamTypes(t *testing.T) {
	pol := goldenPolicy(t)
	for _, tc := range []struct {
		sql  string
		want map[int32]string
	}{
		{"SELECT count(*) FROM visits WHERE patient_id > $1 AND department = $2", map[int32]string{1: "integer", 2: "text"}},
		{"SELECT count(*) FROM visits WHERE patient_id IN ($1, 2.5)", map[int32]string{}},
		{"SELECT count(*) FROM visits WHERE patient_id = $20000000", map[int32]string{20000000: "integer"}},
		{"SELECT count(*) FROM visits WHERE visit_date >= $1 AND visit_date < $2", map[int32]string{1: "date", 2: "date"}},
	} {
		stmts, err := Classify(tc.sql, pol)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if got := stmts[0].Plan.ParamTypes; len(got) != len(tc.want) || !maps.Equal(got, tc.want) {
			t.Errorf("%s: parameter types %v, want %v", tc.sql, got, tc.want)
		}
	}
	// A thousand comparisons of one parameter each, then a thousand
	// parameters in one IN list: each group is read on its own.
	var ors []string
	for i := 1; i <= 1000; i++ {
		ors = append(ors, fmt.Sprintf("patient_id = $%d", i))
	}
	stmts, err := Classify("SELECT count(*) FROM visits WHERE "+strings.Join(ors, " OR "), pol)
	if err != nil || len(stmts[0].Plan.ParamTypes) != 1000 {
		t.Fatalf("a thousand comparisons: %v", err)
	}
	var params []string
	for i := 1; i <= 1000; i++ {
		params = append(params, fmt.Sprintf("$%d", i))
	}
	stmts, err = Classify("SELECT count(*) FROM visits WHERE patient_id IN ("+strings.Join(params, ", ")+")", pol)
	if err != nil {
		t.Fatal(err)
	}
	if got := stmts[0].Plan.ParamTypes; len(got) != 1000 || got[1000] != "integer" {
		t.Errorf("a thousand parameters in one IN list: %d types, $1000 %q; want 1,000 integers", len(got), got[1000])
	}
}
