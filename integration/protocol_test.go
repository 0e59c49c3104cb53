package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Side-by-side protocol scripts: the same frontend messages go to dpproxy
// and to the real PostgreSQL behind it, and the answers must match message
// for message: types, RowDescription names, type OIDs and formats, DataRow
// bytes, command tags, SQLSTATEs and ReadyForQuery's transaction status.
// Declared differences are left out of the comparison: NoticeResponse (our
// cost notices) and ParameterStatus (which settings are reported).

// rawConn is a connection after startup and authentication, hijacked from
// pgconn so a test can speak the protocol message by message.
func rawConn(t *testing.T, ctx context.Context, dsn string) *pgproto3.Frontend {
	t.Helper()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := conn.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	if d, ok := ctx.Deadline(); ok {
		_ = hc.Conn.SetDeadline(d)
	}
	return hc.Frontend
}

// exchange sends msgs, then reads until as many ReadyForQuery messages as
// msgs holds Sync and Query messages, and returns the answers in a
// comparable text form.
func exchange(t *testing.T, fe *pgproto3.Frontend, msgs []pgproto3.FrontendMessage) []string {
	t.Helper()
	waits := 0
	for _, m := range msgs {
		fe.Send(m)
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			waits++
		}
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for waits > 0 {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", out, err)
		}
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
			continue
		case *pgproto3.ReadyForQuery:
			waits--
			out = append(out, "ReadyForQuery "+string(m.TxStatus))
		case *pgproto3.RowDescription:
			var f []string
			for _, fd := range m.Fields {
				f = append(f, fmt.Sprintf("%s:%d/%d", fd.Name, fd.DataTypeOID, fd.Format))
			}
			out = append(out, "RowDescription "+strings.Join(f, ","))
		case *pgproto3.DataRow:
			var v []string
			for _, b := range m.Values {
				v = append(v, fmt.Sprintf("%q", b))
			}
			out = append(out, "DataRow "+strings.Join(v, ","))
		case *pgproto3.CommandComplete:
			out = append(out, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "ErrorResponse "+m.Code)
		case *pgproto3.ParameterDescription:
			out = append(out, fmt.Sprintf("ParameterDescription %v", m.ParameterOIDs))
		default:
			out = append(out, fmt.Sprintf("%T", msg)[len("*pgproto3."):])
		}
	}
	return out
}

func TestProtocolMatchesPostgres(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	type script struct {
		name  string
		msgs  []pgproto3.FrontendMessage
		noisy bool // a DP answer: compare everything but the DataRow values
	}
	scripts := []script{
		{name: "dp answer shape", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: countQuery},
			&pgproto3.Parse{Query: "SELECT count(*), sum(income) AS s FROM patients WHERE age > $1"},
			&pgproto3.Describe{ObjectType: 'S'},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("40")}, ResultFormatCodes: []int16{1}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}, noisy: true},
		{name: "select 1", msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}}},
		{name: "empty query", msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: ""}}},
		{name: "multi-statement", msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 AS a; SELECT 'x'::text AS b"}}},
		{name: "set", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "SET extra_float_digits = 3"},
			&pgproto3.Query{String: "SET application_name = 'matrix'"},
			&pgproto3.Query{String: "RESET application_name"},
		}},
		{name: "odbc batch", msgs: []pgproto3.FrontendMessage{&pgproto3.Query{String: "SET DateStyle = 'ISO';SET extra_float_digits = 2;show transaction_isolation"}}},
		{name: "show", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "SHOW transaction isolation level"},
			&pgproto3.Query{String: "SHOW standard_conforming_strings"},
			&pgproto3.Query{String: "SHOW client_encoding"},
		}},
		{name: "more show", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "SHOW DateStyle"},
			&pgproto3.Query{String: "SHOW TimeZone"},
			&pgproto3.Query{String: "SHOW search_path"},
			&pgproto3.Query{String: "SHOW server_version"},
			&pgproto3.Query{String: "SHOW integer_datetimes"},
			&pgproto3.Query{String: "SET application_name = 'side by side'; SHOW application_name"},
			&pgproto3.Query{String: "SET DateStyle = 'ISO, MDY'; SHOW DateStyle"},
			&pgproto3.Query{String: "SHOW max_identifier_length"},
		}},
		{name: "session commands", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "DEALLOCATE ALL"},
			&pgproto3.Query{String: "DISCARD ALL"},
			&pgproto3.Query{String: "BEGIN; SAVEPOINT a; RELEASE a; SAVEPOINT b; ROLLBACK TO b; COMMIT"},
			&pgproto3.Query{String: "SAVEPOINT c"},
			&pgproto3.Query{String: "COMMIT"},
			&pgproto3.Query{String: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"},
			&pgproto3.Query{String: "RESET ALL"},
		}},
		{name: "transaction status", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "BEGIN"},
			&pgproto3.Query{String: "SELECT 1"},
			&pgproto3.Query{String: "SELEC 1"},
			&pgproto3.Query{String: "SELECT 1"},
			&pgproto3.Query{String: "ROLLBACK"},
			&pgproto3.Query{String: "START TRANSACTION READ ONLY"},
			&pgproto3.Query{String: "COMMIT"},
		}},
		{name: "current_schema and catalog", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "SELECT current_schema()"},
			&pgproto3.Query{String: "SELECT relname, relkind FROM pg_catalog.pg_class WHERE relname = 'patients'"},
			&pgproto3.Query{String: "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'patients' ORDER BY ordinal_position"},
		}},
		{name: "portal suspension", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT relname::text FROM pg_catalog.pg_class WHERE relname LIKE 'pg_a%' ORDER BY relname LIMIT 5"},
			&pgproto3.Bind{DestinationPortal: "p1"},
			&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
			&pgproto3.Execute{Portal: "p1", MaxRows: 2},
			&pgproto3.Execute{Portal: "p1", MaxRows: 2},
			&pgproto3.Execute{Portal: "p1", MaxRows: 2},
			&pgproto3.Execute{Portal: "p1", MaxRows: 2},
			&pgproto3.Close{ObjectType: 'P', Name: "p1"},
			&pgproto3.Sync{},
		}},
		{name: "named statement, binary result, parameters", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int4 + 1 AS n"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
			&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 41}}, ResultFormatCodes: []int16{1}},
			&pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("1")}},
			&pgproto3.Execute{},
			&pgproto3.Close{ObjectType: 'S', Name: "s1"},
			&pgproto3.Close{ObjectType: 'S', Name: "never-prepared"},
			&pgproto3.Sync{},
		}},
		{name: "errors skip to sync", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Parse{Query: "SELEC 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
			&pgproto3.Parse{Query: "SELECT 2"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}},
		{name: "unknown portal and statement", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Bind{PreparedStatement: "nope"},
			&pgproto3.Sync{},
			&pgproto3.Execute{Portal: "nope"},
			&pgproto3.Sync{},
		}},
		{name: "flush", msgs: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "SELECT 3"},
			&pgproto3.Flush{},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		}},
	}
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			want := exchange(t, rawConn(t, ctx, pg.ReaderDSN()), sc.msgs)
			got := exchange(t, rawConn(t, ctx, p.dsn("alice", alicePassword)), sc.msgs)
			if sc.noisy {
				for _, l := range [][]string{want, got} {
					for i := range l {
						if strings.HasPrefix(l[i], "DataRow ") {
							l[i] = "DataRow (noisy)"
						}
					}
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("dpproxy answered\n\t%s\nPostgreSQL answered\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}
