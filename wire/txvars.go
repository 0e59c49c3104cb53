package wire

import (
	"maps"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Settings follow transactions, as in Postgres: what a transaction SETs is
// undone by ROLLBACK (or COMMIT of a failed transaction), SET LOCAL lasts
// until the transaction ends (back to the value before the first SET LOCAL
// of that name), ROLLBACK TO SAVEPOINT undoes what was set after the
// savepoint, and the statements of a multi-statement Query, or the
// extended-protocol messages before a Sync, run in one implicit
// transaction, so an error undoes their SETs too and SET LOCAL lasts to
// its end. This matters most for dp.epsilon: an analyst who rolls back a
// SET must not keep paying the rolled-back price.

// sessionVars are the settings a transaction's end can undo.
type sessionVars struct {
	settings                    map[string]string
	epsilon, delta, targetError float64
}

type savepoint struct {
	name  string
	vars  sessionVars
	local map[string]sessionVars // shared with txState.local (localShared)
	// portalSeq is the last portal opened before the savepoint; ROLLBACK
	// TO closes the later ones.
	portalSeq uint64
}

// txState is what a transaction remembers about settings.
type txState struct {
	// implicit: a multi-statement Query, or extended-protocol messages
	// before Sync, outside a transaction block (txStatus stays 'I').
	implicit bool
	// start is the settings when the transaction began, taken at BEGIN or,
	// for an implicit transaction, lazily before its first SET or RESET
	// (started), so statements that change no setting copy nothing.
	start   sessionVars
	started bool
	// local holds, for each name SET LOCAL in this transaction, the
	// settings as they were just before its first SET LOCAL.
	local map[string]sessionVars
	// localShared: local is also held by a savepoint, so it is copied
	// before it is changed (ownLocal).
	localShared bool
	savepoints  []savepoint
}

// ownLocal makes tx.local the transaction's own before a change.
func (tx *txState) ownLocal() {
	if tx.localShared {
		tx.local, tx.localShared = maps.Clone(tx.local), false
	}
}

// ownSettings makes sess.settings the session's own before a change.
func (sess *session) ownSettings() {
	if sess.settingsShared {
		sess.settings, sess.settingsShared = maps.Clone(sess.settings), false
	}
}

// beginImplicit starts an implicit transaction unless one is open.
func (sess *session) beginImplicit() {
	if sess.tx == nil && sess.txStatus == 'I' {
		sess.implicitTx = txState{implicit: true} // reused: no allocation per Execute
		sess.tx = &sess.implicitTx
	}
}

// snapshotTx takes the open transaction's start, if it has none yet;
// callers run it before changing a setting.
func (sess *session) snapshotTx() {
	if tx := sess.tx; tx != nil && !tx.started {
		tx.start, tx.started = sess.vars(), true
	}
}

// rollbackTx puts back the settings the transaction started with.
func (sess *session) rollbackTx() {
	if tx := sess.tx; tx != nil && tx.started {
		sess.restoreVars(tx.start)
	}
}

// endImplicit ends the implicit transaction, if one is open: an error
// undoes its settings, success undoes only its SET LOCALs.
func (sess *session) endImplicit(failed bool) {
	tx := sess.tx
	if tx == nil || !tx.implicit {
		return
	}
	if failed {
		sess.rollbackTx()
	} else {
		sess.restoreLocal(tx)
	}
	sess.tx = nil
}

// noteSet records a SET or RESET of name in the open transaction: SET LOCAL
// remembers the value to go back to; a plain SET or RESET makes the value
// outlive the transaction (unless it is rolled back).
func (sess *session) noteSet(name string, local bool, before sessionVars) {
	tx := sess.tx
	if tx == nil || name == "" {
		return
	}
	if !local {
		if _, ok := tx.local[name]; ok {
			tx.ownLocal()
			delete(tx.local, name)
		}
		return
	}
	if _, seen := tx.local[name]; !seen {
		tx.ownLocal()
		if tx.local == nil {
			tx.local = map[string]sessionVars{}
		}
		tx.local[name] = before
	}
}

// vars snapshots the settings; the snapshot shares the settings map, which
// neither side changes afterwards (ownSettings).
func (sess *session) vars() sessionVars {
	sess.settingsShared = true
	return sessionVars{settings: sess.settings, epsilon: sess.epsilon, delta: sess.delta, targetError: sess.targetError}
}

// assignVars puts v back without reporting anything.
func (sess *session) assignVars(v sessionVars) {
	sess.settings, sess.settingsShared = v.settings, true
	sess.epsilon, sess.delta, sess.targetError = v.epsilon, v.delta, v.targetError
}

// restoreVars puts v back, and reports reported settings whose value
// changed with ParameterStatus, as Postgres does.
func (sess *session) restoreVars(v sessionVars) {
	old := sess.settings
	sess.assignVars(v)
	for name, reported := range reportedSettings {
		before, after := old[name], sess.settings[name]
		if before == after {
			continue
		}
		if after == "" {
			after = sess.defaultSetting(name)
		}
		if name == "client_encoding" {
			after = "UTF8" // the only encoding accepted, however it was spelled
		}
		sess.be.Send(&pgproto3.ParameterStatus{Name: reported, Value: after})
	}
}

// defaultSetting is what a reported setting reads when the session has not
// set it.
func (sess *session) defaultSetting(name string) string {
	if v, ok := localShow[name]; ok {
		return v
	}
	if name == "timezone" {
		return sess.srv.upstreamParams["TimeZone"]
	}
	return ""
}

// restoreLocal undoes, at the end of a transaction, the settings it SET
// LOCAL, leaving its plain SETs in force.
func (sess *session) restoreLocal(tx *txState) {
	if len(tx.local) == 0 {
		return
	}
	v := sess.vars()
	v.settings = maps.Clone(v.settings)
	for name, prev := range tx.local {
		switch name {
		case "dp.epsilon":
			v.epsilon = prev.epsilon
		case "dp.delta":
			v.delta = prev.delta
		case "dp.target_error":
			v.targetError = prev.targetError
		default:
			if value, ok := prev.settings[name]; ok {
				v.settings[name] = value
			} else {
				delete(v.settings, name)
			}
		}
	}
	sess.restoreVars(v)
}

// savepointOp keeps the savepoint stack: SAVEPOINT remembers the settings,
// RELEASE forgets the savepoint and those after it, ROLLBACK TO restores
// its settings and forgets only the later ones. An unknown name is an
// error, as in Postgres (3B001).
func (sess *session) savepointOp(op rewrite.SessionOp, name string) error {
	tx := sess.tx
	if tx == nil {
		return nil
	}
	if op == rewrite.OpSavepoint {
		if len(tx.savepoints) >= maxSavepoints {
			return pgerror.Newf(pgerror.CodeProgramLimitExceeded, "too many savepoints: dpproxy keeps at most %d in one transaction", maxSavepoints).
				WithHint("RELEASE savepoints no longer needed, or end the transaction")
		}
		tx.localShared = true
		tx.savepoints = append(tx.savepoints, savepoint{name: name, vars: sess.vars(), local: tx.local, portalSeq: sess.portalSeq})
		return nil
	}
	i := len(tx.savepoints) - 1
	for i >= 0 && tx.savepoints[i].name != name {
		i--
	}
	if i < 0 {
		return pgerror.Newf("3B001", "savepoint %q does not exist", name).
			WithHint("name a savepoint set with SAVEPOINT earlier in this transaction")
	}
	if op == rewrite.OpRelease {
		tx.savepoints = tx.savepoints[:i]
		return nil
	}
	sess.restoreVars(tx.savepoints[i].vars)
	tx.local, tx.localShared = tx.savepoints[i].local, true
	for name, p := range sess.portals {
		if p.seq > tx.savepoints[i].portalSeq {
			delete(sess.portals, name)
		}
	}
	tx.savepoints = tx.savepoints[:i+1]
	return nil
}
