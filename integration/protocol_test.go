package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Side-by-side protocol scripts (wire/testdata/protocol/*.txt): the same
// frontend messages go to dpproxy
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

// script is one side-by-side protocol script from wire/testdata/protocol.
type script struct {
	name  string
	msgs  []pgproto3.FrontendMessage
	noisy bool // a DP answer: compare everything but the DataRow values
}

// loadScripts reads wire/testdata/protocol/*.txt: `# name` starts a
// script (`(noisy)` marks a DP answer), each other non-empty line is one
// frontend message in pgproto3's JSON encoding.
func loadScripts(t *testing.T) []script {
	t.Helper()
	files, err := filepath.Glob("../wire/testdata/protocol/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no protocol scripts: %v", err)
	}
	var out []script
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *script
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "":
				continue
			case strings.HasPrefix(line, "# "):
				name := strings.TrimPrefix(line, "# ")
				out = append(out, script{name: strings.TrimSuffix(name, " (noisy)"), noisy: strings.HasSuffix(name, " (noisy)")})
				cur = &out[len(out)-1]
				continue
			}
			msg, err := decodeFrontend([]byte(line))
			if err != nil || cur == nil {
				t.Fatalf("%s:%d: %v", f, i+1, err)
			}
			cur.msgs = append(cur.msgs, msg)
		}
	}
	// Header comments start scripts with no messages: drop them.
	kept := out[:0]
	for _, sc := range out {
		if len(sc.msgs) > 0 {
			kept = append(kept, sc)
		}
	}
	return kept
}

func decodeFrontend(line []byte) (pgproto3.FrontendMessage, error) {
	var head struct{ Type string }
	if err := json.Unmarshal(line, &head); err != nil {
		return nil, err
	}
	var m pgproto3.FrontendMessage
	switch head.Type {
	case "Query":
		m = &pgproto3.Query{}
	case "Parse":
		m = &pgproto3.Parse{}
	case "Bind":
		m = &pgproto3.Bind{}
	case "Describe":
		m = &pgproto3.Describe{}
	case "Execute":
		m = &pgproto3.Execute{}
	case "Close":
		m = &pgproto3.Close{}
	case "Sync":
		return &pgproto3.Sync{}, nil
	case "Flush":
		return &pgproto3.Flush{}, nil
	default:
		return nil, fmt.Errorf("unknown message type %q", head.Type)
	}
	return m, json.Unmarshal(line, m)
}

func TestProtocolMatchesPostgres(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{})
	scripts := loadScripts(t)
	if len(scripts) < 10 {
		t.Fatalf("only %d protocol scripts", len(scripts))
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
