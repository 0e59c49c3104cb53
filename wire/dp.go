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

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// ledgerTimeout bounds a debit: a slow ledger refuses the query rather than
// stall it (fail closed).
const ledgerTimeout = 3 * time.Second

// defaultQueryDelta is the δ a query with partition selection spends when the
// session does not SET dp.delta.
const defaultQueryDelta = 1e-7

// runDP answers a DP query: price it, charge the ledger, run the rewritten
// SQL upstream, add noise, post-process, respond. The charge happens before
// anything is sent upstream and is never refunded.
func (sess *session) runDP(st *rewrite.Statement, a execArgs) error {
	plan := st.Plan
	pol := sess.srv.Policy()
	eps := sess.queryEpsilon()
	if capEps := pol.EpsilonCap(sess.analyst); eps > capEps {
		return pgerror.RefuseSetting.New("dp.epsilon %g exceeds your per-query cap of %g", eps, capEps)
	}
	delta := 0.0
	if plan.Selection != nil {
		if sess.analyst.Budget.Delta <= 0 {
			return pgerror.RefuseNoDelta.New("group key %q has no public domain: releasing its groups needs delta, and analyst %q has no delta budget",
				selectionKey(plan), sess.user)
		}
		delta = sess.queryDelta()
	}
	mechs, err := answer.Calibrate(plan, eps, delta)
	if err != nil {
		return pgerror.RefuseSetting.Wrap(err, "cannot calibrate noise for epsilon %g: %v", eps, err)
	}
	bal, err := sess.charge(st, plan, eps, delta, mechs.Summary(plan))
	if err != nil {
		sess.logStatement(st.SQL, "refused", err, "epsilon", eps)
		return err
	}
	exact, err := sess.runUpstreamDP(plan, a)
	if err != nil {
		sess.log.Warn("dp query failed upstream; charge stands", "err", err, "sql", truncate(plan.SQL, 200))
		return pgerror.RefuseUpstreamFailed.Wrap(err, "the query failed in the upstream database (epsilon %g was charged)", eps)
	}
	res, err := answer.Compute(plan, mechs, exact, sess.src)
	if err != nil {
		return pgerror.Wrapf(err, pgerror.CodeInternalError, "post-processing failed (epsilon %g was charged)", eps)
	}
	left := bal.Budget.Epsilon - bal.SpentEpsilon
	cost := "epsilon " + formatFloat(eps)
	if delta > 0 {
		cost += fmt.Sprintf(", delta %s", formatFloat(delta))
	}
	sess.notice(fmt.Sprintf("dp: spent %s (%s of %s left); %s",
		cost, formatFloat(math.Max(0, roundTo(left, 1e-9))), formatFloat(bal.Budget.Epsilon), strings.Join(res.Accuracy, ", ")))
	if a.describe {
		sess.be.Send(&pgproto3.RowDescription{Fields: dpFields(plan, a.resultFormats)})
	}
	for i, r := range res.Rows {
		row, err := encodeRow(plan, r, res.Nulls[i], a.resultFormats)
		if err != nil {
			return err
		}
		sess.be.Send(row)
	}
	sess.complete("SELECT " + strconv.Itoa(len(res.Rows)))
	sess.logStatement(st.SQL, "answered", nil, "epsilon", eps, "delta", delta, "rows", len(res.Rows))
	return nil
}

func selectionKey(plan *rewrite.Plan) string {
	for _, k := range plan.Keys {
		if k.Domain == nil {
			return k.Name
		}
	}
	return ""
}

func (sess *session) charge(st *rewrite.Statement, plan *rewrite.Plan, eps, delta float64, summary string) (ledger.Balance, error) {
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	pol := sess.srv.Policy()
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	bal, err := sess.srv.cfg.Ledger.Debit(ctx, ledger.Charge{
		ID:            hex.EncodeToString(idb[:]),
		Analyst:       sess.user,
		Epsilon:       eps,
		Delta:         delta,
		Budget:        ledger.Budget{Epsilon: sess.analyst.Budget.Epsilon, Delta: sess.analyst.Budget.Delta},
		Statement:     st.SQL,
		Tables:        plan.Tables,
		Mechanisms:    summary,
		PolicyVersion: pol.Version,
		Time:          sess.srv.cfg.Now(),
	})
	if err == nil {
		return bal, nil
	}
	var be *ledger.BudgetError
	if errors.As(err, &be) {
		if be.Requested > be.Remaining {
			return bal, pgerror.RefuseBudgetExhausted.New("privacy budget exhausted for analyst %q: the query costs epsilon %s but only %s is left",
				sess.user, formatFloat(eps), formatFloat(math.Max(0, be.Remaining)))
		}
		return bal, pgerror.RefuseBudgetExhausted.New("delta budget exhausted for analyst %q: the query costs delta %s but only %s is left",
			sess.user, formatFloat(delta), formatFloat(math.Max(0, be.RemainingDelta)))
	}
	return bal, pgerror.RefuseLedgerUnavailable.Wrap(err, "the privacy ledger is unavailable, so the query was not run")
}

// runUpstreamDP runs the rewritten SQL in a read-only transaction with a
// statement timeout, in one round trip, and returns its rows: group keys as
// text, then the exact quantities.
func (sess *session) runUpstreamDP(plan *rewrite.Plan, a execArgs) ([]answer.Row, error) {
	ctx, done := sess.runContext()
	defer done()
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	raws, err := readOnlyRows(ctx, conn.Conn().PgConn(), sess.srv.Policy().Upstream.StatementTimeout, plan.SQL, a)
	if err != nil {
		return nil, err
	}
	nk, nq := len(plan.Keys), len(plan.Quantities)
	rows := make([]answer.Row, 0, len(raws))
	for _, raw := range raws {
		if len(raw) != nk+nq {
			return nil, fmt.Errorf("upstream row has %d columns, want %d", len(raw), nk+nq)
		}
		r := answer.Row{Keys: make([]*string, nk), Q: make([]float64, nq)}
		for i := range nk {
			if raw[i] != nil {
				s := string(raw[i])
				r.Keys[i] = &s
			}
		}
		for i, v := range raw[nk:] {
			if v == nil { // sum over no rows
				continue
			}
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return nil, fmt.Errorf("quantity %d: %w", i, err)
			}
			r.Q[i] = f
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func roundTo(v, unit float64) float64 { return math.Round(v/unit) * unit }
