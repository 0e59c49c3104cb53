package wire

import (
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// runPassthrough runs a statement that reads no private data (SELECT 1,
// SELECT version(), SHOW of an upstream setting) upstream as it is and relays
// the result. Upstream errors are forwarded: they cannot depend on private
// rows.
func (sess *session) runPassthrough(st *rewrite.Statement, a execArgs) error {
	defer func(t0 time.Time) { sess.timeUpstream(time.Since(t0)) }(time.Now())
	ctx, done := sess.runContext()
	defer done()
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return pgerror.Wrapf(err, pgerror.CodeCannotConnectNow, "cannot reach the upstream database").
			WithHint("retry later; the DBA should check the upstream named in the policy")
	}
	defer conn.Release()
	defer guardCancel(ctx, conn.Conn().PgConn())()
	rr := conn.Conn().PgConn().ExecParams(ctx, st.SQL, a.params, a.paramOIDs, a.paramFormats, a.resultFormats)
	// No RowDescription when the statement failed before describing its
	// rows (SELECT 1/0 fails while planning), as Postgres sends none.
	if fields := rr.FieldDescriptions(); a.describe && fields != nil {
		sess.be.Send(&pgproto3.RowDescription{Fields: toFields(fields)})
	}
	row := &pgproto3.DataRow{}
	for rr.NextRow() {
		row.Values = rr.Values()
		sess.be.Send(row)
	}
	tag, err := rr.Close()
	if err != nil {
		if cerr := canceledError(ctx); cerr != nil {
			return cerr
		}
		return upstreamError(err)
	}
	sess.complete(tag.String())
	return nil
}

// upstreamError forwards an upstream error on a statement that reads no
// private data.
func upstreamError(err error) error {
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		return &pgerror.Error{Code: pge.Code, Message: pge.Message, Detail: pge.Detail, Hint: pge.Hint, Position: pge.Position}
	}
	return pgerror.Wrapf(err, pgerror.CodeConnectionFailure, "lost the connection to the upstream database")
}

func toFields(fds []pgconn.FieldDescription) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(fds))
	for i, f := range fds {
		out[i] = pgproto3.FieldDescription{
			Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
			DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format,
		}
	}
	return out
}

// fetchPassthrough runs a passthrough statement and returns all its rows
// (copied: pgconn reuses its buffers) and its command tag, for a portal
// executed with a row limit.
func (sess *session) fetchPassthrough(st *rewrite.Statement, a execArgs) ([][][]byte, string, error) {
	ctx, done := sess.runContext()
	defer done()
	conn, err := sess.srv.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, "", pgerror.Wrapf(err, pgerror.CodeCannotConnectNow, "cannot reach the upstream database")
	}
	defer conn.Release()
	defer guardCancel(ctx, conn.Conn().PgConn())()
	rr := conn.Conn().PgConn().ExecParams(ctx, st.SQL, a.params, a.paramOIDs, a.paramFormats, a.resultFormats)
	var rows [][][]byte
	for rr.NextRow() {
		vals := rr.Values()
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		rows = append(rows, row)
	}
	tag, err := rr.Close()
	if err != nil {
		if cerr := canceledError(ctx); cerr != nil {
			return nil, "", cerr
		}
		return nil, "", upstreamError(err)
	}
	return rows, tag.String(), nil
}
