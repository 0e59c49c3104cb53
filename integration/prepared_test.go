package integration

import (
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/demo"
)

// TestPreparedUpstreamTypeChange: dpproxy prepares a repeated DP statement
// on its upstream connection (wire/prepared.go) from its second run. When a column's type
// changes under it, PostgreSQL refuses to run the prepared statement
// ("cached plan must not change result type"); the analyst must still get
// the answer, sent unprepared, and later statements prepared afresh.
func TestPreparedUpstreamTypeChange(t *testing.T) {
	ctx := testContext(t)
	db := demoCopy(t, ctx, "prepared_upstream")
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, `CREATE TABLE meters (reading integer);
		INSERT INTO meters SELECT g % 101 FROM generate_series(1, 1000) g;
		CREATE TABLE small_meters (reading integer);
		GRANT SELECT ON meters, small_meters TO `+demo.ReaderRole); err != nil {
		t.Fatal(err)
	}
	// One upstream connection, so every statement after the first two runs
	// on the connection that prepared it.
	p := startProxy(t, proxyOptions{upstreamDSN: strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname=prepared_upstream", 1),
		extraTables: metersTable, danaBudget: 100, maxConns: 1})
	conn := p.connect(t, ctx, "dana", danaPassword, false)
	// The exact sum is 49,950; ε 0.5 (dana's default) at sensitivity 100
	// gives about ±1,200, so ±10,000 fails only with a broken answer.
	sum := func(when string) {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, "SELECT sum(reading) FROM meters").Scan(&n); err != nil || n < 39950 || n > 59950 {
			t.Fatalf("%s: sum(reading) = %d, %v; want about 49,950", when, n, err)
		}
	}
	// pgx sends this one's $1 as a typed bound parameter (extended
	// protocol); dpproxy sends it on untyped and unprepared (dpparams.go),
	// so PostgreSQL reads it in the column's type, before and after.
	sumOver := func(when string, min int) {
		t.Helper()
		var n int64
		if err := conn.QueryRow(ctx, "SELECT sum(reading) FROM meters WHERE reading >= $1", min).Scan(&n); err != nil || n < 39950 || n > 59950 {
			t.Fatalf("%s: sum(reading) over %d = %d, %v; want about 49,950", when, min, n, err)
		}
	}
	// libpq-style: a bound value of unspecified type, which PostgreSQL
	// infers from the column on every run.
	countFrom := func(when, min string) {
		t.Helper()
		res := conn.PgConn().ExecParams(ctx, "SELECT count(*) FROM meters WHERE reading >= $1", [][]byte{[]byte(min)}, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			t.Fatalf("%s: count(*) from %s: %v, %d rows; want an answer", when, min, res.Err, len(res.Rows))
		}
	}
	for i := range 3 {
		sum("before the type change")
		sumOver("before the type change", -i)
		countFrom("before the type change", "0")
	}
	if _, err := db.Exec(ctx, `ALTER TABLE meters ALTER COLUMN reading TYPE bigint`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sum("after the type change")
		sumOver("after the type change", -i)
		countFrom("after the type change", "2147483647")
	}
	// The policy still calls the column integer (until the next catalog
	// read marks it, or the DBA reloads), so a value beyond integer's range
	// is refused before any charge (DP023), not failed after it.
	res := conn.PgConn().ExecParams(ctx, "SELECT count(*) FROM meters WHERE reading >= $1", [][]byte{[]byte("3000000000")}, nil, nil, nil).Read()
	if sqlstate(res.Err) != "22P02" {
		t.Errorf("a value beyond the declared integer: %v; want refused before the charge (22P02)", res.Err)
	}
	if logs := p.logs.String(); strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("the proxy logged a warning or an error:\n%s", logs)
	}
}
