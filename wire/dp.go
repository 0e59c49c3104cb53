package wire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// defaultQueryDelta is the δ a query with partition selection spends when the
// session does not SET dp.delta.
const defaultQueryDelta = 1e-7

// runDP answers a DP query: price it, charge the ledger, run the rewritten
// SQL upstream, add noise, post-process, respond. The charge commits before
// anything computed from the rows is released (overlap.go) and is never
// refunded.
func (sess *session) runDP(st *rewrite.Statement, a execArgs) error {
	plan := st.Plan
	pol := sess.srv.Policy()
	if err := sess.refreshAnalyst(pol); err != nil {
		return err
	}
	for _, name := range plan.Tables {
		schema, table, _ := strings.Cut(name, ".")
		if t := pol.Table(schema, table); !sess.analyst.MayQuery(t) {
			return pgerror.RefuseUnknownTable.New("analyst %q may not query table %s", sess.user, name).
				WithHint("the policy lists the tables each analyst may query; ask the DBA")
		}
	}
	a, err := dpParams(a) // before any charge: a refusal costs nothing
	if err != nil {
		return err
	}
	if a, err = checkParamValues(plan, a); err != nil {
		return err
	}
	eps := sess.queryEpsilon()
	if capEps := pol.EpsilonCap(sess.analyst); eps > capEps {
		return pgerror.RefuseSetting.New("dp.epsilon %g exceeds your per-query cap of %g", eps, capEps)
	}
	if sess.targetError > 0 {
		e, err := answer.EpsilonForTarget(plan, sess.targetError, sess.queryDelta(), pol.EpsilonCap(sess.analyst))
		if err != nil {
			return pgerror.RefuseSetting.New("cannot meet dp.target_error = %g: %v", sess.targetError, err).
				WithHint("raise dp.target_error, or RESET dp.target_error and SET dp.epsilon instead")
		}
		eps = e
	}
	delta := 0.0
	if plan.Selection != nil {
		if pol.DeltaCap(sess.analyst) <= 0 {
			return pgerror.RefuseNoDelta.New("group key %q has no public domain: releasing its groups needs delta, and analyst %q has no delta budget",
				selectionKey(plan), sess.user)
		}
		delta = sess.queryDelta()
	}
	var key string
	if sess.cacheOn() { // the key is built only when there is a cache to ask
		key = sess.cacheKey(plan.Canonical, a, eps, delta)
		cached, hit := sess.cacheGet(key)
		sess.noteCacheLookup(hit)
		if hit {
			return sess.answerFromCache(st, plan, a, cached)
		}
	}
	// Only a statement that reads upstream needs its shadow copy checked
	// (a cache hit reads nothing), and before anything is charged.
	if err := sess.checkShadow(plan, pol); err != nil {
		return err
	}
	cal, err := sess.calibrate(plan, eps, delta)
	if err != nil {
		return pgerror.RefuseSetting.Wrap(err, "cannot calibrate noise for epsilon %g: %v", eps, err)
	}
	mechs := cal.mechs
	var rdp *mechanisms.RDPVector
	if pol.Defaults.Accounting == policy.AccountingRDP {
		rdp = cal.rdpCurve()
	}
	bal, exact, err, chargeErr := sess.chargeAndRun(sess.newCharge(st, plan, eps, delta, cal.summary, rdp, false), plan, a)
	if chargeErr != nil {
		return chargeErr
	}
	if errors.Is(err, errGuardFailed) {
		what := guardedFacts(plan)
		sess.srv.refreshCatalog(what)
		return pgerror.RefuseUpstreamFailed.New("%s, which let dpproxy skip bounding, no longer holds upstream (dropped or changed); the answer was discarded (epsilon %g was charged)", what, eps).
			WithHint("run the query again: it is now bounded as usual")
	}
	if err != nil {
		sess.log.Warn("dp query failed upstream; charge stands", "err", err, "sql", truncate(plan.SQL, 200))
		return pgerror.RefuseUpstreamFailed.Wrap(err, "the query failed in the upstream database (epsilon %g was charged)", eps)
	}
	res, err := answer.Compute(plan, mechs, exact, sess.src)
	if err != nil {
		return pgerror.Wrapf(err, pgerror.CodeInternalError, "post-processing failed (epsilon %g was charged)", eps).
			WithHint("the charge stands, since the failure came after the query ran; report the statement to the DBA (the proxy's log has it)")
	}
	sess.cachePut(key, res, eps, delta)
	left := bal.Budget.Epsilon - bal.SpentEpsilon
	cost := "epsilon " + formatFloat(eps)
	if delta > 0 {
		cost += fmt.Sprintf(", delta %s", formatFloat(delta))
	}
	sess.notice(fmt.Sprintf("dp: spent %s (%s of %s left); %s",
		cost, formatFloat(math.Max(0, roundTo(left, 1e-9))), formatFloat(bal.Budget.Epsilon), strings.Join(res.Accuracy, ", ")))
	return sess.sendAnswer(st, plan, a, res.Rows, res.Nulls, "answered", eps, delta)
}

// calibration is a statement's mechanisms at one budget, with their summary
// for the ledger.
type calibration struct {
	plan       *rewrite.Plan
	eps, delta float64
	mechs      *answer.Mechanisms // parameters only: the noise comes from the session's source
	summary    string
	rdp        *mechanisms.RDPVector // the Rényi-DP curve, computed when first charged with it
}

// rdpCurve is the mechanisms' Rényi-DP curve for an RDP-accounted charge.
// It is only read after, so one computation serves every repeat.
func (c *calibration) rdpCurve() *mechanisms.RDPVector {
	if c.rdp == nil {
		v := c.mechs.RDP()
		c.rdp = &v
	}
	return c.rdp
}

// calibrate returns plan's mechanisms for (eps, delta). The session keeps
// the last ones: a statement repeated at the same budget (a dashboard's
// refresh, a driver's loop) reuses them rather than search the noise grid
// again (about 5 µs of a statement's CPU in a profile). A reloaded policy
// plans statements anew, so a kept calibration never outlives its plan.
func (sess *session) calibrate(plan *rewrite.Plan, eps, delta float64) (*calibration, error) {
	if c := sess.calib; c != nil && c.plan == plan && c.eps == eps && c.delta == delta {
		return c, nil
	}
	mechs, err := answer.Calibrate(plan, eps, delta)
	if err != nil {
		return nil, err
	}
	sess.calib = &calibration{plan: plan, eps: eps, delta: delta, mechs: mechs, summary: mechs.Summary(plan)}
	return sess.calib, nil
}

// answerFromCache repeats a cached noisy answer. It costs nothing, but is
// still written to the audit trail as a zero charge marked as a cache hit,
// so that the trail lists every answer: before answering, or, with the
// policy's ledger.cache_hit_audit: batched, in a batch just after
// (hitaudit.go).
func (sess *session) answerFromCache(st *rewrite.Statement, plan *rewrite.Plan, a execArgs, c *cachedAnswer) error {
	var bal ledger.Balance
	var err error
	if sess.srv.Policy().Ledger.CacheHitAudit == policy.CacheHitAuditBatched {
		bal, err = sess.batchedHit(st, plan)
	} else {
		bal, err = sess.charge(st, plan, 0, 0, "cache hit", nil, true)
	}
	if err != nil {
		return err
	}
	left := bal.Budget.Epsilon - bal.SpentEpsilon
	sess.notice(fmt.Sprintf("dp: repeated answer from the cache, no charge (%s of %s left); %s",
		formatFloat(math.Max(0, roundTo(left, 1e-9))), formatFloat(bal.Budget.Epsilon), strings.Join(c.Accuracy, ", ")))
	return sess.sendAnswer(st, plan, a, c.Rows, c.Nulls, "cache hit", 0, 0)
}

func (sess *session) sendAnswer(st *rewrite.Statement, plan *rewrite.Plan, a execArgs, rows [][]string, nulls [][]bool, outcome string, eps, delta float64) error {
	if a.describe {
		sess.be.Send(&pgproto3.RowDescription{Fields: dpFields(plan, a.resultFormats)})
	}
	for i, r := range rows {
		row, err := encodeRow(plan, r, nulls[i], a.resultFormats)
		if err != nil {
			return err
		}
		if a.keep != nil { // Execute with a row limit: the portal sends the rows in parts
			a.keep.rest = append(a.keep.rest, row.Values)
			continue
		}
		sess.be.Send(row)
	}
	if a.keep != nil {
		a.keep.started, a.keep.tag = true, "SELECT "+strconv.Itoa(len(rows))
		sess.noteAnswer(outcome, len(rows))
		return nil
	}
	sess.complete("SELECT " + strconv.Itoa(len(rows)))
	sess.noteAnswer(outcome, len(rows))
	return nil
}

// refreshAnalyst re-reads the session's analyst from the policy in force, so
// that a reloaded policy (a tighter budget, fewer tables, a removed analyst)
// applies to the next statement of an open session.
func (sess *session) refreshAnalyst(pol *policy.Policy) error {
	a := pol.Analyst(sess.user)
	if a == nil {
		return pgerror.Newf(pgerror.CodeInvalidAuthorization, "analyst %q is no longer in the policy", sess.user).
			WithHint("ask the DBA; the connection can no longer query")
	}
	sess.analyst = a
	return nil
}

func ledgerBudget(b policy.Budget) ledger.Budget {
	return ledger.Budget{Epsilon: b.Epsilon, Delta: b.Delta, Period: ledger.Period(b.Period)}
}

// sharedLimits are the team and dataset budgets a query also draws on.
func sharedLimits(pol *policy.Policy, a *policy.Analyst, plan *rewrite.Plan) []ledger.Limit {
	var out []ledger.Limit
	if a.Team != "" {
		if t := pol.Team(a.Team); t != nil {
			out = append(out, ledger.Limit{Account: "team:" + t.Name, Budget: ledgerBudget(t.Budget)})
		}
	}
	seen := map[string]bool{}
	for _, name := range plan.Tables {
		schema, table, _ := strings.Cut(name, ".")
		if d := pol.DatasetOf(pol.Table(schema, table)); d != nil && !seen[d.Name] {
			seen[d.Name] = true
			out = append(out, ledger.Limit{Account: "dataset:" + d.Name, Budget: ledgerBudget(d.Budget)})
		}
	}
	return out
}

func selectionKey(plan *rewrite.Plan) string {
	for _, k := range plan.Keys {
		if k.Domain == nil {
			return k.Name
		}
	}
	return ""
}

// batchedHit reads the balance for a cache hit's notice and queues its
// zero charge for the batched audit write. The charge is written now, as
// in sync mode, when the queue will not take it, when the analyst's
// budget renews by period (the balance read shows the lifetime account,
// which would misstate what is left) or when the analyst has spent more
// than the budget (sync mode refuses that hit). A ledger that cannot be
// read refuses the hit, as in sync mode. A team or dataset budget
// overspent after a reload is not visible here: such a hit is answered
// and its entry refused later (logged), where sync mode would refuse it.
func (sess *session) batchedHit(st *rewrite.Statement, plan *rewrite.Plan) (ledger.Balance, error) {
	sync := func() (ledger.Balance, error) { return sess.charge(st, plan, 0, 0, "cache hit", nil, true) }
	if p := ledger.Period(sess.analyst.Budget.Period); p != "" && p != ledger.PeriodLifetime {
		return sync()
	}
	ctx, cancel := context.WithTimeout(context.Background(), sess.srv.ledgerTimeout())
	defer cancel()
	t0 := time.Now()
	bal, err := sess.srv.cfg.Ledger.Balance(ctx, sess.user)
	sess.noteLedger(time.Since(t0), 0, 0, bal, err)
	if err != nil {
		return bal, pgerror.RefuseLedgerUnavailable.Wrap(err, "the privacy ledger is unavailable, so the query was not answered")
	}
	// Overspent (a budget lowered below what was spent, a negative grant):
	// sync mode refuses even a free repeat, so do the same.
	budget := ledgerBudget(sess.analyst.Budget)
	if bal.SpentEpsilon > budget.Epsilon+bal.GrantedEpsilon || bal.SpentDelta > budget.Delta+bal.GrantedDelta {
		return sync()
	}
	if !sess.srv.hits.add(sess.newCharge(st, plan, 0, 0, "cache hit", nil, true)) {
		return sync()
	}
	return bal, nil
}

func (sess *session) newCharge(st *rewrite.Statement, plan *rewrite.Plan, eps, delta float64, summary string, rdp *mechanisms.RDPVector, cacheHit bool) ledger.Charge {
	pol := sess.srv.Policy()
	return ledger.Charge{
		ID:            sess.statementID(), // joins the log line to the audit entry
		Analyst:       sess.user,
		Epsilon:       eps,
		Delta:         delta,
		Budget:        ledgerBudget(sess.analyst.Budget),
		Shared:        sharedLimits(pol, sess.analyst, plan),
		RDP:           rdp,
		Statement:     st.SQL,
		Tables:        plan.Tables,
		Mechanisms:    summary,
		PolicyVersion: pol.Version,
		CacheHit:      cacheHit,
		Time:          sess.srv.cfg.Now(),
	}
}

func (sess *session) charge(st *rewrite.Statement, plan *rewrite.Plan, eps, delta float64, summary string, rdp *mechanisms.RDPVector, cacheHit bool) (ledger.Balance, error) {
	c := sess.newCharge(st, plan, eps, delta, summary, rdp, cacheHit)
	bal, took, err := debit(sess.srv.cfg.Ledger, c, sess.srv.ledgerTimeout())
	return sess.charged(c, took, bal, err)
}

// debit writes c to the ledger. It touches no session state, so that it
// can run beside the upstream query (overlap.go).
func debit(store ledger.Store, c ledger.Charge, timeout time.Duration) (ledger.Balance, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	bal, err := store.Debit(ctx, c)
	return bal, time.Since(t0), err
}

// charged records a debit's outcome and turns its failure into the
// analyst's error.
func (sess *session) charged(c ledger.Charge, took time.Duration, bal ledger.Balance, err error) (ledger.Balance, error) {
	eps, delta := c.Epsilon, c.Delta
	sess.noteLedger(took, eps, delta, bal, err)
	sess.noteHeadroom(bal, err)
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
	return bal, pgerror.RefuseLedgerUnavailable.Wrap(err, "the privacy ledger is unavailable, so the query was not answered")
}

// runUpstreamDP runs the rewritten SQL in a read-only transaction with a
// statement timeout, in one round trip, and returns its rows: group keys as
// text, then the exact quantities.
func (sess *session) runUpstreamDP(ctx context.Context, plan *rewrite.Plan, a execArgs) ([]answer.Row, error) {
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	raws, err := readOnlyRows(ctx, conn.Conn().PgConn(), sess.srv.Policy().Upstream.StatementTimeout, plan.SQL, a, plan.Guard, plan.Settings,
		sess.srv.sendAlone(), &sess.srv.unprepared, sess.srv.log)
	if err != nil {
		return nil, err
	}
	parser := answer.NewRowParser(plan)
	rows := make([]answer.Row, 0, len(raws))
	for _, raw := range raws {
		r, err := parser.Parse(raw)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func roundTo(v, unit float64) float64 { return math.Round(v/unit) * unit }

// guardedFacts names the catalog facts a plan's guard checks, for the
// analyst's error.
func guardedFacts(plan *rewrite.Plan) string {
	var facts []string
	if u := plan.UniqueUnit; u != nil {
		facts = append(facts, fmt.Sprintf("the unique index on %s(%s)", u.Table, u.Column))
	}
	for _, p := range plan.ProvenBounds {
		facts = append(facts, fmt.Sprintf("the CHECK constraints keeping %s.%s within its bounds", p.Table, p.Column))
	}
	if plan.Shadow {
		facts = append(facts, fmt.Sprintf("the bound recorded on the shadow copy of %s (%q)", strings.Join(plan.Tables[:1], ""), plan.ShadowBound))
	}
	return strings.Join(facts, " or ")
}
