package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// readOnlyRows runs one rewritten DP statement upstream, read-only and
// under a statement timeout, in one round trip, and returns its rows in
// text format. When alone (Server.sendAlone: the pooled session already
// starts read-only with the policy's timeout) and there is no guard, the
// statement is sent by itself. Otherwise it is wrapped:
// `BEGIN READ ONLY; SET LOCAL statement_timeout = …; sql; [guard;] COMMIT`,
// as one simple-protocol Query, or with bound parameters as one
// extended-protocol batch (Parse/Bind/Execute each, one Sync), so the
// parameters reach upstream as parameters, never spliced into the text.
//
// settings (rewrite.Plan.Settings, the rewriter's own constants) are set
// with SET LOCAL after BEGIN, so a statement with any is always wrapped.
//
// A non-empty guard (rewrite.Plan.Guard) runs after sql in a REPEATABLE
// READ transaction, so that it and sql see one snapshot and the same
// tables; unless it returns true the rows are discarded and errGuardFailed
// returned.
//
// Unless unprepared is nil or set, a statement sent alone, with its
// parameters and its guard if it has one, may be prepared on the connection
// (prepared.go); unprepared is set, and the change logged to log, when the
// upstream turns out not to keep prepared statements.
func readOnlyRows(ctx context.Context, conn *pgconn.PgConn, timeout time.Duration, sql string, a execArgs, guard string, settings []string, alone bool,
	unprepared *atomic.Bool, log *slog.Logger) ([][][]byte, error) {
	defer guardCancel(ctx, conn)()
	alone = alone && len(settings) == 0 // SET LOCAL needs the transaction
	if alone && unprepared != nil && !unprepared.Load() {
		rows, err := execPrepared(ctx, conn, sql, a, guard)
		switch {
		case errors.Is(err, errLostPrepared):
			if unprepared.CompareAndSwap(false, true) {
				log.Warn("the upstream does not keep prepared statements to a connection (a transaction-mode pooler?); DP statements go unprepared from now on")
			}
		case !errors.Is(err, errNotPrepared):
			return rows, err
		}
	}
	if alone && guard == "" {
		if len(a.params) == 0 {
			results, err := conn.Exec(ctx, sql).ReadAll()
			if err != nil {
				return nil, err
			}
			if len(results) != 1 || results[0].Err != nil {
				return nil, fmt.Errorf("unexpected upstream results: %d", len(results))
			}
			return results[0].Rows, nil
		}
		res := conn.ExecParams(ctx, sql, a.params, paramOIDs(a), a.paramFormats, nil).Read()
		return res.Rows, res.Err
	}
	stmts := []string{"BEGIN READ ONLY", fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds())}
	if guard != "" {
		stmts[0] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
	}
	for _, set := range settings {
		stmts = append(stmts, "SET LOCAL "+set)
	}
	at := len(stmts) // sql's result
	stmts = append(stmts, sql)
	if guard != "" {
		// After sql, not before: sql locks the tables it read until COMMIT,
		// so the guard's table names resolve to those very tables (a rename
		// swap committed while sql waited for its lock cannot slip between),
		// and it sees the catalog in sql's snapshot.
		stmts = append(stmts, guard)
	}
	stmts = append(stmts, "COMMIT")
	var results []*pgconn.Result
	var err error
	if len(a.params) == 0 {
		results, err = conn.Exec(ctx, strings.Join(stmts, "; ")).ReadAll()
	} else {
		b := &pgconn.Batch{}
		for i, st := range stmts {
			if i == at {
				b.ExecParams(st, a.params, paramOIDs(a), a.paramFormats, nil)
			} else {
				b.ExecParams(st, nil, nil, nil, nil)
			}
		}
		results, err = conn.ExecBatch(ctx, b).ReadAll()
	}
	if err != nil {
		return nil, err
	}
	if len(results) != len(stmts) || results[at].Err != nil {
		return nil, fmt.Errorf("unexpected upstream results: %d", len(results))
	}
	if guard != "" {
		if g := results[at+1]; len(g.Rows) != 1 || len(g.Rows[0]) != 1 || string(g.Rows[0][0]) != "t" {
			return nil, errGuardFailed
		}
	}
	return results[at].Rows, nil
}

// paramOIDs are the parameter types to send upstream: at most one per
// parameter (a Parse may declare more types than Bind sends values).
func paramOIDs(a execArgs) []uint32 {
	if len(a.paramOIDs) > len(a.params) {
		return a.paramOIDs[:len(a.params)]
	}
	return a.paramOIDs
}

// errGuardFailed: a catalog fact a plan relied on (a unique index, CHECK
// constraints) was not there in the query's snapshot.
var errGuardFailed = errors.New("a catalog fact the plan relied on is gone")

// guardCancel makes a cancelled statement context (a CancelRequest from the
// analyst, or the statement timeout) cancel the upstream statement too:
// pgconn on its own only drops the connection, leaving the upstream
// backend running. It sends a CancelRequest upstream. The returned cleanup
// must run before the connection goes back to the pool: if the cancel was
// sent, the connection is closed so a late cancel cannot hit a statement of
// another session that reuses it.
//
// A CancelRequest is not enough on its own: Postgres ignores one that
// arrives while the backend is still reading the statement (between Parse
// and Execute, or on a loaded machine before execution starts), and the
// statement then runs to its timeout. So the socket is closed at once
// (pgconn would otherwise keep it open for up to 15 s draining), and the
// pool's sessions set client_connection_check_interval
// (UpstreamPoolConfig), so the
// backend notices the closed socket and stops within a second.
func guardCancel(ctx context.Context, pc *pgconn.PgConn) (cleanup func()) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pc.CancelRequest(cctx)
	})
	return func() {
		if !stop() {
			<-fired
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = pc.Close(cctx)
			_ = pc.Conn().Close()
		}
	}
}

// canceledError is what the analyst sees when a statement was cancelled,
// with Postgres's SQLSTATE and wording; nil if ctx was not cancelled.
func canceledError(ctx context.Context) error {
	switch ctx.Err() {
	case context.Canceled:
		return pgerror.Newf(pgerror.CodeQueryCanceled, "canceling statement due to user request")
	case context.DeadlineExceeded:
		return pgerror.Newf(pgerror.CodeQueryCanceled, "canceling statement due to statement timeout")
	}
	return nil
}

// UpstreamPoolConfig is the upstream pool's configuration for pol: its DSN
// and size, and the session settings every pooled connection starts with.
//   - statement_timeout: the policy's, so passthrough and catalog queries
//     are bounded too;
//   - default_transaction_read_only: on, so nothing sent upstream can
//     write, and a DP statement needs no BEGIN READ ONLY … COMMIT around it
//     (readOnlyRows sends it alone when the session defaults hold; the
//     wrapper halves PostgreSQL's throughput on trivial statements);
//   - extra_float_digits 1 and DateStyle ISO, PostgreSQL's defaults,
//     pinned against a database or role that changes them: DP answers
//     match group keys to their public domains by the text PostgreSQL
//     prints (rewrite.Key.Match), and with extra_float_digits 0 the
//     distinct values 0.1 and 0.10000000000000002 print alike, so one row
//     could replace a whole group's count;
//   - client_connection_check_interval (checkClientConnection).
func UpstreamPoolConfig(pol *policy.Policy) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(pol.Upstream.DSN)
	if err != nil {
		return nil, err
	}
	if pol.Upstream.MaxConns > 0 {
		cfg.MaxConns = pol.Upstream.MaxConns
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(pol.Upstream.StatementTimeout.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["extra_float_digits"] = "1"
	cfg.ConnConfig.RuntimeParams["DateStyle"] = "ISO, MDY"
	cfg.AfterConnect = checkClientConnection
	return cfg, nil
}

// checkClientConnection makes an upstream backend poll its socket during a
// long statement, so a statement whose connection dpproxy closed (after a
// cancel or a timeout) stops within a second even when Postgres dropped the
// CancelRequest. Where the server refuses the setting (PostgreSQL before
// 14: 42704; platforms without the poll it needs: 22023) the cancel and the
// statement timeout remain; only a failed connection is an error.
func checkClientConnection(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "SET client_connection_check_interval = 1000")
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		return nil
	}
	return err
}
