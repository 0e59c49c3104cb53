package rewrite

import (
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// TestCollations: columns of two different collations (other than the
// database default) are never compared, joined or matched against a
// subquery: PostgreSQL would fail on the first row it compares.
func TestCollations(t *testing.T) {
	pol := goldenPolicy(t).WithColumnTypes(nil, nil, map[string]string{
		"public.visits.clinic":      "950",   // "C"
		"public.departments.name":   "12345", // an ICU collation
		"public.departments.budget": "",
	})
	for _, tc := range []struct {
		sql     string
		refused bool
	}{
		{"SELECT count(*) FROM visits v JOIN departments d ON v.clinic = d.name", true},
		{"SELECT count(*) FROM visits WHERE clinic IN (SELECT name FROM departments)", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE lower(v.clinic) = d.name", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE coalesce(v.clinic, d.name) = 'x'", true},
		// the default collation yields to any other
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE v.clinic = d.building", false},
		{"SELECT count(*) FROM visits WHERE clinic = 'x' AND clinic IN (SELECT building FROM departments)", false},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name", false},
		// current_user and the like are names, collated "C".
		{"SELECT count(*) FROM visits WHERE clinic = current_user", false},
		{"SELECT count(*) FROM visits WHERE department IN (current_user, 'x')", false},
		{"SELECT count(*) FROM visits WHERE department IN (SELECT name FROM departments WHERE name = current_user)", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE lower(d.name) < session_user", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE coalesce(d.name, current_schema) = 'x'", true},
	} {
		_, err := Classify(tc.sql, pol)
		if refused := pgerror.Code(err) == "0A000"; refused != tc.refused {
			t.Errorf("%s: %v; want refused %v", tc.sql, err, tc.refused)
		}
	}
}
