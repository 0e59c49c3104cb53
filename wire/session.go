package wire

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// reportedSettings are announced with ParameterStatus when SET, as Postgres
// does for GUC_REPORT settings.
var reportedSettings = map[string]string{
	"application_name": "application_name", "client_encoding": "client_encoding",
	"datestyle": "DateStyle", "timezone": "TimeZone", "intervalstyle": "IntervalStyle",
}

// localShow answers SHOW for settings the proxy owns without asking upstream.
var localShow = map[string]string{
	"transaction_isolation":         "read committed",
	"transaction isolation level":   "read committed",
	"transaction_read_only":         "on",
	"default_transaction_read_only": "on",
	"client_encoding":               "UTF8",
	"server_encoding":               "UTF8",
	"standard_conforming_strings":   "on",
	"integer_datetimes":             "on",
	"datestyle":                     "ISO, MDY",
	"intervalstyle":                 "postgres",
	"max_identifier_length":         "63",
}

func (sess *session) runSession(st *rewrite.Statement, a execArgs) error {
	s := st.Session
	switch s.Op {
	case rewrite.OpSet:
		sess.snapshotTx()
		before := sess.vars()
		if s.Local && sess.tx == nil {
			// As Postgres: a warning, the value still checked, no effect
			// (and nothing reported).
			sess.warning("SET LOCAL can only be used in transaction blocks")
			err := sess.set(s.Name, s.Value, false)
			sess.assignVars(before)
			if err != nil {
				return err
			}
			break
		}
		if err := sess.set(s.Name, s.Value, true); err != nil {
			return err
		}
		sess.noteSet(s.Name, s.Local, before)
	case rewrite.OpShow:
		return sess.show(s.Name, a)
	case rewrite.OpReset:
		sess.snapshotTx()
		switch s.Name {
		case "dp.epsilon":
			sess.epsilon = 0
		case "dp.delta":
			sess.delta = 0
		case "dp.target_error":
			sess.targetError = 0
		}
		if _, ok := sess.settings[s.Name]; ok {
			sess.ownSettings()
			delete(sess.settings, s.Name)
		}
		sess.noteSet(s.Name, false, sessionVars{})
	case rewrite.OpResetAll:
		sess.snapshotTx()
		sess.settings, sess.settingsShared = map[string]string{}, false
		sess.epsilon, sess.delta, sess.targetError = 0, 0, 0
		if sess.tx != nil {
			sess.tx.local, sess.tx.localShared = nil, false
		}
	case rewrite.OpBegin:
		switch {
		case sess.txStatus != 'I':
			sess.warning("there is already a transaction in progress")
		case sess.tx != nil && sess.tx.implicit:
			// BEGIN inside a multi-statement Query: the statements before
			// it belong to the transaction block it starts.
			sess.tx.implicit = false
			sess.snapshotTx() // unchanged since the query began, if not taken yet
		default:
			sess.tx = &txState{}
			sess.snapshotTx()
		}
		sess.txStatus = 'T'
	case rewrite.OpCommit:
		tag := s.Tag
		switch sess.txStatus {
		case 'I':
			sess.warning("there is no transaction in progress")
		case 'E':
			tag = "ROLLBACK"
		}
		if sess.tx != nil {
			if sess.txStatus == 'E' {
				sess.rollbackTx()
			} else {
				sess.restoreLocal(sess.tx)
			}
		}
		sess.txStatus, sess.tx = 'I', nil
		clear(sess.portals) // portals last until the end of their transaction
		sess.complete(tag)
		return nil
	case rewrite.OpRollback:
		if sess.txStatus == 'I' {
			sess.warning("there is no transaction in progress")
		}
		if sess.tx != nil {
			sess.rollbackTx()
		}
		sess.txStatus, sess.tx = 'I', nil
		clear(sess.portals)
	case rewrite.OpSavepoint, rewrite.OpRelease, rewrite.OpRollbackTo:
		if sess.txStatus == 'I' {
			return pgerror.Newf("25P01", "%s can only be used in transaction blocks", s.Tag).
				WithHint("start a transaction with BEGIN first")
		}
		if err := sess.savepointOp(s.Op, s.Name); err != nil {
			return err
		}
		if s.Op == rewrite.OpRollbackTo {
			sess.txStatus = 'T'
		}
	case rewrite.OpDiscard:
		// Only DISCARD ALL touches what the proxy keeps (it includes RESET
		// ALL); DISCARD PLANS, SEQUENCES and TEMP have nothing to drop here.
		if s.Tag == "DISCARD ALL" {
			if sess.txStatus != 'I' || sess.tx != nil {
				return pgerror.Newf("25001", "DISCARD ALL cannot run inside a transaction block").
					WithHint("end the transaction with COMMIT or ROLLBACK first")
			}
			sess.restoreVars(sessionVars{settings: map[string]string{}})
			sess.prepared = map[string]*prepared{}
			sess.portals = map[string]*portal{}
		}
	case rewrite.OpDeallocate:
		if s.Name == "" {
			sess.prepared = map[string]*prepared{}
		} else if _, ok := sess.prepared[s.Name]; !ok {
			return pgerror.Newf(pgerror.CodeInvalidPreparedStatement, "prepared statement %q does not exist", s.Name)
		} else {
			delete(sess.prepared, s.Name)
		}
	}
	sess.complete(s.Tag)
	return nil
}

func (sess *session) complete(tag string) {
	sess.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

func (sess *session) warning(msg string) {
	sess.be.Send(&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "25001", Message: msg})
}

// set applies SET name = value; report sends ParameterStatus for settings
// clients track, as Postgres does when a SET takes effect.
func (sess *session) set(name, value string, report bool) error {
	if name == "" {
		return nil // SET TRANSACTION ...: everything is read-only already
	}
	if strings.HasPrefix(name, "dp.") {
		return sess.setDP(name, value)
	}
	if _, ok := sess.settings[name]; !ok && len(sess.settings) >= maxSettings {
		return pgerror.Newf(pgerror.CodeProgramLimitExceeded, "too many settings: dpproxy keeps at most %d per session", maxSettings).
			WithHint("RESET settings no longer needed")
	}
	sess.ownSettings()
	sess.settings[name] = value
	if reported, ok := reportedSettings[name]; ok {
		if name == "client_encoding" && !strings.EqualFold(strings.ReplaceAll(value, "-", ""), "utf8") && !strings.EqualFold(value, "unicode") {
			delete(sess.settings, name)
			return pgerror.Newf(pgerror.CodeFeatureNotSupported, "dpproxy supports only the UTF8 client encoding").
				WithHint("SET client_encoding = 'UTF8'")
		}
		if name == "client_encoding" {
			value = "UTF8"
		}
		if report {
			sess.be.Send(&pgproto3.ParameterStatus{Name: reported, Value: value})
		}
	}
	return nil
}

func (sess *session) setDP(name, value string) error {
	pol := sess.srv.Policy()
	switch name {
	case "dp.epsilon":
		eps, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		capEps := pol.EpsilonCap(sess.analyst)
		if err != nil || !(eps > 0) || math.IsInf(eps, 0) {
			return pgerror.RefuseSetting.New("invalid value for dp.epsilon: %q is not a positive number", value)
		}
		if eps > capEps {
			return pgerror.RefuseSetting.New("dp.epsilon %g exceeds your per-query cap of %g", eps, capEps).
				WithHint("SET dp.epsilon to at most %g", capEps)
		}
		sess.epsilon = eps
		return nil
	case "dp.delta":
		d, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || !(d > 0) || d >= 1e-3 {
			return pgerror.RefuseSetting.New("invalid value for dp.delta: %q must be a positive number below 0.001", value).
				WithHint("SET dp.delta = 1e-7")
		}
		sess.delta = d
		return nil
	case "dp.target_error":
		e, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || e < 0 || math.IsInf(e, 0) || math.IsNaN(e) {
			return pgerror.RefuseSetting.New("invalid value for dp.target_error: %q must be a non-negative number", value).
				WithHint("SET dp.target_error = 10 asks for counts and sums within ±10 at 95%%; 0 turns it off")
		}
		sess.targetError = e
		return nil
	}
	return pgerror.Newf(pgerror.CodeUndefinedObject, "unrecognized configuration parameter %q", name).
		WithHint("dpproxy's settings are dp.epsilon, dp.delta and dp.target_error (SET and SHOW), dp.budget and dp.max_epsilon (SHOW)")
}

// queryDelta is the δ a DP query with partition selection spends: SET
// dp.delta, else the policy's default, never above the analyst's cap.
func (sess *session) queryDelta() float64 {
	pol := sess.srv.Policy()
	d := pol.Defaults.Delta
	if sess.delta > 0 {
		d = sess.delta
	}
	if d <= 0 {
		d = defaultQueryDelta
	}
	return math.Min(d, pol.DeltaCap(sess.analyst))
}

// queryEpsilon is the ε the next DP query spends.
func (sess *session) queryEpsilon() float64 {
	if sess.epsilon > 0 {
		return sess.epsilon
	}
	pol := sess.srv.Policy()
	return math.Min(pol.Defaults.Epsilon, pol.EpsilonCap(sess.analyst))
}

func (sess *session) show(name string, a execArgs) error {
	value, ok := "", true
	switch {
	case name == "dp.epsilon":
		value = formatFloat(sess.queryEpsilon())
	case name == "dp.delta":
		value = formatFloat(sess.queryDelta())
	case name == "dp.target_error":
		value = formatFloat(sess.targetError)
	case name == "dp.max_epsilon":
		value = formatFloat(sess.srv.Policy().EpsilonCap(sess.analyst))
	case name == "dp.budget":
		if err := sess.refreshAnalyst(sess.srv.Policy()); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		bal, err := sess.srv.cfg.Ledger.Balance(ctx, sess.user)
		if err != nil {
			return pgerror.RefuseLedgerUnavailable.Wrap(err, "cannot read the privacy ledger")
		}
		budget := sess.analyst.Budget.Epsilon
		value = fmt.Sprintf("%s of %s left", formatFloat(math.Max(0, budget-bal.SpentEpsilon)), formatFloat(budget))
	case strings.HasPrefix(name, "dp."):
		return pgerror.Newf(pgerror.CodeUndefinedObject, "unrecognized configuration parameter %q", name).
			WithHint("SHOW dp.epsilon, dp.max_epsilon or dp.budget")
	default:
		if v, set := sess.settings[name]; set {
			value = v
		} else if v, local := localShow[name]; local {
			value = v
		} else {
			ok = false
		}
	}
	if !ok {
		return sess.runPassthrough(&rewrite.Statement{Kind: rewrite.KindPassthrough, SQL: "SHOW " + quoteShowName(name)}, a)
	}
	colName := showColumn(name)
	if a.describe {
		sess.be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{textField(colName)}})
	}
	sess.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
	sess.complete("SHOW")
	return nil
}

func quoteShowName(name string) string {
	if name == "all" || name == "transaction isolation level" {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func textField(name string) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// showColumn is SHOW's column name: the setting's canonical spelling
// (DateStyle, TimeZone), as Postgres reports it.
func showColumn(name string) string {
	if name == "transaction isolation level" {
		return "transaction_isolation"
	}
	if canon, ok := reportedSettings[name]; ok {
		return canon
	}
	return name
}
