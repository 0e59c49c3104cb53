package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// TestExecPrepared runs execPrepared and readOnlyRows on a real PostgreSQL:
// a text is prepared the second time a connection runs it and then only
// executed; a column type change falls back to the unprepared path and
// prepares again later; a $n without values, a name already taken and a
// statement the upstream lost (as a transaction-mode pooler does) are
// handled; and a connection holds at most maxPreparedPerConn statements.
func TestExecPrepared(t *testing.T) {
	ctx, connect := freshCluster(t)
	pc := connect()
	exec := func(sql string) {
		t.Helper()
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// preparedCount is what the backend itself holds.
	preparedCount := func() string {
		t.Helper()
		res, err := pc.Exec(ctx, "SELECT count(*) FROM pg_prepared_statements").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return string(res[0].Rows[0][0])
	}
	run := func(sql string, want error) [][][]byte {
		t.Helper()
		rows, err := execPrepared(ctx, pc, sql, execArgs{}, "")
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", sql, err, want)
		}
		return rows
	}
	fresh := func() {
		exec("DEALLOCATE ALL")
		delete(pc.CustomData(), preparedKey)
	}
	exec("CREATE TABLE readings (v integer); INSERT INTO readings SELECT g FROM generate_series(1, 100) g")
	const sumSQL = "SELECT sum(v) AS q0 FROM readings"

	run(sumSQL, errNotPrepared) // seen once: unprepared
	for i := range 3 {
		if rows := run(sumSQL, nil); len(rows) != 1 || string(rows[0][0]) != "5050" {
			t.Fatalf("run %d: %q; want 5050", i, rows)
		}
	}
	if n := preparedCount(); n != "1" {
		t.Fatalf("%s prepared statements upstream, want 1", n)
	}

	// sum(bigint) is numeric where sum(integer) was bigint: the prepared
	// statement's result type changed.
	exec("ALTER TABLE readings ALTER COLUMN v TYPE bigint")
	run(sumSQL, errNotPrepared)
	if n := preparedCount(); n != "0" {
		t.Fatalf("%s prepared statements upstream after the fallback, want the stale one deallocated", n)
	}
	if rows := run(sumSQL, nil); string(rows[0][0]) != "5050" {
		t.Fatalf("prepared again: %q; want 5050", rows)
	}

	exec("DEALLOCATE ALL")
	run(sumSQL, errLostPrepared)

	// The name is taken on this backend (another connection's statement,
	// reached through a pooler).
	fresh()
	run(sumSQL, errNotPrepared)
	exec("PREPARE " + keyOf(sumSQL).name() + " AS SELECT 1")
	run(sumSQL, errLostPrepared)

	// A $1 without a value is left to the unprepared path and takes no slot.
	fresh()
	const paramSQL = "SELECT count(*) AS q0 FROM readings WHERE v > $1"
	run(paramSQL, errNotPrepared)
	run(paramSQL, errNotPrepared)
	if n := preparedCount(); n != "0" {
		t.Fatalf("%s prepared statements upstream after a $1 without a value, want 0", n)
	}

	// An error of the statement itself is the statement's, not a fallback.
	var pge *pgconn.PgError
	const missing = "SELECT sum(v) AS q0 FROM no_such_table"
	run(missing, errNotPrepared)
	if _, err := execPrepared(ctx, pc, missing, execArgs{}, ""); !errors.As(err, &pge) || pge.Code != "42P01" {
		t.Fatalf("missing table: %v, want 42P01", err)
	}

	fresh()
	for i := range maxPreparedPerConn + 1 {
		sql := fmt.Sprintf("SELECT %d AS q0", i)
		run(sql, errNotPrepared)
		want := error(nil)
		if i == maxPreparedPerConn {
			want = errNotPrepared
		}
		run(sql, want)
	}
	if n := preparedCount(); n != fmt.Sprint(maxPreparedPerConn) {
		t.Fatalf("%s prepared statements upstream, want %d", n, maxPreparedPerConn)
	}

	// readOnlyRows answers a statement the upstream lost, unprepared, and
	// stops preparing, logging it once.
	fresh()
	var unprepared atomic.Bool
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for i := range 4 {
		if i == 2 {
			exec("DEALLOCATE ALL")
		}
		rows, err := readOnlyRows(ctx, pc, time.Minute, sumSQL, execArgs{}, "", nil, true, &unprepared, log)
		if err != nil || string(rows[0][0]) != "5050" {
			t.Fatalf("readOnlyRows run %d: %q, %v; want 5050", i, rows, err)
		}
	}
	if !unprepared.Load() || strings.Count(logs.String(), "level=WARN") != 1 {
		t.Fatalf("after a lost statement: unprepared %v, logs %q; want set and one warning", unprepared.Load(), logs.String())
	}

	// A plan's settings hold for its statement only (SET LOCAL), alone or
	// with a guard.
	const setting = "SELECT current_setting('enable_indexscan') AS q0"
	for _, guard := range []string{"", "SELECT true"} {
		rows, err := readOnlyRows(ctx, pc, time.Minute, setting, execArgs{}, guard, []string{"enable_indexscan = off"}, true, nil, log)
		if err != nil || string(rows[0][0]) != "off" {
			t.Fatalf("with the setting (guard %q): %q, %v; want off", guard, rows, err)
		}
		rows, err = readOnlyRows(ctx, pc, time.Minute, setting, execArgs{}, guard, nil, true, nil, log)
		if err != nil || string(rows[0][0]) != "on" {
			t.Fatalf("the next statement (guard %q): %q, %v; want on", guard, rows, err)
		}
	}
}

// TestExecPreparedParams: a statement with bound parameters is never
// prepared, typed or not, alone or guarded (its parameters go untyped, and
// a prepared statement would keep the types inferred once); a statement
// with a $n but no values is refused once for all.
func TestExecPreparedParams(t *testing.T) {
	ctx, connect := freshCluster(t)
	pc := connect()
	exec := execRows(t, ctx, pc)
	prepared := func() string {
		t.Helper()
		return string(exec("SELECT count(*) FROM pg_prepared_statements")[0][0])
	}
	exec("CREATE TABLE readings (v integer); INSERT INTO readings SELECT g FROM generate_series(1, 100) g")
	const countSQL = "SELECT count(*) AS q0 FROM readings WHERE v > $1"
	const guard = "SELECT pg_catalog.current_setting('transaction_isolation') = 'repeatable read'"
	for _, a := range []execArgs{
		{params: [][]byte{[]byte("90")}, paramOIDs: []uint32{23}},
		{params: [][]byte{{0, 0, 0, 0, 0, 0, 0, 95}}, paramFormats: []int16{1}, paramOIDs: []uint32{20}},
		{params: [][]byte{[]byte("90")}},
	} {
		for _, g := range []string{"", guard} {
			for range 3 {
				if _, err := execPrepared(ctx, pc, countSQL, a, g); !errors.Is(err, errNotPrepared) {
					t.Fatalf("%q (oids %v, guard %q): %v, want errNotPrepared", a.params, a.paramOIDs, g, err)
				}
			}
		}
	}
	if got := prepared(); got != "0" || pc.TxStatus() != 'I' {
		t.Fatalf("%s statements prepared after statements with parameters, status %q; want 0, idle", got, pc.TxStatus())
	}

	// A $n without a value is refused once, then not tried again.
	for range 3 {
		if _, err := execPrepared(ctx, pc, countSQL, execArgs{}, ""); !errors.Is(err, errNotPrepared) {
			t.Fatalf("$1 without a value: %v, want errNotPrepared", err)
		}
	}
	if _, ok := preparedOn(pc).refused[keyOf(countSQL)]; !ok || prepared() != "0" {
		t.Fatalf("a $n without a value: refused %v, %s prepared; want refused and 0", ok, prepared())
	}
}

// TestExecPreparedGuarded runs a guarded statement prepared on a real
// PostgreSQL: the statement and its guard go prepared in one REPEATABLE
// READ transaction; a guard that is false discards the rows; a result type
// change rolls the transaction back and falls back, leaving the connection
// idle; and readOnlyRows answers through each path.
func TestExecPreparedGuarded(t *testing.T) {
	ctx, connect := freshCluster(t)
	pc := connect()
	exec := execRows(t, ctx, pc)
	exec("CREATE TABLE readings (v integer CONSTRAINT v_bounds CHECK (v BETWEEN 0 AND 1000)); INSERT INTO readings SELECT g FROM generate_series(1, 100) g")
	const sumSQL = "SELECT sum(v) AS q0, pg_catalog.current_setting('transaction_isolation') AS iso FROM readings"
	const guard = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = 'v_bounds')"
	run := func(want error) [][][]byte {
		t.Helper()
		rows, err := execPrepared(ctx, pc, sumSQL, execArgs{}, guard)
		if !errors.Is(err, want) {
			t.Fatalf("execPrepared: %v, want %v", err, want)
		}
		if st := pc.TxStatus(); st != 'I' {
			t.Fatalf("connection left in transaction status %q", st)
		}
		return rows
	}
	prepared := func() string {
		t.Helper()
		return string(exec("SELECT count(*) FROM pg_prepared_statements")[0][0])
	}

	run(errNotPrepared) // seen once
	for i := range 2 {
		rows := run(nil)
		if len(rows) != 1 || string(rows[0][0]) != "5050" || string(rows[0][1]) != "repeatable read" {
			t.Fatalf("run %d: %q; want 5050 in a repeatable read transaction", i, rows)
		}
	}
	if n := prepared(); n != "2" {
		t.Fatalf("%s prepared statements upstream, want the statement and its guard", n)
	}

	exec("ALTER TABLE readings DROP CONSTRAINT v_bounds")
	run(errGuardFailed)
	exec("ALTER TABLE readings ADD CONSTRAINT v_bounds CHECK (v BETWEEN 0 AND 1000)")

	exec("ALTER TABLE readings ALTER COLUMN v TYPE bigint")
	run(errNotPrepared)
	if n := prepared(); n != "1" {
		t.Fatalf("%s prepared statements upstream after the type change, want only the guard", n)
	}
	if rows := run(nil); string(rows[0][0]) != "5050" {
		t.Fatalf("prepared again: %q; want 5050", rows)
	}

	// A guard lost alone is the guard's: the statement keeps its name.
	exec("DEALLOCATE " + keyOf(guard).name())
	run(errLostPrepared)
	if _, ok := preparedOn(pc).names[keyOf(sumSQL)]; !ok {
		t.Fatal("a lost guard dropped its statement's prepared name")
	}
	if _, ok := preparedOn(pc).names[keyOf(guard)]; ok {
		t.Fatal("a lost guard is still counted as prepared")
	}
	exec("DEALLOCATE ALL")
	delete(pc.CustomData(), preparedKey)

	// readOnlyRows: prepared, then unprepared once the upstream lost the
	// statements; the guard holds on both paths.
	var unprepared atomic.Bool
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range 4 {
		if i == 2 { // seen, then prepared; now lost
			exec("DEALLOCATE ALL")
		}
		rows, err := readOnlyRows(ctx, pc, time.Minute, sumSQL, execArgs{}, guard, nil, true, &unprepared, log)
		if err != nil || string(rows[0][0]) != "5050" {
			t.Fatalf("readOnlyRows run %d: %q, %v; want 5050", i, rows, err)
		}
	}
	if !unprepared.Load() {
		t.Fatal("a lost statement did not turn preparing off")
	}
	exec("ALTER TABLE readings DROP CONSTRAINT v_bounds")
	if _, err := readOnlyRows(ctx, pc, time.Minute, sumSQL, execArgs{}, guard, nil, true, &unprepared, log); !errors.Is(err, errGuardFailed) {
		t.Fatalf("unprepared, constraint dropped: %v, want errGuardFailed", err)
	}
}

// TestExecPreparedGuardedRenameSwap: the statement runs before its guard,
// so a rename swap committed while the statement waited for its table's
// lock makes both read the new table, and the guard, which finds no CHECK
// constraint there, fails. With the guard first it would vouch for the old
// table and the statement would then read the new one's unbounded rows.
func TestExecPreparedGuardedRenameSwap(t *testing.T) {
	ctx, connect := freshCluster(t)
	a, b := connect(), connect()
	exec := func(pc *pgconn.PgConn, sql string) {
		t.Helper()
		if _, err := pc.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(a, `CREATE TABLE meters (v integer CHECK (v BETWEEN 0 AND 100)); INSERT INTO meters VALUES (50);
		CREATE TABLE evil (v integer); INSERT INTO evil VALUES (100000000)`)
	const sumSQL = `SELECT sum(v) AS q0 FROM "public"."meters"`
	const guard = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
  WHERE conrelid = pg_catalog.to_regclass(E'"public"."meters"') AND contype = 'c')`
	for _, want := range []error{errNotPrepared, nil} { // prepared on the second run
		if _, err := execPrepared(ctx, a, sumSQL, execArgs{}, guard); !errors.Is(err, want) {
			t.Fatalf("warm-up: %v, want %v", err, want)
		}
	}

	exec(b, "BEGIN; ALTER TABLE meters RENAME TO old_meters; ALTER TABLE evil RENAME TO meters")
	type result struct {
		rows [][][]byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rows, err := execPrepared(ctx, a, sumSQL, execArgs{}, guard)
		done <- result{rows, err}
	}()
	time.Sleep(500 * time.Millisecond) // the statement now waits for b's lock
	exec(b, "COMMIT")
	if r := <-done; !errors.Is(r.err, errGuardFailed) {
		t.Fatalf("after a rename swap: rows %q, err %v; want errGuardFailed", r.rows, r.err)
	}
}

// TestExecPreparedGuardedSlots: a guarded statement is prepared only when
// the connection has slots for it and its guard, so a statement whose
// guard would not fit takes no slot it could never use.
func TestExecPreparedGuardedSlots(t *testing.T) {
	ctx, connect := freshCluster(t)
	pc := connect()
	for i := range maxPreparedPerConn - 1 {
		sql := fmt.Sprintf("SELECT %d AS q0", i)
		for _, want := range []error{errNotPrepared, nil} {
			if _, err := execPrepared(ctx, pc, sql, execArgs{}, ""); !errors.Is(err, want) {
				t.Fatalf("%s: %v, want %v", sql, err, want)
			}
		}
	}
	const sql, guard = "SELECT 1 AS q0, 'guarded' AS k0", "SELECT true"
	for i := range 3 {
		rows, err := execPrepared(ctx, pc, sql, execArgs{}, guard)
		if !errors.Is(err, errNotPrepared) || rows != nil {
			t.Fatalf("run %d with one slot left: %q, %v; want errNotPrepared", i, rows, err)
		}
	}
	if n := len(preparedOn(pc).names); n != maxPreparedPerConn-1 {
		t.Fatalf("%d statements prepared, want %d (the guarded one takes none)", n, maxPreparedPerConn-1)
	}
}

// freshCluster starts an empty PostgreSQL for one test and returns the
// test's context and a function connecting to it; the connections close,
// and the cluster stops, when the test ends.
func freshCluster(t *testing.T) (context.Context, func() *pgconn.PgConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c := testenv.StartCluster(ctx, t)
	return ctx, func() *pgconn.PgConn {
		t.Helper()
		pc, err := pgconn.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close(context.Background()) })
		return pc
	}
}

// execRows returns a function running sql on pc and returning the last
// result's rows, failing the test on an error.
func execRows(t *testing.T, ctx context.Context, pc *pgconn.PgConn) func(sql string) [][][]byte {
	return func(sql string) [][][]byte {
		t.Helper()
		res, err := pc.Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return res[len(res)-1].Rows
	}
}
