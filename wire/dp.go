package wire

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// ledgerTimeout bounds a debit: a slow ledger refuses the query rather than
// stall it (fail closed).
const ledgerTimeout = 3 * time.Second

// runDP answers a DP query: price it, charge the ledger, run the rewritten
// SQL upstream, add noise, post-process, respond. The charge happens before
// anything is sent upstream and is never refunded.
func (sess *session) runDP(st *rewrite.Statement, a execArgs) error {
	plan := st.Plan
	if len(a.params) > 0 {
		return pgerror.RefuseUnsupported.New("bound parameters in aggregate queries are not supported yet").
			WithHint("inline the constants, or use the simple query protocol")
	}
	pol := sess.srv.Policy()
	eps := sess.queryEpsilon()
	if capEps := pol.EpsilonCap(sess.analyst); eps > capEps {
		return pgerror.RefuseSetting.New("dp.epsilon %g exceeds your per-query cap of %g", eps, capEps)
	}
	mechs, err := calibrate(plan, eps)
	if err != nil {
		return pgerror.RefuseSetting.Wrap(err, "cannot calibrate noise for epsilon %g: %v", eps, err)
	}
	bal, err := sess.charge(st, plan, eps, mechs)
	if err != nil {
		sess.logStatement(st.SQL, "refused", err, "epsilon", eps)
		return err
	}
	exact, err := sess.runUpstreamDP(plan.SQL)
	if err != nil {
		sess.log.Warn("dp query failed upstream; charge stands", "err", err, "sql", truncate(plan.SQL, 200))
		return pgerror.RefuseUpstreamFailed.Wrap(err, "the query failed in the upstream database (epsilon %g was charged)", eps)
	}
	noisy := make([]float64, len(plan.Quantities))
	for i, q := range plan.Quantities {
		noisy[i] = mechs[i].AddNoise(sess.src, exact[i])
		if q.NonNegative {
			noisy[i] = math.Max(0, noisy[i])
		}
	}
	values := make([]string, len(plan.Outputs))
	accuracy := make([]string, len(plan.Outputs))
	for i, out := range plan.Outputs {
		values[i], accuracy[i] = postProcess(out, plan, noisy, mechs)
	}
	left := bal.Budget.Epsilon - bal.SpentEpsilon
	sess.notice(fmt.Sprintf("dp: spent epsilon %s (%s of %s left); %s",
		formatFloat(eps), formatFloat(math.Max(0, roundTo(left, 1e-9))), formatFloat(bal.Budget.Epsilon), strings.Join(accuracy, ", ")))
	if a.describe {
		sess.be.Send(&pgproto3.RowDescription{Fields: dpFields(plan, a.resultFormats)})
	}
	row, err := encodeRow(plan, values, a.resultFormats)
	if err != nil {
		return err
	}
	sess.be.Send(row)
	sess.complete("SELECT 1")
	sess.logStatement(st.SQL, "answered", nil, "epsilon", eps)
	return nil
}

// calibrate builds one Laplace mechanism per quantity for the query's ε.
func calibrate(plan *rewrite.Plan, eps float64) ([]*mechanisms.Laplace, error) {
	out := make([]*mechanisms.Laplace, len(plan.Quantities))
	for i, q := range plan.Quantities {
		m, err := mechanisms.NewLaplace(mechanisms.LaplaceOptions{
			Epsilon: eps * q.Weight, L1Sensitivity: q.L1Sensitivity, Granularity: q.Granularity,
		})
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

func (sess *session) charge(st *rewrite.Statement, plan *rewrite.Plan, eps float64, mechs []*mechanisms.Laplace) (ledger.Balance, error) {
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	summary := make([]string, len(plan.Quantities))
	for i, q := range plan.Quantities {
		summary[i] = fmt.Sprintf("laplace(%s) scale=%s", q.Expr, formatFloat(mechs[i].Scale()))
	}
	pol := sess.srv.Policy()
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	bal, err := sess.srv.cfg.Ledger.Debit(ctx, ledger.Charge{
		ID:            hex.EncodeToString(idb[:]),
		Analyst:       sess.user,
		Epsilon:       eps,
		Budget:        ledger.Budget{Epsilon: sess.analyst.Budget.Epsilon, Delta: sess.analyst.Budget.Delta},
		Statement:     st.SQL,
		Tables:        plan.Tables,
		Mechanisms:    strings.Join(summary, "; "),
		PolicyVersion: pol.Version,
		Time:          sess.srv.cfg.Now(),
	})
	if err == nil {
		return bal, nil
	}
	var be *ledger.BudgetError
	if errors.As(err, &be) {
		return bal, pgerror.RefuseBudgetExhausted.New("privacy budget exhausted for analyst %q: the query costs epsilon %s but only %s is left",
			sess.user, formatFloat(eps), formatFloat(math.Max(0, be.Remaining)))
	}
	return bal, pgerror.RefuseLedgerUnavailable.Wrap(err, "the privacy ledger is unavailable, so the query was not run")
}

// runUpstreamDP runs the rewritten SQL in a read-only transaction with a
// statement timeout, in one round trip, and returns the exact quantities.
func (sess *session) runUpstreamDP(sql string) ([]float64, error) {
	ctx, done := sess.runContext()
	defer done()
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	timeout := sess.srv.Policy().Upstream.StatementTimeout.Milliseconds()
	batch := fmt.Sprintf("BEGIN READ ONLY; SET LOCAL statement_timeout = %d; %s; COMMIT", timeout, sql)
	results, err := conn.Conn().PgConn().Exec(ctx, batch).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) != 4 || results[2].Err != nil {
		return nil, fmt.Errorf("unexpected upstream results: %d", len(results))
	}
	rows := results[2].Rows
	if len(rows) != 1 {
		return nil, fmt.Errorf("aggregate query returned %d rows", len(rows))
	}
	out := make([]float64, len(rows[0]))
	for i, v := range rows[0] {
		if v == nil { // sum over no rows
			continue
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return nil, fmt.Errorf("quantity %d: %w", i, err)
		}
		out[i] = f
	}
	return out, nil
}

// postProcess turns noisy quantities into one output value and its accuracy
// note. Everything here is post-processing of DP values, so it costs nothing.
func postProcess(out rewrite.Output, plan *rewrite.Plan, noisy []float64, mechs []*mechanisms.Laplace) (value, accuracy string) {
	hw := mechs[out.Value].HalfWidth(0.95)
	switch out.Agg {
	case rewrite.AggCount:
		return strconv.FormatInt(int64(math.Round(noisy[out.Value])), 10), fmt.Sprintf("%s ±%s at 95%%", out.Name, formatAccuracy(hw))
	case rewrite.AggSum:
		return formatValue(noisy[out.Value], out.Type, plan.Quantities[out.Value].Granularity), fmt.Sprintf("%s ±%s at 95%%", out.Name, formatAccuracy(hw))
	case rewrite.AggAvg:
		n := math.Max(1, noisy[out.Count])
		avg := out.Mid + noisy[out.Value]/n
		avg = math.Min(out.Upper, math.Max(out.Lower, avg))
		// The half-width of a ratio has no exact form; this first-order
		// figure ignores the count's noise and is labelled approximate.
		return formatValue(avg, out.Type, plan.Quantities[out.Value].Granularity/100), fmt.Sprintf("%s ±%s at 95%% (approx.)", out.Name, formatAccuracy(hw/n))
	}
	return "", ""
}

func formatValue(v float64, t rewrite.ResultType, granularity float64) string {
	switch t {
	case rewrite.TypeInt8:
		return strconv.FormatInt(int64(math.Round(v)), 10)
	case rewrite.TypeFloat8:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', decimals(granularity), 64)
}

// decimals is how many digits after the point a granularity needs.
func decimals(g float64) int {
	d := 0
	for g < 1 && d < 12 && math.Abs(g-math.Round(g)) > 1e-12 {
		g *= 10
		d++
	}
	return d
}

func formatAccuracy(hw float64) string {
	if hw >= 100 {
		return strconv.FormatFloat(math.Ceil(hw), 'f', 0, 64)
	}
	return strconv.FormatFloat(hw, 'g', 3, 64)
}

func roundTo(v, unit float64) float64 { return math.Round(v/unit) * unit }
