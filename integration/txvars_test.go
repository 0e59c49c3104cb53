package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestDPSettingsFollowTransactions: SET dp.epsilon is undone by ROLLBACK,
// lasts only to the end of the transaction with SET LOCAL, and is undone
// with the rest of a multi-statement query that fails, as Postgres does for
// its own settings, so an analyst never keeps paying a rolled-back price.
func TestDPSettingsFollowTransactions(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	conn := p.connect(t, ctx, "alice", alicePassword, true)
	show := func() string {
		t.Helper()
		var v string
		if err := conn.QueryRow(ctx, "SHOW dp.epsilon").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	exec := func(sql string) error {
		_, err := conn.Exec(ctx, sql)
		return err
	}
	def := show()
	for _, step := range []struct {
		sql     string
		fails   bool
		want    string
		explain string
	}{
		{"BEGIN; SET dp.epsilon = 0.9; ROLLBACK", false, def, "rolled back"},
		{"BEGIN; SET LOCAL dp.epsilon = 0.9; COMMIT", false, def, "SET LOCAL ends with the transaction"},
		{"SET dp.epsilon = 0.9; SELECT * FROM patients", true, def, "undone with a failed multi-statement query"},
		{"BEGIN; SET dp.epsilon = 0.2; SAVEPOINT a; SET dp.epsilon = 0.9; ROLLBACK TO a; COMMIT", false, "0.2", "ROLLBACK TO restores the savepoint's value"},
		{"BEGIN; SET dp.epsilon = 0.3; COMMIT", false, "0.3", "committed"},
		{"SET dp.epsilon = 0.2; BEGIN; SET LOCAL dp.epsilon = 0.1; COMMIT", false, "0.2", "SET LOCAL goes back to the value before it"},
		{"SET dp.epsilon = 0.4; BEGIN; SELECT * FROM patients", true, "", "a failed block: SHOW is refused until it ends"},
		{"ROLLBACK", false, "0.2", "a SET before BEGIN in the same query belongs to the block"},
		{"BEGIN; SET LOCAL dp.epsilon = 0.4; RESET dp.epsilon; COMMIT", false, def, "RESET outlives the transaction"},
	} {
		err := exec(step.sql)
		if (err != nil) != step.fails {
			t.Fatalf("%s: %v", step.sql, err)
		}
		if step.want == "" {
			continue
		}
		if got := show(); got != step.want {
			t.Errorf("after %q (%s): dp.epsilon = %s, want %s", step.sql, step.explain, got, step.want)
		}
	}
}

// TestSettingsSnapshotsAndLimits: a transaction's and a savepoint's
// snapshots of the settings share the session's map until a SET copies it,
// so each step below checks that a later SET did not reach back into an
// earlier snapshot (a second ROLLBACK TO the same savepoint, SET LOCAL
// after a ROLLBACK TO). The settings, prepared statements and savepoints a
// session keeps are bounded, with 54000 and a hint past the bound: one
// 64 KiB message of SAVEPOINTs once took 54 MB of the proxy's memory.
func TestSettingsSnapshotsAndLimits(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	conn := p.connect(t, ctx, "alice", alicePassword, true)
	show := func(name string) string {
		t.Helper()
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatalf("SHOW %s: %v", name, err)
		}
		return v
	}
	for _, step := range []struct {
		sql  string
		want map[string]string
	}{
		{"SET x.a = '1'; SET x.c = 'base'", map[string]string{"x.a": "1", "x.c": "base"}},
		{"BEGIN; SET x.a = '2'; SAVEPOINT s; SET x.a = '3'", map[string]string{"x.a": "3"}},
		{"ROLLBACK TO s", map[string]string{"x.a": "2"}},
		{"SET x.a = '4'; SET x.c = 'changed'", map[string]string{"x.a": "4", "x.c": "changed"}},
		{"ROLLBACK TO s", map[string]string{"x.a": "2", "x.c": "base"}},
		{"SET LOCAL x.a = '5'; SAVEPOINT t; SET LOCAL x.c = '6'; ROLLBACK TO t; SET LOCAL x.c = '7'", map[string]string{"x.a": "5", "x.c": "7"}},
		{"COMMIT", map[string]string{"x.a": "2", "x.c": "base"}},
		{"BEGIN; SET LOCAL x.a = '5'; SAVEPOINT t; SET x.c = 'mid'; SET LOCAL x.c = '6'; ROLLBACK TO t; COMMIT", map[string]string{"x.a": "2", "x.c": "base"}},
		{"BEGIN; SET x.a = '8'; ROLLBACK", map[string]string{"x.a": "2"}},
		{"RESET ALL; SET x.c = 'again'", map[string]string{"x.c": "again"}},
	} {
		if _, err := conn.Exec(ctx, step.sql); err != nil {
			t.Fatalf("%s: %v", step.sql, err)
		}
		for name, want := range step.want {
			if got := show(name); got != want {
				t.Errorf("after %q: %s = %q, want %q", step.sql, name, got, want)
			}
		}
	}

	// Settings: up to 1,000 distinct names (those the session already has,
	// from start-up and above, count too), then refused.
	kept := 0
	for ; kept < 1100; kept++ {
		if _, err := conn.Exec(ctx, fmt.Sprintf("SET x.k%d = 'v'", kept)); err != nil {
			break
		}
	}
	if kept < 990 || kept >= 1000 {
		t.Fatalf("%d new settings kept, want between 990 and 999 (1,000 with those set before)", kept)
	}
	wantLimit(t, ctx, conn, "SET x.too_many = 'v'", "too many settings")
	if _, err := conn.Exec(ctx, "SET x.k1 = 'changed'"); err != nil {
		t.Fatalf("changing a setting already kept: %v", err)
	}
	if _, err := conn.Exec(ctx, "RESET x.k2; SET x.new = 'v'"); err != nil {
		t.Fatalf("a RESET makes room: %v", err)
	}

	// Named prepared statements: 4,096, then refused; closing one makes room.
	pc := conn.PgConn()
	for i := range 4096 {
		if _, err := pc.Prepare(ctx, fmt.Sprintf("s%d", i), "SELECT 1", nil); err != nil {
			t.Fatalf("prepared statement %d: %v", i, err)
		}
	}
	var pe *pgconn.PgError
	if _, err := pc.Prepare(ctx, "one_more", "SELECT 1", nil); !errors.As(err, &pe) || pe.Code != "54000" || pe.Hint == "" {
		t.Fatalf("the 4,097th prepared statement: %v, want 54000 with a hint", err)
	}
	if err := pc.Deallocate(ctx, "s0"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Prepare(ctx, "one_more", "SELECT 1", nil); err != nil {
		t.Fatalf("after closing one: %v", err)
	}

	// Savepoints: 10,000 in one transaction, the next refused; RELEASE
	// makes room again.
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	batch := strings.Repeat("SAVEPOINT a;", 1000)
	for range 10 {
		if _, err := conn.Exec(ctx, batch); err != nil {
			t.Fatalf("savepoints: %v", err)
		}
	}
	wantLimit(t, ctx, conn, "SAVEPOINT one_more", "too many savepoints")
	if _, err := conn.Exec(ctx, "ROLLBACK; BEGIN; SAVEPOINT a; RELEASE a; SAVEPOINT b; ROLLBACK"); err != nil {
		t.Fatalf("after the bound: %v", err)
	}
}

// wantLimit runs sql and expects dpproxy's 54000 refusal, with a message
// naming the bound and a hint.
func wantLimit(t *testing.T, ctx context.Context, conn *pgx.Conn, sql, msg string) {
	t.Helper()
	_, err := conn.Exec(ctx, sql)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "54000" || !strings.Contains(pe.Message, msg) || pe.Hint == "" {
		t.Fatalf("%s: got %v, want 54000 %q with a hint", sql, err, msg)
	}
}
