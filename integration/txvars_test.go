package integration

import "testing"

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
