package integration

import (
	"context"
	"errors"
	"os"
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
// sees it in the query's own snapshot and discards the answer with DP008
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
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=proven_bounds", 1), extraTables: metersTable, danaBudget: 100})
	conn, _ := p.connectWithNotices(t, ctx, "dana", danaPassword, false)

	explain := func(table string) string { return explainText(t, ctx, conn, "SELECT sum(reading) FROM "+table) }
	if plan := explain("meters"); !strings.Contains(plan, "sum(reading) AS q0") || !strings.Contains(plan, "unclamped: public.meters.reading") {
		t.Fatalf("plan with the CHECK constraint in place is clamped:\n%s", plan)
	}
	// A table under 2 MiB is cheaper to clamp than to re-check.
	if plan := explain("small_meters"); !strings.Contains(plan, "LEAST(GREATEST(reading, 0), 100)") {
		t.Fatalf("plan over a small table with the same constraint is not clamped:\n%s", plan)
	}
	sum := func() (int64, error) {
		var n int64
		err := conn.QueryRow(ctx, "SELECT sum(reading) FROM meters").Scan(&n)
		return n, err
	}
	// The exact sum is 4,999,950 (100,000 readings, g % 101; a table large
	// enough for proven bounds, wire/bounds.go); ε 0.5 at sensitivity 100
	// gives about ±1,200.
	if n, err := sum(); err != nil || n < 4990000 || n > 5010000 {
		t.Fatalf("sum(reading) = %d, %v; want about 4,999,950", n, err)
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
