package wire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// DP statements prepared upstream.
//
// A statement sent alone (readOnlyRows) with no parameters is prepared on
// a pooled upstream connection the second time that connection
// runs its text, and then only bound and executed: PostgreSQL parses,
// analyses and plans a trivial statement in about a fifth of its time
// (pgbench -M prepared against -M simple, 16 clients: 30.7k against 25.4k
// TPS on the bench machine), and the proxy's plan cache already sends the
// same text for a repeated statement. A text seen once goes unprepared, so
// one-off statements cost no extra round trip and take no slot; a
// connection holds at most maxPreparedPerConn statements, so ad hoc texts
// cannot grow a backend's memory without bound. A guarded statement and
// its guard (rewrite.Plan.Guard) are both prepared, and run in one
// REPEATABLE READ transaction sent as a single extended-protocol batch
// (BEGIN, the statement, the guard, COMMIT; one Sync), keeping the order
// and the one snapshot of the unprepared path (readOnlyRows): parsing and
// planning the guard's catalog query cost PostgreSQL ~0.4 ms a statement.
// Statements with parameters (their types come from each client's Parse)
// keep the simple or extended path.
//
// A statement's name is a digest of its text, so a Bind that reaches a
// backend other than the one that prepared it (a transaction-mode pooler
// between dpproxy and PostgreSQL) runs the same text or fails; it can never
// run another statement prepared under the same name.
//
// Failures that fall back to sending the statement unprepared, before any
// row is delivered (the charge covers the one answer either way; in a
// guarded batch whose guard was lost the statement has run, its rows are
// discarded, and it runs once more):
//   - "cached plan must not change result type" (0A000 from
//     RevalidateCachedQuery): a column's type changed upstream; the
//     statement is dropped and prepared again on its next run. A guarded
//     batch's transaction is rolled back first.
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

// prepare returns the name under which text is prepared on pc. A text not
// yet prepared is prepared when the connection has run it before (or at
// once when now) and has a slot left; otherwise errNotPrepared.
func (ps *preparedStmts) prepare(ctx context.Context, pc *pgconn.PgConn, text string, now bool) (string, error) {
	if name, ok := ps.names[text]; ok {
		return name, nil
	}
	if _, again := ps.seen[text]; (!again && !now) || len(ps.names) >= maxPreparedPerConn {
		ps.remember(text)
		return "", errNotPrepared
	}
	name := statementName(text)
	sd, err := pc.Prepare(ctx, name, text, nil)
	var pge *pgconn.PgError
	switch {
	case errors.As(err, &pge) && pge.Code == "42P05": // already exists: not ours
		return "", errLostPrepared
	case err != nil:
		return "", err
	case len(sd.ParamOIDs) > 0:
		// A $n in a statement run without values: PostgreSQL's own error
		// comes from the unprepared path.
		_ = pc.Deallocate(ctx, name)
		return "", errNotPrepared
	}
	delete(ps.seen, text)
	ps.names[text] = name
	return name, nil
}

// remember notes that the connection ran text unprepared.
func (ps *preparedStmts) remember(text string) {
	if len(ps.seen) >= maxSeenPerConn {
		clear(ps.seen)
	}
	ps.seen[text] = struct{}{}
}

// room reports whether the slots left hold whichever of texts are not
// prepared yet: a guarded statement takes its slot only with its guard's.
func (ps *preparedStmts) room(texts ...string) bool {
	need := 0
	for _, t := range texts {
		if _, ok := ps.names[t]; !ok {
			need++
		}
	}
	return len(ps.names)+need <= maxPreparedPerConn
}

// drop forgets text's prepared statement and deallocates it; text is
// prepared again on its next run.
func (ps *preparedStmts) drop(ctx context.Context, pc *pgconn.PgConn, text string) {
	if name, ok := ps.names[text]; ok {
		delete(ps.names, text)
		ps.seen[text] = struct{}{}
		_ = pc.Deallocate(ctx, name)
	}
}

// execPrepared runs sql, a parameterless statement that may go alone,
// prepared on pc, and returns its rows in text format. With a guard
// (rewrite.Plan.Guard), sql and then the guard run prepared in one
// REPEATABLE READ READ ONLY transaction, sent as one extended-protocol
// batch; a guard that is not true gives errGuardFailed. errNotPrepared and
// errLostPrepared mean nothing ran and sql should be sent as before.
func execPrepared(ctx context.Context, pc *pgconn.PgConn, sql, guard string) ([][][]byte, error) {
	ps := preparedOn(pc)
	if guard != "" && !ps.room(sql, guard) {
		ps.remember(sql)
		return nil, errNotPrepared
	}
	name, err := ps.prepare(ctx, pc, sql, false)
	if err != nil {
		return nil, err
	}
	if guard == "" {
		res := pc.ExecPrepared(ctx, name, nil, nil, nil).Read()
		if err := ps.fallback(ctx, pc, res.Err, len(res.Rows) == 0, sql); err != nil {
			return nil, err
		}
		return res.Rows, res.Err
	}
	guardName, err := ps.prepare(ctx, pc, guard, true)
	if err != nil {
		return nil, err
	}
	b := &pgconn.Batch{}
	b.ExecParams("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", nil, nil, nil, nil)
	b.ExecPrepared(name, nil, nil, nil)
	b.ExecPrepared(guardName, nil, nil, nil)
	b.ExecParams("COMMIT", nil, nil, nil, nil)
	results, err := pc.ExecBatch(ctx, b).ReadAll()
	if err != nil {
		// The transaction is aborted: end it before anything else runs on
		// the connection (a failed ROLLBACK leaves it to the pool to drop).
		if pc.TxStatus() == 'E' {
			_, _ = pc.Exec(ctx, "ROLLBACK").ReadAll()
		}
		// A guard lost or changed is the guard's fault, not sql's: sql's
		// result completed (an error at Bind ends the results before the
		// failing statement's).
		failed := sql
		if len(results) >= 2 && results[1].Err == nil {
			failed = guard
		}
		if fb := ps.fallback(ctx, pc, err, true, failed); fb != nil {
			return nil, fb
		}
		return nil, err
	}
	if len(results) != 4 {
		return nil, fmt.Errorf("unexpected upstream results: %d", len(results))
	}
	if g := results[2]; len(g.Rows) != 1 || len(g.Rows[0]) != 1 || string(g.Rows[0][0]) != "t" {
		return nil, errGuardFailed
	}
	return results[1].Rows, nil
}

// fallback maps an error of running text prepared to errNotPrepared or
// errLostPrepared when sending the statement unprepared would answer (no
// rows delivered, and the error is about the prepared statement rather
// than the query), or nil.
func (ps *preparedStmts) fallback(ctx context.Context, pc *pgconn.PgConn, err error, noRows bool, text string) error {
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || !noRows {
		return nil
	}
	switch {
	case pge.Code == "0A000" && pge.Routine == "RevalidateCachedQuery":
		ps.drop(ctx, pc, text)
		return errNotPrepared
	case pge.Code == "26000": // does not exist
		delete(ps.names, text)
		return errLostPrepared
	}
	return nil
}
