package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/audit"
	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// auditQuery is one query of the built-in audit suite over the demo
// schema: the neighbouring database adds one privacy unit (neighbour, run
// inside a transaction that is rolled back) contributing the most the
// policy allows to the audited statistic.
type auditQuery struct {
	name, sql, neighbour string
	stat                 audit.Statistic
	delta                float64
}

const auditUnit = 2_000_000_001 // a patient_id no demo row uses

var auditSuite = []auditQuery{
	{name: "count", sql: "SELECT count(*) FROM patients WHERE age > 40",
		neighbour: auditPatient},
	{name: "sum", sql: "SELECT sum(income) FROM patients",
		neighbour: auditPatient},
	{name: "avg", sql: "SELECT avg(income) FROM patients",
		neighbour: auditPatient},
	{name: "group-by-selection", sql: "SELECT clinic, count(*) FROM visits GROUP BY clinic",
		neighbour: auditPatient + "; " + fmt.Sprintf(auditVisits, "downtown"), stat: audit.Statistic{Group: "downtown", Col: 1}, delta: 1e-5},
	{name: "selection-new-group", sql: "SELECT clinic, count(*) FROM visits GROUP BY clinic",
		neighbour: auditPatient + "; " + fmt.Sprintf(auditVisits, auditClinic), stat: audit.Statistic{Group: auditClinic, Col: 1}, delta: 1e-5},
	{name: "join-public", sql: "SELECT count(*) FROM visits v JOIN departments d ON v.department = d.name",
		neighbour: auditPatient + "; " + fmt.Sprintf(auditVisits, "downtown")},
	// Row sampling (rewrite useSampling): the unit's 10 oncology visits all
	// survive its sampling, so the group's count moves by the full
	// sensitivity of max_rows_per_unit rows.
	{name: "group-by-sampled", sql: "SELECT department, count(*) FROM visits GROUP BY department",
		neighbour: auditPatient + "; " + fmt.Sprintf(auditVisits, "downtown"), stat: audit.Statistic{Group: "oncology", Col: 1}},
}

// auditClinic is a clinic only the added unit visits, so that its group
// exists only on the neighbour (partition selection must hide it, up to δ).
const auditClinic = "audit-clinic"

var (
	auditPatient = fmt.Sprintf(`INSERT INTO patients (patient_id, age, sex, zip, diagnosis, income, visit_date)
		VALUES (%d, 100, 'F', '10001', 'flu', 250000, '2025-06-01')`, auditUnit)
	auditVisits = fmt.Sprintf(`INSERT INTO visits (visit_id, patient_id, visit_date, department, cost, clinic)
		SELECT 9100000000 + g, %d, '2025-06-01', 'oncology', 5000, '%%s' FROM generate_series(1, 10) g`, auditUnit)
)

// cmdAudit runs the built-in audit suite: for each query it obtains the
// exact per-group results of the rewritten SQL once on the database and once
// on its neighbour, answers each n times with fresh noise through the same
// mechanisms and post-processing the proxy uses, and prints the lower bound
// on ε next to the ε charged. It fails (exit 1) when a bound exceeds the
// charge, unless --broken, which calibrates noise at 2ε while charging ε to
// show that the audit catches it.
func cmdAudit(args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (required)")
	dsn := fs.String("dsn", "", "DSN of a database with the policy's schema, as a role that may INSERT (rolled back) (required)")
	n := fs.Int("n", 4000, "answers per database and query")
	eps := fs.Float64("epsilon", 1, "epsilon charged per query")
	alpha := fs.Float64("alpha", 1e-3, "failure probability of each bound")
	broken := fs.Bool("broken", false, "calibrate the noise at 2*epsilon while charging epsilon (a deliberately broken mechanism)")
	only := fs.String("query", "", "run only the query with this name")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *policyPath == "" || *dsn == "" || *n < 40 {
		return usageError{"usage: dpproxy audit --policy FILE --dsn DSN [--n N] [--epsilon E] [--alpha A] [--broken] [--query NAME]"}
	}
	if os.Getenv("DPPROXY_UPSTREAM_DSN") == "" {
		os.Setenv("DPPROXY_UPSTREAM_DSN", "host=unused")
	}
	pol, err := policy.Load(*policyPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	factor := 1.0
	if *broken {
		factor = 2
	}
	src := mechanisms.NewSecureSource()
	exceeded := 0
	fmt.Printf("%-20s %8s %10s  %s\n", "query", "charged", "bound", "detail")
	for _, q := range auditSuite {
		if *only != "" && q.name != *only {
			continue
		}
		stmts, err := rewrite.Classify(q.sql, pol)
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		plan := stmts[0].Plan
		if plan == nil {
			return fmt.Errorf("%s: not a DP query", q.name)
		}
		exact0, err := exactRows(ctx, conn, plan, "")
		if err != nil {
			return fmt.Errorf("%s on the database: %w", q.name, err)
		}
		// The unit alone (the private tables emptied inside the rolled-back
		// transaction), added to D0's results: see audit.AddUnit.
		unit, err := exactRows(ctx, conn, plan, "DELETE FROM visits; DELETE FROM patients; "+q.neighbour)
		if err != nil {
			return fmt.Errorf("%s on the neighbour: %w", q.name, err)
		}
		exact1 := audit.AddUnit(exact0, unit)
		c := audit.Case{Plan: plan, Exact0: exact0, Exact1: exact1, Epsilon: *eps, Delta: q.delta, Stat: q.stat, NoiseFactor: factor}
		s0, s1, err := audit.Simulate(c, *n, src)
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		res, err := audit.LowerBound(s0, s1, audit.Options{Alpha: *alpha, Delta: q.delta})
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		verdict := "ok"
		if res.Epsilon > *eps {
			verdict = "EXCEEDS"
			exceeded++
		}
		fmt.Printf("%-20s %8s %10.4f  %s %s\n", q.name, strconv.FormatFloat(*eps, 'g', -1, 64), res.Epsilon, verdict, res)
	}
	switch {
	case exceeded > 0 && !*broken:
		return fmt.Errorf("%d lower bounds exceed the epsilon charged", exceeded)
	case *broken:
		fmt.Printf("broken mechanism: %d of the bounds exceed the epsilon charged\n", exceeded)
	}
	return nil
}

// exactRows runs the plan's rewritten SQL, after neighbour (when not
// empty) in the same transaction, which is always rolled back.
func exactRows(ctx context.Context, conn *pgx.Conn, plan *rewrite.Plan, neighbour string) ([]answer.Row, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	if neighbour != "" {
		if _, err := tx.Exec(ctx, neighbour); err != nil {
			return nil, err
		}
	}
	rows, err := tx.Query(ctx, plan.SQL, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	parser := answer.NewRowParser(plan)
	var out []answer.Row
	for rows.Next() {
		r, err := parser.Parse(rows.RawValues())
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
