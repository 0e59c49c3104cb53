package integration

import (
	"testing"
)

func TestZZRTTinyEps(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 1000})
	conn, log := p.connectWithNotices(t, ctx, "carol", carolPassword, true)
	t.Logf("exact count=%d sum=%d", exact(t, ctx, "SELECT count(*) FROM patients"), exact(t, ctx, "SELECT sum(income) FROM patients"))
	for _, s := range []string{
		"SET dp.epsilon = 1e-320", "SELECT count(*), sum(income), avg(age) FROM patients", "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY income) FROM patients",
		"SELECT sex, count(*) FROM patients GROUP BY sex",
		"SET dp.epsilon = 5e-324", "SELECT count(*), sum(income) FROM patients",
		"RESET dp.epsilon", "SET dp.target_error = 1e300", "SELECT count(*), sum(income) FROM patients",
		"SET dp.target_error = 1e-300", "SELECT count(*) FROM patients",
		"RESET dp.target_error", "SET dp.delta = 1e-320", "SELECT zip, count(*) FROM patients GROUP BY zip",
		"SHOW dp.budget",
	} {
		rows, err := conn.Query(ctx, s)
		if err != nil {
			t.Logf("%s -> ERR %v", s, err)
			continue
		}
		var out [][]any
		for rows.Next() {
			v, _ := rows.Values()
			out = append(out, v)
		}
		err = rows.Err()
		rows.Close()
		t.Logf("%s -> %v err=%v", s, out, err)
	}
	t.Logf("notices: %q", log.all())
}
