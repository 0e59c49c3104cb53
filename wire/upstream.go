package wire

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/pgerror"
)

// readOnlyRows runs one rewritten DP statement upstream in a read-only
// transaction with a statement timeout, in one round trip, and returns its
// rows in text format. Without parameters it is one simple-protocol Query
// (`BEGIN READ ONLY; SET LOCAL statement_timeout = …; sql; COMMIT`); with
// bound parameters it is the same four statements as one extended-protocol
// batch (Parse/Bind/Execute each, one Sync), so the parameters reach
// upstream as parameters, never spliced into the text.
func readOnlyRows(ctx context.Context, conn *pgconn.PgConn, timeout time.Duration, sql string, a execArgs) ([][][]byte, error) {
	defer guardCancel(ctx, conn)()
	setTimeout := fmt.Sprintf("SET LOCAL statement_timeout = %d", timeout.Milliseconds())
	var results []*pgconn.Result
	var err error
	if len(a.params) == 0 {
		results, err = conn.Exec(ctx, "BEGIN READ ONLY; "+setTimeout+"; "+sql+"; COMMIT").ReadAll()
	} else {
		oids := a.paramOIDs
		if len(oids) > len(a.params) {
			oids = oids[:len(a.params)]
		}
		b := &pgconn.Batch{}
		b.ExecParams("BEGIN READ ONLY", nil, nil, nil, nil)
		b.ExecParams(setTimeout, nil, nil, nil, nil)
		b.ExecParams(sql, a.params, oids, a.paramFormats, nil)
		b.ExecParams("COMMIT", nil, nil, nil, nil)
		results, err = conn.ExecBatch(ctx, b).ReadAll()
	}
	if err != nil {
		return nil, err
	}
	if len(results) != 4 || results[2].Err != nil {
		return nil, fmt.Errorf("unexpected upstream results: %d", len(results))
	}
	return results[2].Rows, nil
}

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
// pool's sessions set client_connection_check_interval (serve), so the
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
