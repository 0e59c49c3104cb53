package integration

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/audit"
)

// auditDB creates name as a copy of demo (no canary) and returns its
// superuser DSN; dropped when the test ends.
func auditDB(t *testing.T, ctx context.Context, name, extra string) (admin, reader string) {
	t.Helper()
	redteamDB(t, ctx, name) // a copy of demo with the canary planted
	db, err := pgx.Connect(ctx, pg.Cluster.DSN(name))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// Remove the canary: the audit's databases are demo and demo + one unit.
	if _, err := db.Exec(ctx, "DELETE FROM visits WHERE patient_id = 99999001; DELETE FROM patients WHERE patient_id = 99999001"); err != nil {
		t.Fatal(err)
	}
	if extra != "" {
		if _, err := db.Exec(ctx, extra); err != nil {
			t.Fatal(err)
		}
	}
	return pg.Cluster.DSN(name), strings.Replace(pg.ReaderDSN(), "dbname=demo", "dbname="+name, 1)
}

// TestAuditEpsilonBounds runs `dpproxy audit` (mechanism + post-processing on
// the rewritten SQL's exact results, on demo and demo plus one maximal
// unit) for count, sum, avg, GROUP BY with partition selection, a
// private-public join and a row-sampled GROUP BY: no lower bound may
// exceed the ε charged. Then the
// deliberately broken mechanism (noise calibrated at 2ε, ε charged) must be
// caught. Finally a smaller end-to-end audit through two proxies.
func TestAuditEpsilonBounds(t *testing.T) {
	ctx := testContext(t)
	admin, _ := auditDB(t, ctx, "audit0", "")
	run := func(args ...string) string {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, binary, append([]string{"audit", "--policy", "../demo/policy.yaml", "--dsn", admin}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpproxy audit %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("--n", "4000")
	t.Logf("correct mechanisms:\n%s", out)
	for _, name := range []string{"count", "sum", "avg", "group-by-selection", "selection-new-group", "join-public", "group-by-sampled"} {
		if !regexpLine(out, name, "ok") {
			t.Errorf("%s: no passing bound in\n%s", name, out)
		}
	}
	for _, q := range []string{"count", "sum", "join-public", "group-by-sampled"} {
		bout := run("--n", "4000", "--broken", "--query", q)
		t.Logf("broken mechanism:\n%s", bout)
		if !regexpLine(bout, q, "EXCEEDS") {
			t.Errorf("broken %s mechanism not caught:\n%s", q, bout)
		}
	}

	// End to end through the proxy: the same count on demo and on demo plus
	// one patient who matches it.
	_, reader0 := auditDB(t, ctx, "audit1", "")
	_, reader1 := auditDB(t, ctx, "audit2", `INSERT INTO patients (patient_id, age, sex, zip, diagnosis, income, visit_date)
		VALUES (2000000001, 100, 'F', '10001', 'flu', 250000, '2025-06-01')`)
	const n, eps = 300, 1.0
	var samples [2][]float64
	for i, dsn := range []string{reader0, reader1} {
		p := startProxy(t, proxyOptions{carolBudget: 2 * n * eps, upstreamDSN: dsn})
		conn := p.connect(t, ctx, "carol", carolPassword, true)
		if _, err := conn.Exec(ctx, "SET dp.epsilon = 1"); err != nil {
			t.Fatal(err)
		}
		for range n {
			v, err := queryCount(ctx, conn, "SELECT count(*) FROM patients WHERE age > 40")
			if err != nil {
				t.Fatal(err)
			}
			samples[i] = append(samples[i], float64(v))
		}
	}
	res, err := audit.LowerBound(samples[0], samples[1], audit.Options{Alpha: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("end to end (count, n=%d per database, epsilon %g charged): %v", n, eps, res)
	if res.Epsilon > eps {
		t.Fatalf("end-to-end bound %v exceeds the epsilon charged", res)
	}
}

// regexpLine reports whether out has a line starting with name whose
// fourth field is verdict.
func regexpLine(out, name, verdict string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == name && f[3] == verdict {
			if _, err := strconv.ParseFloat(f[2], 64); err == nil {
				return true
			}
		}
	}
	return false
}
