package rewrite

import (
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
)

// TestUndeclaredColumnAmbiguity: a column the policy does not declare still
// takes part in PostgreSQL's name resolution, so an unqualified name that
// a declared column of one table and an undeclared one of another both
// answer is refused as ambiguous before the charge, as PostgreSQL would
// refuse it after.
func TestUndeclaredColumnAmbiguity(t *testing.T) {
	pol := goldenPolicy(t).WithUpstreamColumns(map[string]map[string]string{
		"public.visits":      {"patient_id": "", "department": "", "cost": "", "floor": ""},
		"public.departments": {"name": "", "floor": "", "building": "", "note": ""},
	})
	for _, tc := range []struct {
		sql       string
		ambiguous bool
	}{
		{"SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE floor > 1 GROUP BY 1", true},
		{"SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE d.floor > 1 GROUP BY 1", false},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name AND floor = v.patient_id", true},
		// A view that lists its columns is read as SELECT * of its table.
		{"SELECT d.building, count(*) FROM (SELECT patient_id, department FROM visits) v JOIN departments d ON v.department = d.name WHERE floor > 1 GROUP BY 1", true},
		{"WITH w AS (SELECT patient_id, department FROM visits) SELECT count(*) FROM w JOIN departments d ON w.department = d.name WHERE floor > 1", true},
		{"SELECT d.building, count(*) FROM (SELECT * FROM visits) v JOIN departments d ON v.department = d.name WHERE floor > 1 GROUP BY 1", true},
		// Undeclared on both sides: not declared, as before.
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE note = 'x'", false},
		{"SELECT count(*) FROM visits WHERE floor > 1", false},
	} {
		_, err := Classify(tc.sql, pol)
		if ambiguous := pgerror.Code(err) == "42702"; ambiguous != tc.ambiguous {
			t.Errorf("%s: %v; want ambiguous %v", tc.sql, err, tc.ambiguous)
		}
	}
}

// TestBlankPaddedJoin: a character(n) column compares with a varchar or
// text one ignoring trailing spaces, while the lookup's DISTINCT ON keeps
// 'x' and 'x ' apart, so one private row could match both: such joins are
// refused; two character(n) columns, or two of neither, join.
func TestBlankPaddedJoin(t *testing.T) {
	pol := goldenPolicy(t).WithUpstreamColumns(map[string]map[string]string{
		"public.visits":      {"department": "character(12)", "clinic": "text"},
		"public.departments": {"name": "character varying(20)", "building": "character(8)"},
	})
	for _, tc := range []struct {
		sql     string
		refused bool
	}{
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.clinic = d.building", true},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.department = d.building", false},
		{"SELECT count(*) FROM visits v JOIN departments d ON v.clinic = d.name", false},
	} {
		_, err := Classify(tc.sql, pol)
		if refused := err != nil && strings.Contains(err.Error(), "character(n)"); refused != tc.refused {
			t.Errorf("%s: %v; want refused %v", tc.sql, err, tc.refused)
		}
	}
}
