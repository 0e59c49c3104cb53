package wire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// DP statements prepared upstream.
//
// A statement sent alone (readOnlyRows) with no parameters and no guard is
// prepared on a pooled upstream connection the second time that connection
// runs its text, and then only bound and executed: PostgreSQL parses,
// analyses and plans a trivial statement in about a fifth of its time
// (pgbench -M prepared against -M simple, 16 clients: 30.7k against 25.4k
// TPS on the bench machine), and the proxy's plan cache already sends the
// same text for a repeated statement. A text seen once goes unprepared, so
// one-off statements cost no extra round trip and take no slot; a
// connection holds at most maxPreparedPerConn statements, so ad hoc texts
// cannot grow a backend's memory without bound. Statements with parameters
// (their types come from each client's Parse) and guarded ones (a
// transaction of several statements) keep the simple or extended path.
//
// A statement's name is a digest of its text, so a Bind that reaches a
// backend other than the one that prepared it (a transaction-mode pooler
// between dpproxy and PostgreSQL) runs the same text or fails; it can never
// run another statement prepared under the same name.
//
// Failures that fall back to sending the statement unprepared, before any
// row is read (the charge covers the one answer either way):
//   - "cached plan must not change result type" (0A000 from
//     RevalidateCachedQuery): a column's type changed upstream; the
//     statement is dropped and prepared again on its next run.
//   - 26000 "prepared statement … does not exist" on Bind, or 42P05 "…
//     already exists" on Parse: the upstream does not keep a connection's
//     prepared statements to itself (a transaction-mode pooler); the server
//     stops preparing (readOnlyRows).

const (
	// maxPreparedPerConn bounds the statements prepared on one upstream
	// connection.
	maxPreparedPerConn = 64
	// maxSeenPerConn bounds the texts a connection remembers having run
	// once; past it they are forgotten and counted again.
	maxSeenPerConn = 256
)

// preparedStmts are the statements prepared on one upstream connection, kept
// in its pgconn.CustomData; only the session holding the connection uses it.
type preparedStmts struct {
	names map[string]string   // SQL text -> statement name
	seen  map[string]struct{} // texts run once, unprepared
}

const preparedKey = "dpproxy.prepared"

func preparedOn(pc *pgconn.PgConn) *preparedStmts {
	data := pc.CustomData()
	ps, _ := data[preparedKey].(*preparedStmts)
	if ps == nil {
		ps = &preparedStmts{names: map[string]string{}, seen: map[string]struct{}{}}
		data[preparedKey] = ps
	}
	return ps
}

func statementName(sql string) string {
	sum := sha256.Sum256([]byte(sql))
	return "dpproxy_" + hex.EncodeToString(sum[:16])
}

// errNotPrepared: execPrepared did not run the statement; send it unprepared.
var errNotPrepared = errors.New("statement not prepared upstream")

// errLostPrepared: the upstream does not keep this connection's prepared
// statements, as a transaction-mode pooler does not; send the statement
// unprepared and stop preparing.
var errLostPrepared = errors.New("the upstream lost a prepared statement")

// execPrepared runs sql, a parameterless statement that may go alone,
// prepared on pc, and returns its rows in text format. errNotPrepared and
// errLostPrepared mean nothing ran and sql should be sent as before.
func execPrepared(ctx context.Context, pc *pgconn.PgConn, sql string) ([][][]byte, error) {
	ps := preparedOn(pc)
	name, ok := ps.names[sql]
	if !ok {
		if _, again := ps.seen[sql]; !again || len(ps.names) >= maxPreparedPerConn {
			if len(ps.seen) >= maxSeenPerConn {
				clear(ps.seen)
			}
			ps.seen[sql] = struct{}{}
			return nil, errNotPrepared
		}
		name = statementName(sql)
		sd, err := pc.Prepare(ctx, name, sql, nil)
		var pge *pgconn.PgError
		switch {
		case errors.As(err, &pge) && pge.Code == "42P05": // already exists: not ours
			return nil, errLostPrepared
		case err != nil:
			return nil, err
		case len(sd.ParamOIDs) > 0:
			// A $n in a statement run without values: PostgreSQL's own
			// error comes from the unprepared path.
			_ = pc.Deallocate(ctx, name)
			return nil, errNotPrepared
		}
		delete(ps.seen, sql)
		ps.names[sql] = name
	}
	res := pc.ExecPrepared(ctx, name, nil, nil, nil).Read()
	var pge *pgconn.PgError
	if errors.As(res.Err, &pge) && len(res.Rows) == 0 {
		switch {
		case pge.Code == "0A000" && pge.Routine == "RevalidateCachedQuery":
			delete(ps.names, sql)
			ps.seen[sql] = struct{}{} // prepared again on its next run
			_ = pc.Deallocate(ctx, name)
			return nil, errNotPrepared
		case pge.Code == "26000": // does not exist
			delete(ps.names, sql)
			return nil, errLostPrepared
		}
	}
	return res.Rows, res.Err
}
