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
// A statement sent alone (readOnlyRows) is prepared on a pooled upstream
// connection the second time that connection runs its text, and then only
// bound and executed: PostgreSQL parses,
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
//
// Statements with bound parameters are not prepared. Their parameters go
// upstream untyped (dpparams.go), and a prepared statement would keep the
// types PostgreSQL inferred at Parse past an ALTER COLUMN … TYPE, while the
// unprepared path infers them afresh on every run; in a generic plan a
// parameter of a kept type could even be converted on each row reached.
//
// A statement's name is a digest of its text, so a
// Bind that reaches a backend other than the one that prepared it (a
// transaction-mode pooler between dpproxy and PostgreSQL) runs the same
// statement or fails; it can never run another statement prepared under
// the same name.
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
	// maxSeenPerConn bounds the statements a connection remembers having
	// run once (and those it will not prepare); past it they are forgotten
	// and counted again.
	maxSeenPerConn = 256
)

// preparedStmts are the statements prepared on one upstream connection, kept
// in its pgconn.CustomData; only the session holding the connection uses it.
type preparedStmts struct {
	names map[stmtKey]string   // prepared, under this name
	seen  map[stmtKey]struct{} // run once, unprepared
	// refused are statements with a $n but no values: every run fails, and
	// preparing them again would cost a round trip each time.
	refused map[stmtKey]struct{}
}

// stmtKey identifies a statement to prepare: a digest of its text, so a
// connection's bookkeeping stays small whatever the texts' length.
type stmtKey [sha256.Size]byte

func keyOf(text string) stmtKey { return sha256.Sum256([]byte(text)) }

// name is the statement's name upstream.
func (k stmtKey) name() string { return "dpproxy_" + hex.EncodeToString(k[:16]) }

const preparedKey = "dpproxy.prepared"

func preparedOn(pc *pgconn.PgConn) *preparedStmts {
	data := pc.CustomData()
	ps, _ := data[preparedKey].(*preparedStmts)
	if ps == nil {
		ps = &preparedStmts{names: map[stmtKey]string{}, seen: map[stmtKey]struct{}{}, refused: map[stmtKey]struct{}{}}
		data[preparedKey] = ps
	}
	return ps
}

// errNotPrepared: execPrepared did not run the statement; send it unprepared.
var errNotPrepared = errors.New("statement not prepared upstream")

// errLostPrepared: the upstream does not keep this connection's prepared
// statements, as a transaction-mode pooler does not; send the statement
// unprepared and stop preparing.
var errLostPrepared = errors.New("the upstream lost a prepared statement")

// prepare returns the name under which text (key is keyOf it) is
// prepared on pc. A statement not yet prepared is prepared when the
// connection has run it before (or at once when now) and has a slot left;
// otherwise errNotPrepared.
func (ps *preparedStmts) prepare(ctx context.Context, pc *pgconn.PgConn, text string, key stmtKey, now bool) (string, error) {
	if name, ok := ps.names[key]; ok {
		return name, nil
	}
	if _, no := ps.refused[key]; no {
		return "", errNotPrepared
	}
	if _, again := ps.seen[key]; (!again && !now) || len(ps.names) >= maxPreparedPerConn {
		ps.remember(key)
		return "", errNotPrepared
	}
	name := key.name()
	sd, err := pc.Prepare(ctx, name, text, nil)
	var pge *pgconn.PgError
	switch {
	case errors.As(err, &pge) && pge.Code == "42P05": // already exists: not ours
		return "", errLostPrepared
	case err != nil:
		return "", err
	case len(sd.ParamOIDs) != 0:
		// A $n without a value: PostgreSQL's own error comes from the
		// unprepared path.
		_ = pc.Deallocate(ctx, name)
		delete(ps.seen, key)
		if len(ps.refused) >= maxSeenPerConn {
			clear(ps.refused)
		}
		ps.refused[key] = struct{}{}
		return "", errNotPrepared
	}
	delete(ps.seen, key)
	ps.names[key] = name
	return name, nil
}

// remember notes that the connection ran a statement unprepared.
func (ps *preparedStmts) remember(key stmtKey) {
	if len(ps.seen) >= maxSeenPerConn {
		clear(ps.seen)
	}
	ps.seen[key] = struct{}{}
}

// room reports whether the slots left hold whichever of keys are not
// prepared yet: a guarded statement takes its slot only with its guard's.
func (ps *preparedStmts) room(keys ...stmtKey) bool {
	need := 0
	for _, k := range keys {
		if _, ok := ps.names[k]; !ok {
			need++
		}
	}
	return len(ps.names)+need <= maxPreparedPerConn
}

// drop forgets the prepared statement of key and deallocates it; it is
// prepared again on its next run.
func (ps *preparedStmts) drop(ctx context.Context, pc *pgconn.PgConn, key stmtKey) {
	if name, ok := ps.names[key]; ok {
		delete(ps.names, key)
		ps.seen[key] = struct{}{}
		_ = pc.Deallocate(ctx, name)
	}
}

// execPrepared runs sql, a statement that may go alone, prepared on pc,
// and returns its rows in text format; one with bound parameters is not
// prepared (errNotPrepared). With a guard (rewrite.Plan.Guard), sql and
// then the guard run prepared in one REPEATABLE READ READ ONLY
// transaction, sent as one extended-protocol batch; a guard that is not
// true gives errGuardFailed. errNotPrepared and errLostPrepared mean
// nothing ran and sql should be sent as before.
func execPrepared(ctx context.Context, pc *pgconn.PgConn, sql string, a execArgs, guard string) ([][][]byte, error) {
	if len(a.params) > 0 {
		return nil, errNotPrepared
	}
	ps := preparedOn(pc)
	key := keyOf(sql)
	var guardKey stmtKey
	if guard != "" {
		if guardKey = keyOf(guard); !ps.room(key, guardKey) {
			ps.remember(key)
			return nil, errNotPrepared
		}
	}
	name, err := ps.prepare(ctx, pc, sql, key, false)
	if err != nil {
		return nil, err
	}
	if guard == "" {
		res := pc.ExecPrepared(ctx, name, nil, nil, nil).Read()
		if err := ps.fallback(ctx, pc, res.Err, len(res.Rows) == 0, key); err != nil {
			return nil, err
		}
		return res.Rows, res.Err
	}
	guardName, err := ps.prepare(ctx, pc, guard, guardKey, true)
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
		failed := key
		if len(results) >= 2 && results[1].Err == nil {
			failed = guardKey
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

// fallback maps an error of running key's statement prepared to errNotPrepared or
// errLostPrepared when sending the statement unprepared would answer (no
// rows delivered, and the error is about the prepared statement rather
// than the query), or nil.
func (ps *preparedStmts) fallback(ctx context.Context, pc *pgconn.PgConn, err error, noRows bool, key stmtKey) error {
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || !noRows {
		return nil
	}
	switch {
	case pge.Code == "0A000" && pge.Routine == "RevalidateCachedQuery":
		ps.drop(ctx, pc, key)
		return errNotPrepared
	case pge.Code == "26000": // does not exist
		delete(ps.names, key)
		return errLostPrepared
	}
	return nil
}
