package wire

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// fuzzPolicy lets analyst "fuzz" in without a password (trust, loopback
// only), so fuzz inputs reach the command loop with a bare startup packet.
const fuzzPolicy = `version: 1
listen: 127.0.0.1:6432
trust_local_analysts: true
upstream:
  dsn: "host=127.0.0.1 port=1 user=nobody connect_timeout=1"
ledger:
  backend: bolt
  path: ledger.db
analysts:
  - name: fuzz
    budget: {epsilon: 1000000}
tables:
  - name: patients
    privacy: row
    columns:
      - {name: age, type: integer, bounds: [0, 100]}
      - {name: sex, type: text, domain: [F, M]}
`

// newFuzzServer is a Server whose upstream is unreachable (every upstream
// statement fails fast with an error) over a real ledger, built without
// NewServer's upstream check.
func newFuzzServer(tb testing.TB) (*Server, *panicCatcher) {
	tb.Helper()
	pol, err := policy.Parse("fuzz.yaml", []byte(fuzzPolicy), policy.Env{Getenv: func(string) string { return "" }})
	if err != nil {
		tb.Fatal(err)
	}
	store, err := ledger.OpenBolt(filepath.Join(tb.TempDir(), "ledger.db"), ledger.BoltOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	pool, err := pgxpool.New(context.Background(), pol.Upstream.DSN)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	catcher := &panicCatcher{tb: tb}
	log := slog.New(catcher)
	s := &Server{
		cfg:            Config{Policy: pol, Ledger: store, Upstream: pool, Logger: log, Now: time.Now},
		plans:          rewrite.NewCache(64, 1<<20),
		log:            log,
		upstreamParams: map[string]string{"server_version": "15.0"},
		sessions:       map[uint64]*session{},
		conns:          map[net.Conn]struct{}{},
	}
	s.policy.Store(pol)
	return s, catcher
}

// panicCatcher fails the test on the log record serveConn writes when it
// recovers a panic: recovering keeps the server up, but a panic is a bug.
// Inside a fuzz target it must report to the input's *testing.T (use).
type panicCatcher struct {
	mu sync.Mutex
	tb testing.TB
}

func (h *panicCatcher) use(tb testing.TB) {
	h.mu.Lock()
	h.tb = tb
	h.mu.Unlock()
}

func (h *panicCatcher) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *panicCatcher) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		h.mu.Lock()
		defer h.mu.Unlock()
		r.Attrs(func(a slog.Attr) bool { h.tb.Logf("%s: %v", a.Key, a.Value); return true })
		h.tb.Errorf("%s", r.Message)
	}
	return nil
}
func (h *panicCatcher) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicCatcher) WithGroup(string) slog.Handler      { return h }

// feed serves one connection whose client sends data and then closes, and
// reports whether the server closed the connection in time.
func feed(s *Server, data []byte) bool {
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { s.serveConn(server); close(done) }()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = client.Write(data)
	_ = client.Close()
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

func startupPacket(user string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "demo"}}).Encode(nil)
	return b
}

func frames(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		b, _ = m.Encode(b)
	}
	return b
}

// healthy checks that a fresh, well-behaved connection is still answered.
func healthy(s *Server) bool {
	client, server := net.Pipe()
	go s.serveConn(server)
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(client, client)
	go func() {
		_, _ = client.Write(append(startupPacket("fuzz"), frames(&pgproto3.Query{String: "SHOW dp.epsilon"})...))
	}()
	ready := 0
	for ready < 2 {
		msg, err := fe.Receive()
		if err != nil {
			return false
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			ready++
		}
	}
	return true
}

// FuzzFrontend feeds arbitrary bytes to the front end, as the first bytes
// of a connection and after a valid startup: the connection must end (an
// error and a close, or EOF) without a panic or a hang, and the server
// must go on serving other clients.
func FuzzFrontend(f *testing.F) {
	start := startupPacket("fuzz")
	f.Add(append(append([]byte{}, start...), frames(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{})...))
	f.Add(append(append([]byte{}, start...), frames(
		&pgproto3.Parse{Name: "s", Query: "SELECT count(*) FROM patients WHERE age > $1"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s"},
		&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("40")}},
		&pgproto3.Execute{MaxRows: 1},
		&pgproto3.Sync{},
	)...))
	f.Add(append(append([]byte{}, start...), frames(&pgproto3.Query{String: "SET dp.epsilon = 0.1; SHOW dp.budget; BEGIN; SELECT * FROM patients; COMMIT"})...))
	f.Add(frames(&pgproto3.SSLRequest{}, &pgproto3.GSSEncRequest{}))
	f.Add(frames(&pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}}))
	f.Add(startupPacket("mallory"))
	f.Add(append(append([]byte{}, start...), 'Q', 0xff, 0xff, 0xff, 0xff))
	f.Add(append(append([]byte{}, start...), 'Q', 0, 0, 0, 3))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<30))
	s, catcher := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		catcher.use(t)
		if !feed(s, data) {
			t.Fatalf("the connection was not closed 10s after the client closed it")
		}
		// Also after a valid startup, so the bytes reach the command loop.
		if !feed(s, append(append([]byte{}, start...), data...)) {
			t.Fatalf("the connection was not closed 10s after the client closed it (after startup)")
		}
	})
}

// TestGarbageKeepsServing: garbage on many connections leaves the server
// answering, with no goroutines left behind.
func TestGarbageKeepsServing(t *testing.T) {
	s, _ := newFuzzServer(t)
	if !healthy(s) {
		t.Fatal("a fresh connection is not answered")
	}
	before := runtime.NumGoroutine()
	inputs := [][]byte{
		{}, {0}, []byte("GET / HTTP/1.1\r\n\r\n"), binary.BigEndian.AppendUint32(nil, 1<<30),
		append(startupPacket("fuzz"), 'X', 0, 0, 0, 4), append(startupPacket("fuzz"), 'P', 0, 0, 0, 4),
		append(startupPacket("fuzz"), 'Z', 0, 0, 0, 5, 1), append(startupPacket("fuzz"), frames(&pgproto3.Bind{PreparedStatement: "nope"})...),
		append(startupPacket("fuzz"), frames(&pgproto3.Query{String: "SELECT count(*) FROM patients"})...),
	}
	for i, in := range inputs {
		if !feed(s, in) {
			t.Fatalf("input %d: the connection did not close", i)
		}
	}
	if !healthy(s) {
		t.Fatal("the server stopped answering after garbage")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
