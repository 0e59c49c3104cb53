package wire

import (
	"maps"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Settings follow transactions, as in Postgres: what a transaction SETs is
// undone by ROLLBACK (or COMMIT of a failed transaction), SET LOCAL lasts
// until the transaction ends, ROLLBACK TO SAVEPOINT undoes what was set
// after the savepoint, and the statements of a multi-statement Query run in
// one implicit transaction, so an error undoes their SETs too. This matters
// most for dp.epsilon: an analyst who rolls back a SET must not keep paying
// the rolled-back price.

// sessionVars are the settings a transaction's end can undo.
type sessionVars struct {
	settings                    map[string]string
	epsilon, delta, targetError float64
}

type savepoint struct {
	name string
	vars sessionVars
}

// txState is what an explicit transaction block remembers.
type txState struct {
	start      sessionVars
	local      map[string]bool // names SET LOCAL in this transaction
	savepoints []savepoint
}

func (sess *session) vars() sessionVars {
	return sessionVars{settings: maps.Clone(sess.settings), epsilon: sess.epsilon, delta: sess.delta, targetError: sess.targetError}
}

// restoreVars puts v back, and reports reported settings whose value
// changed with ParameterStatus, as Postgres does.
func (sess *session) restoreVars(v sessionVars) {
	old := sess.settings
	sess.settings = maps.Clone(v.settings)
	sess.epsilon, sess.delta, sess.targetError = v.epsilon, v.delta, v.targetError
	for name, reported := range reportedSettings {
		before, after := old[name], sess.settings[name]
		if before == after {
			continue
		}
		if after == "" {
			after = sess.defaultSetting(name)
		}
		if after != "" {
			sess.be.Send(&pgproto3.ParameterStatus{Name: reported, Value: after})
		}
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
	for name := range tx.local {
		switch name {
		case "dp.epsilon":
			v.epsilon = tx.start.epsilon
		case "dp.delta":
			v.delta = tx.start.delta
		case "dp.target_error":
			v.targetError = tx.start.targetError
		default:
			if prev, ok := tx.start.settings[name]; ok {
				v.settings[name] = prev
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
		tx.savepoints = append(tx.savepoints, savepoint{name: name, vars: sess.vars()})
		return nil
	}
	i := len(tx.savepoints) - 1
	for i >= 0 && tx.savepoints[i].name != name {
		i--
	}
	if i < 0 {
		return pgerror.Newf("3B001", "savepoint %q does not exist", name)
	}
	if op == rewrite.OpRelease {
		tx.savepoints = tx.savepoints[:i]
		return nil
	}
	sess.restoreVars(tx.savepoints[i].vars)
	tx.savepoints = tx.savepoints[:i+1]
	return nil
}
