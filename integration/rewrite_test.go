package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Tolerances: a discrete Laplace of scale b exceeds t in absolute value with
// probability at most 2e^{-t/b}; t = 19.2b makes that below 1e-8 per check,
// and this file makes fewer than 100 such checks, so a correct proxy fails it
// with probability below 1e-6.
func tol(b float64) float64 { return math.Ceil(19.2 * b) }

// dpRows runs a DP query and returns its rows as maps, and its field types.
func dpRows(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) ([]map[string]any, []uint32) {
	t.Helper()
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var types []uint32
	for _, f := range rows.FieldDescriptions() {
		types = append(types, f.DataTypeOID)
	}
	var out []map[string]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for i, f := range rows.FieldDescriptions() {
			m[f.Name] = vals[i]
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out, types
}

func num(t *testing.T, v any) float64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case float64:
		return x
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			t.Fatalf("numeric %v: %v", x, err)
		}
		return f.Float64
	}
	t.Fatalf("not a number: %T %v", v, v)
	return 0
}

// leftOf parses "X of Y left" from SHOW dp.budget.
func leftOf(t *testing.T, s string) float64 {
	t.Helper()
	var left, total float64
	if _, err := fmt.Sscanf(s, "%g of %g left", &left, &total); err != nil {
		t.Fatalf("dp.budget %q: %v", s, err)
	}
	return left
}

func exactConn(t *testing.T, ctx context.Context) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exactMap(t *testing.T, ctx context.Context, sql string) map[string]float64 {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var k string
		var v float64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		out[k] = v
	}
	return out
}

func TestRepresentativeQueries(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 200})
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
		t.Fatal(err)
	}

	t.Run("count with WHERE", func(t *testing.T) {
		want := float64(exact(t, ctx, "SELECT count(*) FROM patients WHERE age > 40"))
		for range 3 {
			rows, types := dpRows(t, ctx, conn, "SELECT count(*) FROM patients WHERE age > 40")
			if len(rows) != 1 || types[0] != 20 {
				t.Fatalf("rows %v types %v", rows, types)
			}
			if got := num(t, rows[0]["count"]); math.Abs(got-want) > tol(1) {
				t.Errorf("count %v, exact %v", got, want)
			}
		}
	})

	t.Run("GROUP BY public domain with avg", func(t *testing.T) {
		counts := exactMap(t, ctx, "SELECT sex, count(*) FROM patients GROUP BY sex")
		avgs := exactMap(t, ctx, "SELECT sex, avg(age) FROM patients GROUP BY sex")
		for range 3 {
			rows, types := dpRows(t, ctx, conn, "SELECT sex, count(*), avg(age) FROM patients GROUP BY sex ORDER BY sex")
			if len(rows) != 2 || types[0] != 25 || types[1] != 20 || types[2] != 1700 {
				t.Fatalf("rows %v types %v", rows, types)
			}
			for _, r := range rows {
				sex := r["sex"].(string)
				c := num(t, r["count"])
				tc := tol(3) // three quantities share ε = 1; count sensitivity 1
				if math.Abs(c-counts[sex]) > tc {
					t.Errorf("%s: count %v, exact %v", sex, c, counts[sex])
				}
				ts := tol(150) // centred sum: sensitivity 50 at ε/3
				bound := (ts + math.Abs(avgs[sex]-50)*tc) / (counts[sex] - tc)
				if a := num(t, r["avg"]); math.Abs(a-avgs[sex]) > bound {
					t.Errorf("%s: avg %v, exact %v, bound %v", sex, a, avgs[sex], bound)
				}
			}
		}
	})

	t.Run("privacy unit: clamped per-unit sum", func(t *testing.T) {
		// The bound the policy implies: each patient's total within
		// max_rows_per_unit (10) x [0, 5000], each visit within [0, 5000].
		want := float64(exact(t, ctx, `SELECT round(sum(LEAST(GREATEST(s, 0), 50000)))::bigint FROM
			(SELECT patient_id, sum(LEAST(GREATEST(cost, 0), 5000)) AS s FROM visits GROUP BY 1) u`))
		rows, types := dpRows(t, ctx, conn, "SELECT sum(cost) FROM visits")
		if types[0] != 1700 {
			t.Errorf("sum(numeric) type %d, want numeric", types[0])
		}
		if got := num(t, rows[0]["sum"]); math.Abs(got-want) > tol(50000) {
			t.Errorf("sum %v, exact bounded %v", got, want)
		}
	})

	t.Run("privacy unit: distinct units per group with group bounding", func(t *testing.T) {
		raw := exactMap(t, ctx, "SELECT department, count(DISTINCT patient_id) FROM visits GROUP BY 1")
		// Patients in more than max_groups_per_unit (3) departments lose
		// some of them at random: the answer may fall short by at most
		// their number.
		excess := float64(exact(t, ctx, "SELECT count(*) FROM (SELECT patient_id FROM visits GROUP BY 1 HAVING count(DISTINCT department) > 3) x"))
		rows, _ := dpRows(t, ctx, conn, "SELECT department, count(DISTINCT patient_id) AS patients FROM visits GROUP BY department")
		if len(rows) != 5 {
			t.Fatalf("got %d departments, want the 5 of the public domain", len(rows))
		}
		for _, r := range rows {
			d := r["department"].(string)
			got := num(t, r["patients"])
			if got > raw[d]+tol(3) || got < raw[d]-excess-tol(3) {
				t.Errorf("%s: %v units, raw %v, excess %v", d, got, raw[d], excess)
			}
		}
	})

	t.Run("empty groups of a public domain are answered", func(t *testing.T) {
		rows, _ := dpRows(t, ctx, conn, "SELECT department, count(*) FROM visits WHERE department = 'oncology' GROUP BY department")
		if len(rows) != 5 {
			t.Fatalf("got %d groups, want 5", len(rows))
		}
		for _, r := range rows {
			// count sensitivity: 10 rows x 3 groups per unit = 30 at ε 1.
			if d := r["department"].(string); d != "oncology" && num(t, r["count"]) > tol(30) {
				t.Errorf("empty group %s answered %v", d, r["count"])
			}
		}
	})

	t.Run("partition selection releases large groups", func(t *testing.T) {
		counts := exactMap(t, ctx, "SELECT zip, count(*) FROM patients GROUP BY zip")
		rows, _ := dpRows(t, ctx, conn, "SELECT zip, count(*) FROM patients GROUP BY zip")
		if len(rows) != len(counts) {
			t.Errorf("released %d of %d groups of about 2000 patients each", len(rows), len(counts))
		}
		for _, r := range rows {
			z := r["zip"].(string)
			if got := num(t, r["count"]); math.Abs(got-counts[z]) > tol(2) {
				t.Errorf("zip %s: %v, exact %v", z, got, counts[z])
			}
		}
	})

	t.Run("HAVING ORDER BY LIMIT after noise", func(t *testing.T) {
		rows, _ := dpRows(t, ctx, conn, "SELECT diagnosis, count(*) AS n FROM patients GROUP BY 1 HAVING count(*) > 100 ORDER BY n DESC LIMIT 1")
		if len(rows) != 1 || rows[0]["diagnosis"] != "hypertension" {
			t.Errorf("top diagnosis: %v (hypertension leads by thousands)", rows)
		}
	})

	t.Run("derived key date_trunc over the policy's public date range", func(t *testing.T) {
		// visit_date's range [2024-01-01, 2026-01-01) makes the years a
		// public domain: both are answered without spending delta.
		rows, types := dpRows(t, ctx, conn, "SELECT date_trunc('year', visit_date) AS y, count(*) FROM patients GROUP BY 1 ORDER BY 1")
		if types[0] != 1114 || len(rows) != 2 {
			t.Fatalf("types %v rows %v", types, rows)
		}
		if y, ok := rows[0]["y"].(time.Time); !ok || y.Year() != 2024 {
			t.Errorf("first year %v", rows[0]["y"])
		}
	})

	t.Run("DP median and mode", func(t *testing.T) {
		want := float64(exact(t, ctx, "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY age) FROM patients"))
		rows, types := dpRows(t, ctx, conn, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY age) AS median, mode() WITHIN GROUP (ORDER BY diagnosis) AS top FROM patients")
		if types[0] != 701 || types[1] != 25 {
			t.Errorf("types %v, want float8 and text", types)
		}
		// Buckets of 100/64 years; a bucket whose rank range is hundreds of
		// rows from n/2 has utility below -100 and is chosen with
		// probability below 64 e^{-100 x 0.25} (ε/2 each, sensitivity 1).
		if got := num(t, rows[0]["median"]); math.Abs(got-want) > 2*100.0/64 {
			t.Errorf("median %v, exact %v", got, want)
		}
		if rows[0]["top"] != "hypertension" {
			t.Errorf("mode %v, want hypertension (leads by about 3,800)", rows[0]["top"])
		}
	})

	t.Run("median on a privacy-unit table", func(t *testing.T) {
		var want float64
		if err := exactConn(t, ctx).QueryRow(ctx, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY cost)::float8 FROM visits").Scan(&want); err != nil {
			t.Fatal(err)
		}
		rows, _ := dpRows(t, ctx, conn, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY cost) AS median FROM visits")
		// Buckets of 5000/64 = 78.1; each unit's counts are scaled to at
		// most 10 rows, which shifts the median by little on this data. A
		// bucket with utility below -1000 (10 units' worth of rows times
		// 100) is chosen with probability below 64 e^{-1000/(2·10)} at ε 1.
		if got := num(t, rows[0]["median"]); math.Abs(got-want) > 3*5000.0/64 {
			t.Errorf("median %v, exact %v", got, want)
		}
	})

	t.Run("stddev from noisy moments", func(t *testing.T) {
		var want float64
		if err := exactConn(t, ctx).QueryRow(ctx, "SELECT stddev(age)::float8 FROM patients").Scan(&want); err != nil {
			t.Fatal(err)
		}
		rows, types := dpRows(t, ctx, conn, "SELECT stddev(age) FROM patients")
		// Three quantities at ε/3: the sum of squares (sensitivity 2500) is
		// off by at most tol(7500) ≈ 144,000, i.e. 3.6 on a variance near
		// 400 over 40,000 rows, which moves the stddev by about 0.1.
		if got := num(t, rows[0]["stddev"]); types[0] != 1700 || math.Abs(got-want) > 0.5 {
			t.Errorf("stddev %v (type %d), exact %v", got, types[0], want)
		}
	})

	t.Run("sum of a bounded expression", func(t *testing.T) {
		want := float64(exact(t, ctx, "SELECT count(*) FROM patients WHERE age > 60"))
		rows, types := dpRows(t, ctx, conn, "SELECT sum(CASE WHEN age > 60 THEN 1 ELSE 0 END) AS seniors FROM patients")
		// Bounds [0, 1] by interval arithmetic: sensitivity 1 at ε = 1.
		if got := num(t, rows[0]["seniors"]); types[0] != 20 || math.Abs(got-want) > tol(1) {
			t.Errorf("seniors %v (type %d), exact %v", got, types[0], want)
		}
	})

	t.Run("accuracy-first: dp.target_error picks the smallest epsilon", func(t *testing.T) {
		if _, err := conn.Exec(ctx, "SET dp.target_error = 50"); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(ctx, "RESET dp.target_error")
		var before, after string
		if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&before); err != nil {
			t.Fatal(err)
		}
		rows, _ := dpRows(t, ctx, conn, "SELECT count(*) FROM patients WHERE age > 40")
		if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&after); err != nil {
			t.Fatal(err)
		}
		// ±50 at 95% for a count needs ε ≈ ln(20)/50 ≈ 0.06, far below 1.
		spent := leftOf(t, before) - leftOf(t, after)
		if spent <= 0.03 || spent >= 0.1 {
			t.Errorf("target ±50 spent epsilon %v, want about 0.06", spent)
		}
		want := float64(exact(t, ctx, "SELECT count(*) FROM patients WHERE age > 40"))
		if got := num(t, rows[0]["count"]); math.Abs(got-want) > tol(1/0.05) {
			t.Errorf("count %v, exact %v", got, want)
		}
		if _, err := conn.Exec(ctx, "SET dp.target_error = 0.001"); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(ctx, "SELECT count(*) FROM patients WHERE age > 40")
		var pge *pgconn.PgError
		if !errors.As(err, &pge) || pge.Code != "22023" {
			t.Errorf("unreachable target: %v, want 22023", err)
		}
	})

	t.Run("arithmetic in WHERE keeps integer division and cannot fail", func(t *testing.T) {
		// Upstream, income / age raises division by zero for newborns
		// (age 0); through the proxy those rows simply do not match.
		want := float64(exact(t, ctx, "SELECT count(*) FROM patients WHERE age > 0 AND income / age > 1000"))
		rows, _ := dpRows(t, ctx, conn, "SELECT count(*) FROM patients WHERE income / age > 1000")
		if got := num(t, rows[0]["count"]); math.Abs(got-want) > tol(1) {
			t.Errorf("count %v, exact %v", got, want)
		}
	})

	t.Run("BI-style subquery and CTE views of a private table", func(t *testing.T) {
		want := float64(exact(t, ctx, "SELECT count(*) FROM patients WHERE age >= 18 AND sex = 'F'"))
		for _, sql := range []string{
			`SELECT count(*) AS n FROM (SELECT "public"."patients"."sex" AS "sex", "public"."patients"."age" AS "age" FROM "public"."patients") "source" WHERE "source"."age" >= 18 AND "source"."sex" = 'F'`,
			`WITH adults AS (SELECT * FROM patients WHERE age >= 18) SELECT count(*) AS n FROM adults WHERE sex = 'F'`,
		} {
			rows, _ := dpRows(t, ctx, conn, sql)
			if got := num(t, rows[0]["n"]); math.Abs(got-want) > tol(1) {
				t.Errorf("%s: %v, exact %v", sql, got, want)
			}
		}
	})

	t.Run("public lookup tables are read free", func(t *testing.T) {
		var before, after string
		_ = conn.QueryRow(ctx, "SHOW dp.budget").Scan(&before)
		rows, _ := dpRows(t, ctx, conn, "SELECT name, floor FROM departments ORDER BY name")
		_ = conn.QueryRow(ctx, "SHOW dp.budget").Scan(&after)
		if len(rows) != 5 || rows[0]["name"] != "cardiology" || before != after {
			t.Errorf("departments: %v; budget %q then %q", rows, before, after)
		}
	})

	t.Run("no delta budget refuses partition selection", func(t *testing.T) {
		bob := p.connect(t, ctx, "bob", "bob-demo", false)
		_, err := bob.Exec(ctx, "SELECT zip, count(*) FROM patients GROUP BY zip")
		var pge *pgconn.PgError
		if !errors.As(err, &pge) || pge.Code != "42501" || pge.Hint == "" {
			t.Errorf("got %v, want 42501 with a hint", err)
		}
	})
}

// TestExplainChargesNothing: EXPLAIN of a DP query shows dpproxy's plan and
// costs nothing; EXPLAIN ANALYZE is refused.
func TestExplainChargesNothing(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	conn := p.connect(t, ctx, "alice", alicePassword, false)
	var before, after string
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&before); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "EXPLAIN SELECT sex, avg(age) FROM patients GROUP BY sex")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	rows.Close()
	text := strings.Join(lines, "\n")
	if rows.FieldDescriptions()[0].Name != "QUERY PLAN" || !strings.Contains(text, "discrete Laplace scale") || !strings.Contains(text, "cost: epsilon 0.5") {
		t.Errorf("EXPLAIN output:\n%s", text)
	}
	if err := conn.QueryRow(ctx, "SHOW dp.budget").Scan(&after); err != nil || after != before {
		t.Errorf("budget %q before EXPLAIN, %q after (%v)", before, after, err)
	}
	_, err = conn.Exec(ctx, "EXPLAIN ANALYZE SELECT count(*) FROM patients")
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "42501" {
		t.Errorf("EXPLAIN ANALYZE: %v, want 42501", err)
	}
}

// TestJoinWithPublicTable: a private table joined to a public lookup table,
// grouped by a public column. Each visit matches one department (the public
// side is deduplicated on its join column), so counts match the raw join.
func TestJoinWithPublicTable(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 10})
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
		t.Fatal(err)
	}
	want := exactMap(t, ctx, "SELECT d.building, count(DISTINCT v.patient_id) FROM visits v JOIN departments d ON v.department = d.name GROUP BY 1")
	excess := float64(exact(t, ctx, "SELECT count(*) FROM (SELECT v.patient_id FROM visits v JOIN departments d ON v.department = d.name GROUP BY 1 HAVING count(DISTINCT d.building) > 3) x"))
	rows, _ := dpRows(t, ctx, conn, "SELECT d.building, count(DISTINCT v.patient_id) AS patients FROM visits v JOIN departments d ON v.department = d.name GROUP BY d.building")
	// buildings: no public domain in the demo policy, so partition selection
	// releases the three large groups (thousands of patients each).
	if len(rows) != len(want) {
		t.Fatalf("got %d buildings, want %d: %v", len(rows), len(want), rows)
	}
	for _, r := range rows {
		b := r["building"].(string)
		// count(DISTINCT unit): sensitivity 3 groups per unit, ε/2 (the other
		// half selects partitions): scale 6.
		if got := num(t, r["patients"]); got > want[b]+tol(6) || got < want[b]-excess-tol(6) {
			t.Errorf("%s: %v, exact %v", b, got, want[b])
		}
	}
}

// TestShadowTable: `dpproxy shadow refresh` fills the pre-bounded copy of
// visits (at most 10 random visits per patient), and queries over visits are
// then answered from it with row-level SQL and sensitivities at the row
// bound. Tolerance: count sensitivity 10 at ε 1/3 (three quantities), scale
// 30, tol(30) — below 1e-8 per check.
func TestShadowTable(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 10, shadowVisits: true})
	admin := exactConn(t, ctx)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS dpproxy_shadow CASCADE") })
	// Before the first refresh there is no copy: refused, and not charged.
	early := p.connect(t, ctx, "carol", carolPassword, false)
	var before, after string
	_ = early.QueryRow(ctx, "SHOW dp.budget").Scan(&before)
	_, err := early.Exec(ctx, "SELECT count(*) FROM visits")
	_ = early.QueryRow(ctx, "SHOW dp.budget").Scan(&after)
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "0A000" || !strings.Contains(pge.Message, "does not exist yet") || before != after {
		t.Fatalf("query before the first refresh: %v; budget %q then %q", err, before, after)
	}
	refresh := exec.CommandContext(ctx, binary, "shadow", "refresh", "--policy", p.policyPath, "--dsn", pg.AdminDSN(), "--reader", "dpproxy_reader")
	refresh.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+pg.ReaderDSN())
	if out, err := refresh.CombinedOutput(); err != nil {
		t.Fatalf("shadow refresh: %v\n%s", err, out)
	}
	var over int64
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM (SELECT patient_id FROM dpproxy_shadow.public__visits GROUP BY 1 HAVING count(*) > 10) x").Scan(&over); err != nil || over != 0 {
		t.Fatalf("shadow copy has %d patients over the row bound (%v)", over, err)
	}
	want := exactMap(t, ctx, "SELECT department, count(*) FROM dpproxy_shadow.public__visits GROUP BY 1")
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
		t.Fatal(err)
	}
	var plan []string
	rows, err := conn.Query(ctx, "EXPLAIN SELECT department, count(*), avg(cost) FROM visits GROUP BY department")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var l string
		_ = rows.Scan(&l)
		plan = append(plan, l)
	}
	rows.Close()
	if !strings.Contains(strings.Join(plan, "\n"), "dpproxy_shadow") {
		t.Fatalf("plan does not read the shadow copy:\n%s", strings.Join(plan, "\n"))
	}
	got, _ := dpRows(t, ctx, conn, "SELECT department, count(*), avg(cost) FROM visits GROUP BY department")
	if len(got) != 5 {
		t.Fatalf("%d departments, want 5", len(got))
	}
	for _, r := range got {
		d := r["department"].(string)
		if c := num(t, r["count"]); math.Abs(c-want[d]) > tol(30) {
			t.Errorf("%s: %v, exact on the copy %v", d, c, want[d])
		}
	}
	// A copy bounded under another policy (here one with 50 rows per
	// patient, refreshed before the proxy reloaded it) is not read: its
	// rows would exceed the plan's sensitivities. Refused, not charged.
	if _, err := admin.Exec(ctx, "COMMENT ON TABLE dpproxy_shadow.public__visits IS 'dpproxy shadow of public.visits: unit patient_id, max_rows_per_unit 50'"); err != nil {
		t.Fatal(err)
	}
	_ = conn.QueryRow(ctx, "SHOW dp.budget").Scan(&before)
	_, err = conn.Exec(ctx, "SELECT count(*) FROM visits")
	_ = conn.QueryRow(ctx, "SHOW dp.budget").Scan(&after)
	if !errors.As(err, &pge) || pge.Code != "0A000" || !strings.Contains(pge.Message, "not made under the policy in force") || before != after {
		t.Errorf("query over a copy bounded by 50 rows per patient: %v; budget %q then %q", err, before, after)
	}
	if _, err := admin.Exec(ctx, "COMMENT ON TABLE dpproxy_shadow.public__visits IS NULL"); err != nil {
		t.Fatal(err)
	}
	if _, err = conn.Exec(ctx, "SELECT count(*) FROM visits"); !errors.As(err, &pge) || !strings.Contains(pge.Message, "no record of how it was bounded") {
		t.Errorf("query over a copy without its comment: %v; want refused", err)
	}
	// A refresh under another bound that commits after the check before
	// the charge, while the statement waits for the copy: the guard in the
	// statement's own transaction discards the answer.
	const bound = "dpproxy shadow of public.visits: unit patient_id, max_rows_per_unit 10"
	if _, err := admin.Exec(ctx, "COMMENT ON TABLE dpproxy_shadow.public__visits IS '"+bound+"'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM visits"); err != nil {
		t.Fatalf("query over the copy with its comment restored: %v", err)
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "COMMENT ON TABLE dpproxy_shadow.public__visits IS 'dpproxy shadow of public.visits: unit patient_id, max_rows_per_unit 50'"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE dpproxy_shadow.public__visits IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT count(*) FROM visits")
		done <- err
	}()
	waiting := exactConn(t, ctx)
	for {
		var n int
		if err := waiting.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'dpproxy_shadow.public__visits'::regclass").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the statement did not wait for the refresh: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.As(err, &pge) || !strings.Contains(pge.Message, "the bound recorded on the shadow copy") || !strings.Contains(pge.Message, "discarded") {
		t.Errorf("query that read a copy refreshed under another bound: %v; want the answer discarded by the guard", err)
	}
}

// TestSchemaQualifiedColumns: BI tools (Metabase among them) name columns
// schema.table.column when a table has no alias. The rewritten SQL gives
// every table an alias, beside which PostgreSQL refuses that form, so the
// statements failed upstream after their charge (DP008); dpproxy now
// writes them as table.column.
func TestSchemaQualifiedColumns(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 10})
	conn := p.connect(t, ctx, "carol", carolPassword, false)
	for _, sql := range []string{
		`SELECT count(*) AS "count" FROM "public"."visits" WHERE "public"."visits"."cost" > 10`,
		`SELECT count(*) AS "count" FROM "public"."visits" WHERE "public"."visits"."department" IN (SELECT "name" FROM "public"."departments")`,
		`SELECT "public"."departments"."building" AS "building", count(*) AS "count" FROM "public"."visits"
			JOIN "public"."departments" ON "public"."visits"."department" = "public"."departments"."name"
			GROUP BY "public"."departments"."building" ORDER BY "public"."departments"."building" ASC`,
	} {
		if rows, _ := dpRows(t, ctx, conn, sql); len(rows) == 0 {
			t.Errorf("%s: no rows", sql)
		}
	}
}
