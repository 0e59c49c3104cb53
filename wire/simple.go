package wire

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// simpleQuery answers a Query message: each statement in turn, stopping at
// the first error, as Postgres does.
func (sess *session) simpleQuery(sql string) {
	stmts, err := sess.classify(sql)
	// Several statements outside a transaction block run in one implicit
	// transaction (txvars.go): an error undoes their SETs, SET LOCAL lasts
	// to its end, a BEGIN among them takes them into its block, and after
	// a COMMIT or ROLLBACK the rest start another.
	multi := len(stmts) > 1 || err != nil && len(stmts) > 0 // err: a later statement was refused
	for _, st := range stmts {
		if multi {
			sess.beginImplicit()
		}
		if st.Kind == rewrite.KindEmpty {
			sess.be.Send(&pgproto3.EmptyQueryResponse{})
			continue
		}
		if xerr := sess.execute1(st, execArgs{describe: true}); xerr != nil {
			sess.sendError(xerr)
			sess.endImplicit(true)
			return
		}
	}
	if err != nil {
		sess.logStatement(sql, "refused", err)
		sess.sendError(err)
		sess.endImplicit(true)
		return
	}
	sess.endImplicit(false)
}

// execArgs carries what the extended protocol adds to a statement.
type execArgs struct {
	describe      bool // send RowDescription first (simple protocol)
	params        [][]byte
	paramFormats  []int16
	paramOIDs     []uint32
	resultFormats []int16
	// keep, for a DP statement executed with a row limit, receives the
	// answer's rows instead of the client; Execute then sends them in parts.
	keep *portal
}

// execute1 runs one classified statement and writes its result.
func (sess *session) execute1(st *rewrite.Statement, a execArgs) (err error) {
	sess.beginStatement(st)
	defer func() { sess.endStatement(st.SQL, err) }()
	if sess.txStatus == 'E' && !endsTransaction(st) {
		return pgerror.RefuseTransaction.New("current transaction is aborted, commands ignored until end of transaction block")
	}
	release, err := sess.acquireStatement(st)
	if err != nil {
		return err
	}
	defer release()
	switch st.Kind {
	case rewrite.KindEmpty:
		sess.be.Send(&pgproto3.EmptyQueryResponse{})
		return nil
	case rewrite.KindSession:
		return sess.runSession(st, a)
	case rewrite.KindPassthrough:
		return sess.runPassthrough(st, a)
	case rewrite.KindDP:
		return sess.runDP(st, a)
	case rewrite.KindExplain:
		return sess.runExplain(st, a)
	}
	return pgerror.RefuseUnsupported.New("unsupported statement")
}

func endsTransaction(st *rewrite.Statement) bool {
	if st.Kind != rewrite.KindSession {
		return false
	}
	switch st.Session.Op {
	case rewrite.OpCommit, rewrite.OpRollback, rewrite.OpRollbackTo:
		return true
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
