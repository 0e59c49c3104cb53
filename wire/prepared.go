package wire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// DP statements prepared upstream.
//
// A statement sent alone (readOnlyRows) is prepared on a pooled upstream
// connection the second time that connection runs its text with the same
// parameter types, and then only bound and executed: PostgreSQL parses,
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
// Bound parameters stay parameters: a statement with parameters is
// prepared with the types its client's Parse declared (0, unspecified,
// lets PostgreSQL infer one, as on the unprepared path) and executed with
// the values and formats of each Bind; the same text with other declared
// types is another statement. PostgreSQL then plans it as it plans any
// client's prepared statement (custom plans for the first five
// executions, then a generic plan when it costs no more; the DBA's
// plan_cache_mode applies).
//
// A statement's name is a digest of its text and parameter types, so a Bind that reaches a
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
	names map[string]string   // stmtKey -> statement name
	seen  map[string]struct{} // stmtKeys run once, unprepared
}

// stmtKey identifies a statement to prepare: its text and the parameter
// types it is prepared with.
func stmtKey(text string, paramOIDs []uint32) string {
	if len(paramOIDs) == 0 {
		return text
	}
	b := []byte(text)
	for _, oid := range paramOIDs {
		b = append(b, 0)
		b = strconv.AppendUint(b, uint64(oid), 10)
	}
	return string(b)
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

func statementName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "dpproxy_" + hex.EncodeToString(sum[:16])
}

// errNotPrepared: execPrepared did not run the statement; send it unprepared.
var errNotPrepared = errors.New("statement not prepared upstream")

// errLostPrepared: the upstream does not keep this connection's prepared
// statements, as a transaction-mode pooler does not; send the statement
// unprepared and stop preparing.
var errLostPrepared = errors.New("the upstream lost a prepared statement")

// prepare returns the name under which text, with nParams parameters of
// types paramOIDs, is prepared on pc. A statement not yet prepared is
// prepared when the connection has run it before (or at once when now)
// and has a slot left; otherwise errNotPrepared.
func (ps *preparedStmts) prepare(ctx context.Context, pc *pgconn.PgConn, text string, nParams int, paramOIDs []uint32, now bool) (string, error) {
	key := stmtKey(text, paramOIDs)
	if name, ok := ps.names[key]; ok {
		return name, nil
	}
	if _, again := ps.seen[key]; (!again && !now) || len(ps.names) >= maxPreparedPerConn {
		ps.remember(key)
		return "", errNotPrepared
	}
	name := statementName(key)
	sd, err := pc.Prepare(ctx, name, text, paramOIDs)
	var pge *pgconn.PgError
	switch {
	case errors.As(err, &pge) && pge.Code == "42P05": // already exists: not ours
		return "", errLostPrepared
	case err != nil:
		return "", err
	case len(sd.ParamOIDs) != nParams:
		// A $n without a value, or a value without a $n: PostgreSQL's own
		// error comes from the unprepared path.
		_ = pc.Deallocate(ctx, name)
		return "", errNotPrepared
	}
	delete(ps.seen, key)
	ps.names[key] = name
	return name, nil
}

// remember notes that the connection ran a statement (a stmtKey)
// unprepared.
func (ps *preparedStmts) remember(key string) {
	if len(ps.seen) >= maxSeenPerConn {
		clear(ps.seen)
	}
	ps.seen[key] = struct{}{}
}

// room reports whether the slots left hold whichever of keys are not
// prepared yet: a guarded statement takes its slot only with its guard's.
func (ps *preparedStmts) room(keys ...string) bool {
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
func (ps *preparedStmts) drop(ctx context.Context, pc *pgconn.PgConn, key string) {
	if name, ok := ps.names[key]; ok {
		delete(ps.names, key)
		ps.seen[key] = struct{}{}
		_ = pc.Deallocate(ctx, name)
	}
}

// execPrepared runs sql, a statement that may go alone, with a's bound
// parameters, prepared on pc, and returns its rows in text format. With a
// guard (rewrite.Plan.Guard), sql and then the guard run prepared in one
// REPEATABLE READ READ ONLY transaction, sent as one extended-protocol
// batch; a guard that is not true gives errGuardFailed. errNotPrepared and
// errLostPrepared mean nothing ran and sql should be sent as before.
func execPrepared(ctx context.Context, pc *pgconn.PgConn, sql string, a execArgs, guard string) ([][][]byte, error) {
	ps := preparedOn(pc)
	oids := paramOIDs(a)
	key := stmtKey(sql, oids)
	if guard != "" && !ps.room(key, guard) {
		ps.remember(key)
		return nil, errNotPrepared
	}
	name, err := ps.prepare(ctx, pc, sql, len(a.params), oids, false)
	if err != nil {
		return nil, err
	}
	if guard == "" {
		res := pc.ExecPrepared(ctx, name, a.params, a.paramFormats, nil).Read()
		if err := ps.fallback(ctx, pc, res.Err, len(res.Rows) == 0, key); err != nil {
			return nil, err
		}
		return res.Rows, res.Err
	}
	guardName, err := ps.prepare(ctx, pc, guard, 0, nil, true)
	if err != nil {
		return nil, err
	}
	b := &pgconn.Batch{}
	b.ExecParams("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", nil, nil, nil, nil)
	b.ExecPrepared(name, a.params, a.paramFormats, nil)
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

// fallback maps an error of running key's statement prepared to errNotPrepared or
// errLostPrepared when sending the statement unprepared would answer (no
// rows delivered, and the error is about the prepared statement rather
// than the query), or nil.
func (ps *preparedStmts) fallback(ctx context.Context, pc *pgconn.PgConn, err error, noRows bool, key string) error {
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
