package wire

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/internal/pgcluster"
)

// TestExecPrepared runs execPrepared on a real PostgreSQL: a statement is
// prepared once and then only executed; a column type change falls back
// to the unprepared path and prepares again afterwards; an upstream that
// lost the statement (as a transaction-mode pooler does) is reported; and
// a connection holds at most maxPreparedPerConn statements.
func TestExecPrepared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, filepath.Join(t.TempDir(), "pg"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	pc, err := pgconn.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
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
	exec("CREATE TABLE readings (v integer); INSERT INTO readings SELECT g FROM generate_series(1, 100) g")
	const sumSQL = "SELECT sum(v) AS q0 FROM readings"

	for i := range 3 {
		rows, err := execPrepared(ctx, pc, sumSQL)
		if err != nil || len(rows) != 1 || string(rows[0][0]) != "5050" {
			t.Fatalf("run %d: %q, %v; want 5050", i, rows, err)
		}
	}
	if n := preparedCount(); n != "1" {
		t.Fatalf("%s prepared statements upstream after three runs, want 1", n)
	}

	// sum(bigint) is numeric where sum(integer) was bigint: the prepared
	// statement's result type changed.
	exec("ALTER TABLE readings ALTER COLUMN v TYPE bigint")
	if _, err := execPrepared(ctx, pc, sumSQL); !errors.Is(err, errNotPrepared) {
		t.Fatalf("after a type change: %v, want errNotPrepared", err)
	}
	if n := preparedCount(); n != "0" {
		t.Fatalf("%s prepared statements upstream after the fallback, want the stale one deallocated", n)
	}
	if rows, err := execPrepared(ctx, pc, sumSQL); err != nil || string(rows[0][0]) != "5050" {
		t.Fatalf("prepared again: %q, %v; want 5050", rows, err)
	}

	exec("DEALLOCATE ALL")
	if _, err := execPrepared(ctx, pc, sumSQL); !errors.Is(err, errLostPrepared) {
		t.Fatalf("after the upstream lost the statement: %v, want errLostPrepared", err)
	}

	// An error of the statement itself is the statement's, not a fallback.
	var pge *pgconn.PgError
	if _, err := execPrepared(ctx, pc, "SELECT sum(v) FROM no_such_table"); !errors.As(err, &pge) || pge.Code != "42P01" {
		t.Fatalf("missing table: %v, want 42P01", err)
	}

	exec("DEALLOCATE ALL")
	delete(pc.CustomData(), preparedKey)
	for i := range maxPreparedPerConn {
		if _, err := execPrepared(ctx, pc, fmt.Sprintf("SELECT %d AS q0", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := execPrepared(ctx, pc, "SELECT -1 AS q0"); !errors.Is(err, errNotPrepared) {
		t.Fatalf("statement %d: %v, want errNotPrepared", maxPreparedPerConn+1, err)
	}
	if n := preparedCount(); n != fmt.Sprint(maxPreparedPerConn) {
		t.Fatalf("%s prepared statements upstream, want %d", n, maxPreparedPerConn)
	}
}
