package integration

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/demo"
)

// metersTable is a row-level table whose reading column has a CHECK
// constraint upstream matching its policy bounds.
const metersTable = `  - name: meters
    privacy: row
    columns:
      - {name: reading, type: integer, bounds: [0, 100]}
  - name: small_meters
    privacy: row
    columns:
      - {name: reading, type: integer, bounds: [0, 100]}
`

// TestProvenBoundsSkipClamping: a column of a large enough table whose CHECK constraint upstream
// keeps it within its bounds is summed unclamped, with the same answer
// (every value is within bounds) and the same noise. When the constraint is
// dropped and an out-of-range row inserted, the next statement's guard
// (prepared upstream with the statement by then) sees it in the query's own snapshot and discards the answer with DP008
// (the huge row never reaches an answer), and the statements after it clamp
// again.
func TestProvenBoundsSkipClamping(t *testing.T) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "proven_bounds")
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE meters (reading integer CHECK (reading BETWEEN 0 AND 100));
		INSERT INTO meters SELECT g % 101 FROM generate_series(1, 100000) g;
		CREATE TABLE small_meters (reading integer CHECK (reading BETWEEN 0 AND 100));
		INSERT INTO small_meters SELECT g % 101 FROM generate_series(1, 1000) g;
		GRANT SELECT ON meters, small_meters TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	// One upstream connection, so the repeated statement below is prepared
	// on it with its guard (wire/prepared.go) and the guard that fails runs
	// prepared (TestExecPreparedGuarded checks that path on its own).
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=proven_bounds", 1), extraTables: metersTable, danaBudget: 100, maxConns: 1})
	conn, _ := p.connectWithNotices(t, ctx, "dana", danaPassword, false)

	explain := func(table string) string { return explainText(t, ctx, conn, "SELECT sum(reading) FROM "+table) }
	if plan := explain("meters"); !strings.Contains(plan, "sum(reading) AS q0") || !strings.Contains(plan, "unclamped: public.meters.reading") {
		t.Fatalf("plan with the CHECK constraint in place is clamped:\n%s", plan)
	}
	// A table under 2 MiB is cheaper to clamp than to re-check.
	if plan := explain("small_meters"); !strings.Contains(plan, "LEAST(GREATEST(reading, 0), 100)") {
		t.Fatalf("plan over a small table with the same constraint is not clamped:\n%s", plan)
	}
	// The offline explain has no catalog; with --upstream it reads it as
	// serve does.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "--policy", p.policyPath, "SELECT sum(reading) FROM meters"}, "LEAST(GREATEST(reading, 0), 100)"},
		{[]string{"explain", "--upstream", "--policy", p.policyPath, "SELECT sum(reading) FROM meters"}, "unclamped: public.meters.reading"},
	} {
		cmd := exec.CommandContext(ctx, binary, tc.args...)
		cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=proven_bounds", 1))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("dpproxy %s: %v; want %q in:\n%s", strings.Join(tc.args[:2], " "), err, tc.want, out)
		}
	}
	sum := func() (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, "SELECT sum(reading) FROM meters").Scan(&n)
		return n, err
	}
	// The exact sum is 4,999,950 (100,000 readings, g % 101; a table large
	// enough for proven bounds, wire/bounds.go); ε 0.5 at sensitivity 100
	// gives about ±1,200.
	for i := range 3 {
		if n, err := sum(); err != nil || n < 4990000 || n > 5010000 {
			t.Fatalf("sum(reading), run %d = %d, %v; want about 4,999,950", i, n, err)
		}
	}

	if _, err := db.Exec(ctx, `ALTER TABLE meters DROP CONSTRAINT meters_reading_check; INSERT INTO meters VALUES (100000000)`); err != nil {
		t.Fatal(err)
	}
	_, err := sum()
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "58000" || !regexp.MustCompile(`CHECK constraints keeping public\.meters\.reading within its bounds.*no longer holds upstream`).MatchString(pge.Message) {
		t.Fatalf("first statement after dropping the constraint: %v, want DP008 about the CHECK constraint", err)
	}
	if plan := explain("meters"); !strings.Contains(plan, "LEAST(GREATEST(reading, 0), 100)") || strings.Contains(plan, "unclamped") {
		t.Fatalf("plan after the constraint was dropped is not clamped:\n%s", plan)
	}
	// Clamped again: the 100,000,000 row adds at most 100.
	if n, err := sum(); err != nil || n < 4990000 || n > 5010000 {
		t.Fatalf("sum(reading) after the drop = %d, %v; want about 5,000,050 (the huge row clamped)", n, err)
	}
}

// TestProvenBoundsForeignPartition: PostgreSQL copies a partitioned
// table's CHECK constraint to a foreign partition, marked valid, but never
// enforces it there. A partitioned table with a foreign partition is
// clamped; attaching one after the proxy proved the bounds makes the next
// query's guard fail (DP008) before anything is released.
func TestProvenBoundsForeignPartition(t *testing.T) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "proven_bounds_fdw")
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
		CREATE TABLE meters (k integer, reading integer CHECK (reading BETWEEN 0 AND 100)) PARTITION BY RANGE (k);
		CREATE TABLE meters_1 PARTITION OF meters FOR VALUES FROM (0) TO (10);
		INSERT INTO meters SELECT g % 10, g % 101 FROM generate_series(1, 1000) g;
		GRANT SELECT ON meters TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=proven_bounds_fdw", 1), extraTables: metersTable, danaBudget: 100})
	conn, _ := p.connectWithNotices(t, ctx, "dana", danaPassword, false)
	plan := func() string { return explainText(t, ctx, conn, "SELECT sum(reading) FROM meters") }
	if pl := plan(); !strings.Contains(pl, "unclamped: public.meters.reading") {
		t.Fatalf("partitioned table with only regular partitions is clamped:\n%s", pl)
	}
	// The file holds one row, reading 1000000, far outside the bounds.
	if _, err := db.Exec(ctx, `COPY (SELECT 15, 1000000) TO '/tmp/dpproxy_fdw_`+strconv.Itoa(os.Getpid())+`.csv' (FORMAT csv);
		CREATE FOREIGN TABLE meters_2 PARTITION OF meters FOR VALUES FROM (10) TO (20) SERVER files
		  OPTIONS (filename '/tmp/dpproxy_fdw_`+strconv.Itoa(os.Getpid())+`.csv', format 'csv');
		GRANT pg_read_server_files TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/tmp/dpproxy_fdw_" + strconv.Itoa(os.Getpid()) + ".csv") })
	var n int64
	err := conn.QueryRow(ctx, "SELECT sum(reading) FROM meters").Scan(&n)
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "58000" || !strings.Contains(pge.Message, "CHECK constraints keeping public.meters.reading") {
		t.Fatalf("sum over a table with a foreign partition: %d, %v; want DP008", n, err)
	}
	if pl := plan(); strings.Contains(pl, "unclamped") {
		t.Fatalf("after a foreign partition was attached the plan is still unclamped:\n%s", pl)
	}
}

// explainText is dpproxy's EXPLAIN of sql, one string.
func explainText(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) string {
	t.Helper()
	rows, _ := conn.Query(ctx, "EXPLAIN "+sql)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// ordersTable is a privacy-unit table answered from its shadow copy.
const ordersTable = `  - name: orders
    privacy: unit
    unit: buyer
    max_rows_per_unit: 5
    max_groups_per_unit: 1
    shadow: true
    columns:
      - {name: buyer, type: integer}
      - {name: amount, type: numeric, bounds: [0, 1000], granularity: 0.01}
`

// TestShadowProvenBounds: `dpproxy shadow refresh` clamps the copy's
// bounded columns and adds CHECK constraints saying so; the proxy, on first
// seeing the copy, reads them and sums the copy unclamped, with the same
// answer as the clamped sum. The guard checks the copy, not the source: a
// constraint dropped from the copy and an out-of-range row added there
// fail the next statement (DP008) before anything is released.
func TestShadowProvenBounds(t *testing.T) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "shadow_bounds")
	defer db.Close(ctx)
	// 150,000 orders of 30,000 buyers (5 each: the copy keeps them all, and
	// is large enough for proven bounds); amounts from -100 to 1,100, so
	// the copy has values to clamp on both sides.
	if _, err := db.Exec(ctx, `CREATE TABLE orders (buyer integer, amount numeric(10,2));
		INSERT INTO orders SELECT g % 30000, CASE WHEN g % 97 = 0 THEN NULL ELSE (g % 1201) - 100 + 0.25 END FROM generate_series(1, 150000) g;
		GRANT SELECT ON orders TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=shadow_bounds", 1)
	p := startProxy(t, proxyOptions{upstreamDSN: dsn, extraTables: ordersTable, danaBudget: 100})
	refresh := exec.CommandContext(ctx, binary, "shadow", "refresh", "--policy", p.policyPath,
		"--dsn", strings.Replace(pg.AdminDSN(), "dbname=demo", "dbname=shadow_bounds", 1), "--reader", demo.ReaderRole)
	refresh.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+dsn)
	if out, err := refresh.CombinedOutput(); err != nil {
		t.Fatalf("shadow refresh: %v\n%s", err, out)
	}
	var lo, hi float64
	var checks, nulls int
	if err := db.QueryRow(ctx, `SELECT min(amount), max(amount), count(*) - count(amount), (SELECT count(*) FROM pg_constraint
		WHERE conrelid = 'dpproxy_shadow.public__orders'::regclass AND contype = 'c') FROM dpproxy_shadow.public__orders`).Scan(&lo, &hi, &nulls, &checks); err != nil {
		t.Fatal(err)
	}
	if lo != 0 || hi != 1000 || checks != 1 || nulls != 150000/97 {
		t.Fatalf("shadow copy: amounts in [%v, %v], %d NULL, %d CHECK constraints; want [0, 1000], %d and 1", lo, hi, nulls, checks, 150000/97)
	}
	var want float64 // the exact avg of the clamped amounts, NULLs skipped
	if err := db.QueryRow(ctx, "SELECT (avg(LEAST(GREATEST(amount, 0), 1000)) FILTER (WHERE amount IS NOT NULL))::float8 FROM orders").Scan(&want); err != nil {
		t.Fatal(err)
	}

	conn, _ := p.connectWithNotices(t, ctx, "dana", danaPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
		t.Fatal(err)
	}
	avg := func() (float64, error) {
		var a float64
		err := conn.QueryRow(ctx, "SELECT avg(amount) FROM orders").Scan(&a)
		return a, err
	}
	// The first statement finds the copy and reads its constraints; it is
	// itself planned before that, clamped.
	if _, err := avg(); err != nil {
		t.Fatal(err)
	}
	plan := explainText(t, ctx, conn, "SELECT avg(amount) FROM orders")
	if !strings.Contains(plan, "unclamped: dpproxy_shadow.public__orders.amount") || strings.Contains(plan, "LEAST(GREATEST(amount") {
		t.Fatalf("plan over the refreshed copy clamps:\n%s", plan)
	}
	// ε 1 over two quantities: the centred sum (sensitivity 5 × 500) gets
	// Laplace noise of scale 5,000, over 150,000 values; the count
	// (sensitivity 5) of scale 10: the avg moves by 1 with a chance near
	// e^-30.
	if a, err := avg(); err != nil || math.Abs(a-want) > 1 {
		t.Fatalf("avg(amount) from the unclamped copy = %v, %v; exact %v", a, err, want)
	}

	if _, err := db.Exec(ctx, `ALTER TABLE dpproxy_shadow.public__orders DROP CONSTRAINT dp_bounds;
		INSERT INTO dpproxy_shadow.public__orders VALUES (1, 100000000)`); err != nil {
		t.Fatal(err)
	}
	_, err := avg()
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "58000" || !strings.Contains(pge.Message, "dpproxy_shadow.public__orders.amount") {
		t.Fatalf("first statement after dropping the copy's constraint: %v, want DP008 about it", err)
	}
	if plan := explainText(t, ctx, conn, "SELECT avg(amount) FROM orders"); !strings.Contains(plan, "LEAST(GREATEST(amount") {
		t.Fatalf("plan after the copy's constraint was dropped is not clamped:\n%s", plan)
	}
}

// TestClampSkipsNull: the clamp would turn a NULL into the lower bound
// (GREATEST ignores NULL); sums and averages skip NULL rows as PostgreSQL's
// do. Half the scores are NULL and the others 150, bounds [100, 200]: a
// NULL summed as 100 would make the sum 12.5 million instead of 7.5, and
// the average 200 (250, capped) instead of 150.
func TestClampSkipsNull(t *testing.T) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "clamp_nulls")
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE scores (s integer);
		INSERT INTO scores SELECT CASE WHEN g % 2 = 0 THEN NULL ELSE 150 END FROM generate_series(1, 100000) g;
		CREATE TABLE buys (buyer integer, amt integer);
		INSERT INTO buys SELECT g % 20000, CASE WHEN g % 2 = 0 THEN NULL ELSE 150 END FROM generate_series(1, 40000) g;
		GRANT SELECT ON scores, buys TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=clamp_nulls", 1), danaBudget: 100,
		extraTables: "  - name: scores\n    privacy: row\n    columns:\n      - {name: s, type: integer, bounds: [100, 200]}\n" +
			"  - name: buys\n    privacy: unit\n    unit: buyer\n    max_rows_per_unit: 2\n    max_groups_per_unit: 1\n    columns:\n" +
			"      - {name: buyer, type: integer}\n      - {name: amt, type: integer, bounds: [100, 200]}\n"})
	conn, _ := p.connectWithNotices(t, ctx, "dana", danaPassword, false)
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
		t.Fatal(err)
	}
	// ε 1/3 per quantity: the sum's noise has scale 600, the avg's centred
	// sum scale 150 over 50,000 values; the bounds below are e^-33 away.
	var sum, avg float64
	if err := conn.QueryRow(ctx, "SELECT sum(s)::float8, avg(s)::float8 FROM scores").Scan(&sum, &avg); err != nil {
		t.Fatal(err)
	}
	if math.Abs(sum-7500000) > 20000 || math.Abs(avg-150) > 1 {
		t.Fatalf("sum %v and avg %v over 50,000 scores of 150 and 50,000 NULLs; want about 7,500,000 and 150", sum, avg)
	}
	// Conditional aggregation: the CASE is NULL where the condition does
	// not hold (ε 1/2 each for the centred sum and the count).
	if err := conn.QueryRow(ctx, "SELECT avg(CASE WHEN s > 0 THEN s END)::float8 FROM scores").Scan(&avg); err != nil {
		t.Fatal(err)
	}
	if math.Abs(avg-150) > 1 {
		t.Fatalf("avg(CASE WHEN s > 0 THEN s END) = %v; want about 150", avg)
	}
	// Per unit: 10,000 buyers with two amounts of 150, 10,000 with two
	// NULLs. A buyer with only NULLs has a NULL per-unit sum, which must add
	// nothing (the outer clamp would make it -2 × 50, and the avg 100).
	// ε 1/2 per quantity: the centred sum's noise has scale 200 over 20,000
	// values, the count's scale 4.
	if err := conn.QueryRow(ctx, "SELECT avg(amt)::float8 FROM buys").Scan(&avg); err != nil {
		t.Fatal(err)
	}
	if math.Abs(avg-150) > 1 {
		t.Fatalf("avg %v over 10,000 buyers of two 150s and 10,000 of two NULLs; want about 150", avg)
	}
}
