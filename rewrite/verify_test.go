package rewrite

import (
	"strings"
	"testing"
)

// TestVerifyGroupsWithoutChoice: a unit-level GROUP BY without the random
// choice of groups passes the verifier only while the per-unit query's own
// WHERE limits every key to a list of at most MaxGroups combinations.
func TestVerifyGroupsWithoutChoice(t *testing.T) {
	pol := goldenPolicy(t)
	stmts, err := Classify("SELECT status, count(*) FROM claims WHERE amount > 10 GROUP BY status", pol)
	if err != nil {
		t.Fatal(err)
	}
	plan := stmts[0].Plan
	if strings.Contains(plan.SQL, "dp_rank") || plan.MaxGroups != 2 {
		t.Fatalf("want a plan without the choice of groups and max groups 2, got %d: %s", plan.MaxGroups, plan.SQL)
	}
	filter := "status IN ('open', 'closed')"
	if !strings.Contains(plan.SQL, filter) {
		t.Fatalf("no domain filter in %s", plan.SQL)
	}
	for _, tc := range []struct {
		name, sql string
		ok        bool
	}{
		{"as planned", plan.SQL, true},
		{"no domain filter", strings.Replace(plan.SQL, " AND "+filter, "", 1), false},
		{"three values", strings.Replace(plan.SQL, filter, "status IN ('open', 'closed', 'other')", 1), false},
		{"NOT IN", strings.Replace(plan.SQL, filter, "status NOT IN ('open', 'closed')", 1), false},
		{"OR", strings.Replace(plan.SQL, " AND "+filter, " OR "+filter, 1), false},
		{"a list with a column", strings.Replace(plan.SQL, filter, "status IN ('open', kind)", 1), false},
	} {
		err := verifyRewritten(tc.sql, plan.sc, plan)
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify = %v, want ok %v\n%s", tc.name, err, tc.ok, tc.sql)
		}
	}
}
