package rewrite

import (
	"encoding/json"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TestVerifyGroupsWithoutChoice: a unit-level GROUP BY without the random
// choice of groups passes the verifier only while the per-unit query's own
// WHERE limits every key to a list of at most MaxGroups combinations.
func TestVerifyGroupsWithoutChoice(t *testing.T) {
	plan := goldenPlan(t, "SELECT status, count(DISTINCT patient_id) FROM claims WHERE amount > 10 GROUP BY status")
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

// TestVerifyPerUnitLayout: the per-unit query must be exactly the unit,
// the keys and aggregates, grouped by the unit and the keys, and the rank
// must be per unit; an extra grouping column would split a unit's
// contribution into more clamped pieces than the sensitivity allows.
func TestVerifyPerUnitLayout(t *testing.T) {
	pol := goldenPolicy(t)
	for _, sql := range []string{
		// count(DISTINCT unit) keeps pre-aggregation (useSampling)
		"SELECT status, count(DISTINCT patient_id) FROM claims GROUP BY status",             // no choice of groups
		"SELECT status, kind, count(DISTINCT patient_id) FROM claims GROUP BY status, kind", // random choice of groups
	} {
		stmts, err := Classify(sql, pol)
		if err != nil {
			t.Fatal(err)
		}
		plan := stmts[0].Plan
		perUnitGroup := "GROUP BY 1, 2)"
		if strings.Contains(sql, "kind") {
			perUnitGroup = "GROUP BY 1, 2, 3)"
		}
		extraCol := strings.Replace(strings.Replace(plan.SQL, "count(*) AS a0", "count(*) AS a0, amount AS kx", 1), perUnitGroup, strings.TrimSuffix(perUnitGroup, ")")+", 4)", 1)
		cases := []struct {
			name, sql string
			ok        bool
		}{
			{"as planned", plan.SQL, true},
			{"an extra per-unit group column", extraCol, false},
			{"an extra per-unit key", strings.Replace(plan.SQL, "status AS k0,", "status AS k0, kind AS kx,", 1), false},
		}
		if strings.Contains(plan.SQL, "dp_rank") {
			cases = append(cases, struct {
				name, sql string
				ok        bool
			}{"rank per group, not per unit", strings.Replace(plan.SQL, "PARTITION BY dp_unit", "PARTITION BY k0", 1), false})
		} else {
			cases = append(cases, struct {
				name, sql string
				ok        bool
			}{"the domain filter on another column's name", strings.Replace(plan.SQL, "status IN (", "claims.kind IN (", 1), false})
		}
		for _, tc := range cases {
			if tc.sql == plan.SQL && tc.name != "as planned" {
				t.Fatalf("%s: the tampering did not apply to %s", tc.name, plan.SQL)
			}
			err := verifyRewritten(tc.sql, plan.sc, plan)
			if (err == nil) != tc.ok {
				t.Errorf("%s / %s: verify = %v, want ok %v\n%s", sql, tc.name, err, tc.ok, tc.sql)
			}
		}
	}
}

// TestVerifySampled: a row-sampled GROUP BY (useSampling) passes the
// verifier only while each unit's rows are numbered in random order per
// unit and at most max_rows_per_unit of them are kept.
func TestVerifySampled(t *testing.T) {
	type tampering struct{ name, from, to string }
	for _, c := range []struct {
		name, query, shape string
		sampled            int
		tamperings         []tampering
	}{
		{"table", "SELECT status, kind, count(*), avg(amount) FROM claims WHERE amount > 10 GROUP BY status, kind", "WHERE dp_rank <= 4", 4, []tampering{
			{"more rows per unit", "WHERE dp_rank <= 4", "WHERE dp_rank <= 40"},
			{"no limit", " WHERE dp_rank <= 4", ""},
			{"a limit on another column", "WHERE dp_rank <= 4", "WHERE amount <= 4"},
			{"a limit and more", "WHERE dp_rank <= 4", "WHERE dp_rank <= 4 OR kind = 'dental'"},
			{"numbered per group", `PARTITION BY "claims"."patient_id"`, `PARTITION BY "claims"."status"`},
			{"numbered in value order", "ORDER BY random()", "ORDER BY amount"},
			{"numbered in value order after random", "ORDER BY random()", "ORDER BY random(), amount"},
			{"a running count", "row_number()", "count(*)"},
			{"a column instead of the rows", "SELECT *,", "SELECT status, kind, amount,"},
			{"another alias", `) AS "claims" WHERE`, `) AS "c" WHERE`},
			{"a disallowed condition inside", "WHERE (amount > 10)", "WHERE (amount::float8 > 10)"},
			{"an unclamped sum outside", "sum(LEAST(GREATEST(amount, 0), 1000))", "sum(amount)"},
			{"the unit's name given to another column", `FROM "public"."claims" AS "claims" WHERE`, `FROM "public"."claims" AS "claims"(status, patient_id) WHERE`},
		}},
		// Sampled before a join to a public table.
		{"join", "SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name WHERE v.cost > 10 GROUP BY 1", `) AS "v" JOIN `, 5, []tampering{
			{"more rows per unit", "WHERE dp_rank <= 5 AND", "WHERE dp_rank <= 50 AND"},
			{"the limit ORed away", "WHERE dp_rank <= 5 AND", "WHERE dp_rank <= 5 OR"},
			{"the limit not first", "WHERE dp_rank <= 5 AND d.building IN ('east', 'north', 'south')", "WHERE d.building IN ('east', 'north', 'south') AND dp_rank <= 5"},
			{"numbered per department", `PARTITION BY "v"."patient_id"`, `PARTITION BY "v"."department"`},
			{"the public table sampled instead", `) AS "v" JOIN (SELECT DISTINCT ON ("name") * FROM "public"."departments") AS "d"`, `) AS "v" JOIN "public"."departments" AS "d"`},
			{"a disallowed condition inside", "WHERE (v.cost > 10)", "WHERE (v.cost::float8 > 10)"},
			{"a condition on the public table inside", "WHERE (v.cost > 10)", "WHERE (d.floor > 10)"},
			{"another table inside", `FROM "public"."visits" AS "v" WHERE`, `FROM "public"."claims" AS "v" WHERE`},
			{"deduplicated on more than the join", `DISTINCT ON ("name")`, `DISTINCT ON ("name", "floor")`},
			{"a join that is not an equality of columns", "ON v.department = d.name", "ON v.department = ANY(ARRAY[d.name])"},
			{"a private table joined on the unit", `JOIN (SELECT DISTINCT ON ("name") * FROM "public"."departments") AS "d" ON v.department = d.name`,
				`JOIN "public"."claims" AS "d" ON v.patient_id = d.patient_id`},
			{"the public table's rows computed", `(SELECT DISTINCT ON ("name") * FROM`, `(SELECT DISTINCT ON ("name") *, 1 AS z FROM`},
			{"the public table's rows ordered and limited", `FROM "public"."departments")`, `FROM "public"."departments" ORDER BY name LIMIT 2)`},
			{"the public table's columns renamed inside", `FROM "public"."departments")`, `FROM "public"."departments" AS x(floor, name))`},
			{"the public table's columns renamed outside", `FROM "public"."departments") AS "d"`, `FROM "public"."departments") AS "d"(floor, name)`},
			// The filter to rows with a match (joinFilters) reads a public
			// table; another private table's rows would decide which of a
			// unit's rows are kept.
			{"rows filtered by a private table", `SELECT "d"."name" FROM "public"."departments" AS "d"`, `SELECT "d"."department" FROM "public"."visits" AS "d"`},
			{"rows filtered by another unit's rows", `"v"."department" IN (SELECT "d"."name" FROM "public"."departments" AS "d" WHERE d.building IN ('east', 'north', 'south'))`,
				`"v"."patient_id" IN (SELECT "x"."patient_id" FROM "public"."claims" AS "x")`},
			{"a filter correlated with the sampled row", `WHERE d.building IN ('east', 'north', 'south'))) AS "v"`, `WHERE d.floor > v.cost)) AS "v"`},
			{"a filter reading a private table through a WITH", `IN (SELECT "d"."name" FROM`,
				`IN (WITH x AS MATERIALIZED (SELECT patient_id FROM public.visits) SELECT "d"."name" FROM`},
		}},
		// Sampled before a join on two columns: a row IN filter.
		{"join on two columns", "SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name AND d.floor = v.patient_id WHERE d.floor > 1 GROUP BY 1",
			`("v"."department", "v"."patient_id") IN (SELECT "d"."name", "d"."floor" FROM`, 5, []tampering{
				{"rows filtered by a private table", `SELECT "d"."name", "d"."floor" FROM "public"."departments" AS "d"`, `SELECT "d"."department", "d"."patient_id" FROM "public"."visits" AS "d"`},
				{"a filter correlated with the sampled row", `WHERE (d.floor > 1) AND d.building IN ('east', 'north', 'south'))) AS "v"`, `WHERE (d.floor > v.cost) AND d.building IN ('east', 'north', 'south'))) AS "v"`},
				{"a computed column in the filter", `SELECT "d"."name", "d"."floor" FROM`, `SELECT "d"."name", "d"."floor" + 0 FROM`},
				{"a row longer than the subquery's", `("v"."department", "v"."patient_id") IN`, `("v"."department", "v"."patient_id", "v"."cost") IN`},
				{"an ordered and limited filter", `IN ('east', 'north', 'south'))) AS "v"`, `IN ('east', 'north', 'south') ORDER BY 1 LIMIT 1)) AS "v"`},
			}},
		// Sampled through a view of the table.
		{"view", "SELECT department, count(*) FROM (SELECT * FROM visits WHERE cost > 10) AS v GROUP BY 1", `FROM (SELECT * FROM "public"."visits" AS "visits" WHERE cost > 10) AS "v"`, 5, []tampering{
			{"a view of another table", `FROM (SELECT * FROM "public"."visits" AS "visits" WHERE`, `FROM (SELECT * FROM "public"."claims" AS "visits" WHERE`},
			{"a view with a disallowed condition", "WHERE cost > 10) AS", "WHERE cost::float8 > 10) AS"},
			{"a view under another name", `WHERE cost > 10) AS "v" WHERE`, `WHERE cost > 10) AS "w" WHERE`},
			{"a view that computes", `(SELECT * FROM "public"."visits" AS "visits" WHERE cost > 10)`, `(SELECT *, 1 AS one FROM "public"."visits" AS "visits" WHERE cost > 10)`},
			{"a view that limits", `WHERE cost > 10) AS "v"`, `WHERE cost > 10 LIMIT 3) AS "v"`},
			{"a view renaming the table's columns", `"public"."visits" AS "visits" WHERE`, `"public"."visits" AS "visits"(patient_id, visit_id) WHERE`},
			{"a view renaming its columns", `WHERE cost > 10) AS "v" WHERE`, `WHERE cost > 10) AS "v"(patient_id, visit_id) WHERE`},
		}},
	} {
		plan := goldenPlan(t, c.query)
		if plan.Sampled != c.sampled || plan.MaxGroups != 1 || !strings.Contains(plan.SQL, c.shape) {
			t.Fatalf("want a plan sampling %d rows per unit, got %d: %s", c.sampled, plan.Sampled, plan.SQL)
		}
		for _, tc := range c.tamperings {
			checkTampering(t, plan, c.name+", "+tc.name, tc.from, tc.to)
		}
		if err := verifyRewritten(plan.SQL, plan.sc, plan); err != nil {
			t.Errorf("%s as planned: %v", c.query, err)
		}
	}
}

// checkTampering replaces from by to in the plan's SQL and requires the
// verifier to refuse the result.
func checkTampering(t *testing.T, plan *Plan, name, from, to string) {
	t.Helper()
	tampered := strings.Replace(plan.SQL, from, to, 1)
	if tampered == plan.SQL {
		t.Fatalf("%s: the tampering did not apply to %s", name, plan.SQL)
	}
	if err := verifyRewritten(tampered, plan.sc, plan); err == nil {
		t.Errorf("%s: verified\n%s", name, tampered)
	}
}

// TestGuardSQLQuoting: the names in the unique-unit guard reach PostgreSQL
// exactly, quotes and backslashes included (the parser decodes the string
// constants as the server would).
func TestGuardSQLQuoting(t *testing.T) {
	u := &UniqueUnit{Schema: `we'ird\s`, Name: `t"x`, Column: `c'\`}
	tree, err := pg_query.ParseToJSON(u.GuardSQL())
	if err != nil {
		t.Fatalf("guard does not parse: %v\n%s", err, u.GuardSQL())
	}
	for _, want := range []string{`"we'ird\s"."t""x"`, `c'\`} {
		js, _ := json.Marshal(want)
		if !strings.Contains(tree, `"sval":`+string(js)) {
			t.Errorf("guard does not carry the string %s:\n%s", want, tree)
		}
	}
}

// TestVerifyProvenBounds: an unclamped column verifies only while the plan
// carries the guard of a proof the policy holds.
func TestVerifyProvenBounds(t *testing.T) {
	pol := goldenPolicy(t)
	for _, sql := range []string{
		"SELECT sum(value), avg(temp) FROM readings",
		"SELECT kind, avg(bytes) FROM uploads GROUP BY kind",
	} {
		stmts, err := Classify(sql, pol)
		if err != nil {
			t.Fatal(err)
		}
		plan := stmts[0].Plan
		if len(plan.ProvenBounds) == 0 || strings.Contains(plan.SQL, "LEAST(GREATEST(value") || !strings.Contains(plan.Guard, "pg_constraint") {
			t.Fatalf("%s: want unclamped columns and a guard, got %+v\n%s", sql, plan.ProvenBounds, plan.SQL)
		}
		unguarded := *plan
		unguarded.ProvenBounds = nil
		wrongProof := *plan
		wrongProof.ProvenBounds = append([]ProvenBound(nil), plan.ProvenBounds...)
		wrongProof.ProvenBounds[0].Exprs = []string{"(value >= 0)"}
		for _, tc := range []struct {
			name string
			plan *Plan
			ok   bool
		}{
			{"as planned", plan, true},
			{"no guard", &unguarded, false},
			{"a proof the policy does not hold", &wrongProof, false},
		} {
			err := verifyRewritten(plan.SQL, plan.sc, tc.plan)
			if (err == nil) != tc.ok {
				t.Errorf("%s / %s: verify = %v, want ok %v", sql, tc.name, err, tc.ok)
			}
		}
	}
	// A column without a proof is refused unclamped even with a guard.
	stmts, err := Classify("SELECT sum(level) FROM readings", pol)
	if err != nil {
		t.Fatal(err)
	}
	plan := stmts[0].Plan
	bare := strings.Replace(plan.SQL, "LEAST(GREATEST(level, 0), 10)", "level", 1)
	if bare == plan.SQL {
		t.Fatalf("no clamp to remove in %s", plan.SQL)
	}
	plan.ProvenBounds = []ProvenBound{{Table: "public.readings", Schema: "public", Name: "readings", Column: "level", Exprs: []string{"((level >= 0) AND (level <= 10))"}}}
	if err := verifyRewritten(bare, plan.sc, plan); err == nil {
		t.Errorf("an unproven column verified unclamped: %s", bare)
	}
}

// sqlEdit replaces old by new in a planned statement.
type sqlEdit struct{ name, old, new string }

// checkEdits verifies the plan of query as planned, then checks that the
// verifier refuses each edit of its SQL (an edit that finds nothing to
// replace fails the test).
func checkEdits(t *testing.T, query string, edits ...sqlEdit) {
	t.Helper()
	plan := goldenPlan(t, query)
	if err := verifyRewritten(plan.SQL, plan.sc, plan); err != nil {
		t.Fatalf("%s: as planned: %v\n%s", query, err, plan.SQL)
	}
	for _, e := range edits {
		sql := strings.Replace(plan.SQL, e.old, e.new, 1)
		if sql == plan.SQL {
			t.Fatalf("%s: %q not in %s", e.name, e.old, plan.SQL)
		}
		if err := verifyRewritten(sql, plan.sc, plan); err == nil {
			t.Errorf("%s: verified\n%s", e.name, sql)
		}
	}
}

// goldenPlan is the plan of sql under the golden policy.
func goldenPlan(t *testing.T, sql string) *Plan {
	t.Helper()
	stmts, err := Classify(sql, goldenPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	return stmts[0].Plan
}

// TestVerifyCentred: a sum the plan centres after the query must sum the
// column its count counts, over the same rows (the same FILTER, and NULL
// skipped when the clamp would turn it into the lower bound), clamped to
// bounds centred on the midpoint and within the sensitivity.
func TestVerifyCentred(t *testing.T) {
	checkEdits(t, "SELECT avg(age) FILTER (WHERE sex = 'M') FROM patients",
		sqlEdit{"NULL not skipped", " AND age IS NOT NULL", ""},
		sqlEdit{"IS NULL", "age IS NOT NULL", "age IS NULL"},
		sqlEdit{"another column's NULL", "age IS NOT NULL", "income IS NOT NULL"},
		sqlEdit{"another column summed", "LEAST(GREATEST(age, 0), 100)", "LEAST(GREATEST(income, 0), 100)"},
		sqlEdit{"count without the filter", "count(age) FILTER (WHERE sex = 'M')", "count(age)"},
		sqlEdit{"another filter", "(sex = 'M') AND", "(sex = 'F') AND"},
		sqlEdit{"centred in SQL too", "LEAST(GREATEST(age, 0), 100))", "LEAST(GREATEST(age, 0), 100) - 50)"},
		sqlEdit{"wider clamp", "LEAST(GREATEST(age, 0), 100)", "LEAST(GREATEST(age, (-100000)), 100000)"},
		sqlEdit{"unclamped", "sum(LEAST(GREATEST(age, 0), 100))", "sum(age)"},
		sqlEdit{"clamp off centre", "LEAST(GREATEST(age, 0), 100)", "LEAST(GREATEST(age, 20), 120)"})
	checkEdits(t, "SELECT avg(value) FROM readings", // value is proven
		sqlEdit{"an unproven column unclamped", "sum(value)", "sum(level)"})
	checkEdits(t, "SELECT sum(value), avg(value) FROM readings",
		sqlEdit{"count of another column", "count(value)", "count(level)"})
}

// TestVerifyPerUnitCoalesce: a per-unit sum is COALESCE(sum, 0) (a unit
// with nothing to sum adds 0, not the outer clamp's lower bound); anything
// but 0 there is refused.
func TestVerifyPerUnitCoalesce(t *testing.T) {
	checkEdits(t, "SELECT avg(cost) FROM visits",
		sqlEdit{"another constant", "IS NOT NULL), 0) AS a0", "IS NOT NULL), 1000000) AS a0"},
		sqlEdit{"a column", "IS NOT NULL), 0) AS a0", "IS NOT NULL), cost) AS a0"})
}

// TestVerifyExpressionNullFilter: the NULL filter on an aggregated
// expression is accepted only as the last conjunct, IS NOT NULL, over an
// expression that raises no data-dependent error.
func TestVerifyExpressionNullFilter(t *testing.T) {
	filter := "FILTER (WHERE (CASE WHEN sex = 'F' THEN LEAST(GREATEST(age::numeric, 0), 100) END) IS NOT NULL)"
	edit := func(name, new string) sqlEdit { return sqlEdit{name, filter, new} }
	checkEdits(t, "SELECT avg(CASE WHEN sex = 'F' THEN age END) FROM patients",
		edit("IS NULL", "FILTER (WHERE (CASE WHEN sex = 'F' THEN LEAST(GREATEST(age::numeric, 0), 100) END) IS NULL)"),
		edit("a volatile function", "FILTER (WHERE (random()) IS NOT NULL)"),
		edit("a division by a column", "FILTER (WHERE (100 / age) IS NOT NULL)"),
		edit("a narrowing cast", "FILTER (WHERE LEAST(GREATEST(income::int2, 0), 100) IS NOT NULL)"),
		edit("an int4 product", "FILTER (WHERE LEAST(GREATEST(income, 0), 250000) * LEAST(GREATEST(income, 0), 250000) IS NOT NULL)"),
		edit("an int4 division", "FILTER (WHERE LEAST(GREATEST(income, -2147483648), 5) / -1 IS NOT NULL)"),
		edit("not last", "FILTER (WHERE (CASE WHEN sex = 'F' THEN LEAST(GREATEST(age::numeric, 0), 100) END) IS NOT NULL AND sex = 'F')"))
}

// TestVerifyUnsafeArithmetic: the planner makes a division in a condition
// safe (by NULLIF(col, 0)); the verifier refuses the raw division, which
// would raise an error, visible to the analyst, on a row holding 0.
func TestVerifyUnsafeArithmetic(t *testing.T) {
	checkEdits(t, "SELECT count(*) FROM patients WHERE 100 / age > 1",
		sqlEdit{"a raw division by a column", "trunc(100::numeric / (NULLIF(age::numeric, 0))) > 1", "100 / age > 1"})
}

// TestSampledRankName: when the table has a column named dp_rank upstream,
// the sampling ranks as dp_rank_2, and the verifier requires the outer
// limit to read the rank, not the table's column.
func TestSampledRankName(t *testing.T) {
	pol := goldenPolicy(t).WithUpstreamColumns(map[string]map[string]string{"public.claims": {"dp_rank": ""}, "public.visits": {"dp_rank_2": ""}})
	stmts, err := Classify("SELECT status, count(*) FROM claims GROUP BY status", pol)
	if err != nil {
		t.Fatal(err)
	}
	plan := stmts[0].Plan
	if !strings.Contains(plan.SQL, "AS dp_rank_2 FROM") || !strings.Contains(plan.SQL, "WHERE dp_rank_2 <= 4") {
		t.Fatalf("want the rank named dp_rank_2: %s", plan.SQL)
	}
	if err := verifyRewritten(plan.SQL, plan.sc, plan); err != nil {
		t.Fatalf("as planned: %v", err)
	}
	checkTampering(t, plan, "the table's own dp_rank as the limit", "WHERE dp_rank_2 <= 4", "WHERE dp_rank <= 4")
	checkTampering(t, plan, "the table's own dp_rank as the rank", "AS dp_rank_2 FROM", "AS dp_rank FROM")
	// Another table's columns do not rename this one's rank.
	stmts, err = Classify("SELECT department, count(*) FROM visits GROUP BY 1", pol)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stmts[0].Plan.SQL, "AS dp_rank FROM") {
		t.Fatalf("want the rank named dp_rank: %s", stmts[0].Plan.SQL)
	}
	// A joined lookup table's columns are seen by the outer filter too.
	pol = goldenPolicy(t).WithUpstreamColumns(map[string]map[string]string{"public.departments": {"dp_rank": ""}})
	stmts, err = Classify("SELECT d.building, count(*) FROM visits v JOIN departments d ON v.department = d.name GROUP BY 1", pol)
	if err != nil {
		t.Fatal(err)
	}
	plan = stmts[0].Plan
	if !strings.Contains(plan.SQL, "AS dp_rank_2 FROM") || !strings.Contains(plan.SQL, "WHERE dp_rank_2 <= 5") {
		t.Fatalf("want the rank named dp_rank_2 beside a lookup table's dp_rank: %s", plan.SQL)
	}
	if err := verifyRewritten(plan.SQL, plan.sc, plan); err != nil {
		t.Fatalf("as planned: %v", err)
	}
	checkTampering(t, plan, "the lookup table's dp_rank as the limit", "WHERE dp_rank_2 <= 5", "WHERE dp_rank <= 5")
}
