package wire

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/metrics"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// stmtTrace is what one statement's log line and metrics report: never
// results, only what was asked, what it cost and how long each stage took.
// A statement's ID is also the ID of its ledger entry, so a log line and an
// audit entry can be joined.
type stmtTrace struct {
	active     bool
	id         string
	kind       string
	outcome    string // set by noteAnswer for DP answers
	start      time.Time
	eps, delta float64 // requested of the ledger (charged unless refused)
	rows       int
	parse      time.Duration // classify + plan since the previous statement
	ledger     time.Duration
	upstream   time.Duration
}

func newStatementID() string { return ledger.NewID() }

func kindLabel(k rewrite.Kind) string {
	switch k {
	case rewrite.KindDP:
		return metrics.KindDP
	case rewrite.KindPassthrough:
		return metrics.KindPassthrough
	case rewrite.KindSession:
		return metrics.KindSession
	case rewrite.KindExplain:
		return metrics.KindExplain
	case rewrite.KindEmpty:
		return metrics.KindEmpty
	}
	return metrics.KindUnparsed
}

// classify parses and plans sql (through the plan cache), timing it.
func (sess *session) classify(sql string) ([]*rewrite.Statement, error) {
	t0 := time.Now()
	stmts, err := sess.srv.plans.Classify(sql, sess.srv.Policy())
	d := time.Since(t0)
	sess.srv.cfg.Metrics.Observe(metrics.StageParse, d)
	sess.trace.parse += d
	return stmts, err
}

// beginStatement starts the trace of a classified statement about to run.
func (sess *session) beginStatement(st *rewrite.Statement) {
	sess.trace = stmtTrace{active: true, id: newStatementID(), kind: kindLabel(st.Kind), start: time.Now(), parse: sess.trace.parse}
}

// statementID is the running statement's ID (a fresh one outside a trace).
func (sess *session) statementID() string {
	if sess.trace.active {
		return sess.trace.id
	}
	return newStatementID()
}

// noteLedger records a debit's round trip, what it asked for and, when it
// succeeded, the spend and the budget left.
func (sess *session) noteLedger(d time.Duration, eps, delta float64, bal ledger.Balance, err error) {
	sess.srv.cfg.Metrics.Observe(metrics.StageLedger, d)
	sess.trace.ledger += d
	sess.trace.eps, sess.trace.delta = eps, delta
	if err == nil {
		sess.srv.cfg.Metrics.Charged(sess.user, eps, delta, bal.Budget.Epsilon-bal.SpentEpsilon)
	}
}

// timeUpstream records d spent upstream.
func (sess *session) timeUpstream(d time.Duration) {
	sess.srv.cfg.Metrics.Observe(metrics.StageUpstream, d)
	sess.trace.upstream += d
}

// noteCacheLookup counts an answer cache lookup, when the cache is on.
func (sess *session) noteCacheLookup(hit bool) {
	sess.srv.cfg.Metrics.CacheLookup(hit) // callers look up only when the cache is on
}

// noteAnswer records how a DP answer was produced ("answered" or "cache
// hit") and how many rows it had.
func (sess *session) noteAnswer(how string, rows int) {
	sess.trace.outcome = metrics.OutcomeOK
	if strings.Contains(how, "cache") {
		sess.trace.outcome = metrics.OutcomeCacheHit
	}
	sess.trace.rows = rows
}

// endStatement logs and counts the statement begun by beginStatement.
func (sess *session) endStatement(sql string, err error) {
	sess.logStatement(sql, "", err)
}

// logStatement writes the one "statement" log line of a statement and
// counts it in the metrics. Inside a trace (beginStatement) it reports the
// trace; outside (a statement refused while classifying) it reports kind
// "unclassified". outcome "" derives the outcome from err.
func (sess *session) logStatement(sql, outcome string, err error) {
	tr := sess.trace
	sess.trace = stmtTrace{}
	if !tr.active {
		tr.id, tr.kind = newStatementID(), metrics.KindUnparsed
	}
	refusal := ""
	var pe *pgerror.Error
	switch {
	case err != nil:
		pe = pgerror.As(err)
		refusal = pe.ID
		outcome = metrics.OutcomeRefused
		if pe.ID == "" || failures[pe.ID] {
			outcome = metrics.OutcomeError
		}
	case tr.outcome != "":
		outcome = tr.outcome
	case outcome == "":
		outcome = metrics.OutcomeOK
	}
	total := tr.parse // refused while classifying: parsing was all of it
	if !tr.start.IsZero() {
		total = time.Since(tr.start)
	}
	sess.srv.cfg.Metrics.Statement(tr.kind, outcome, refusal, total)
	// Typed attributes: one line per statement, so no boxing of each value.
	var buf [17]slog.Attr
	attrs := append(buf[:0], slog.String("id", tr.id), slog.String("kind", tr.kind),
		slog.String("outcome", outcome), slog.String("sql", truncate(sql, 200)))
	if tr.kind == metrics.KindDP {
		attrs = append(attrs, slog.Float64("epsilon", tr.eps), slog.Float64("delta", tr.delta), slog.Int("rows", tr.rows))
	}
	attrs = append(attrs, slog.Float64("parse_ms", ms(tr.parse)), slog.Float64("ledger_ms", ms(tr.ledger)),
		slog.Float64("upstream_ms", ms(tr.upstream)), slog.Float64("total_ms", ms(total)))
	if pe != nil {
		attrs = append(attrs, slog.String("code", pe.Code), slog.String("refusal", pe.ID), slog.String("err", pe.Message))
	}
	// The record is built here rather than by Logger.LogAttrs, which
	// captures the caller's PC (runtime.Callers, about a microsecond) for a
	// source location no handler of serve's prints.
	ctx := context.Background()
	if h := sess.log.Handler(); h.Enabled(ctx, slog.LevelInfo) {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "statement", 0)
		r.AddAttrs(attrs...)
		_ = h.Handle(ctx, r) // as Logger does: a log line that fails to write is not the statement's error
	}
}

// failures are catalogue entries that report a failure of the proxy's
// dependencies rather than a refusal of the statement.
var failures = map[string]bool{
	pgerror.RefuseLedgerUnavailable.ID: true,
	pgerror.RefuseUpstreamFailed.ID:    true,
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
