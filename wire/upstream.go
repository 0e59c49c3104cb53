package wire

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// readOnlyRows runs one rewritten DP statement upstream in a read-only
// transaction with a statement timeout, in one round trip, and returns its
// rows in text format. Without parameters it is one simple-protocol Query
// (`BEGIN READ ONLY; SET LOCAL statement_timeout = …; sql; COMMIT`); with
// bound parameters it is the same four statements as one extended-protocol
// batch (Parse/Bind/Execute each, one Sync), so the parameters reach
// upstream as parameters, never spliced into the text.
func readOnlyRows(ctx context.Context, conn *pgconn.PgConn, timeout time.Duration, sql string, a execArgs) ([][][]byte, error) {
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
