package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// maxMessageBytes bounds one frontend message, like Postgres's own limit on
// a query string; the parser limits in rewrite/ are stricter still.
const maxMessageBytes = 1 << 20

// session is one analyst connection. Only the connection's goroutine touches
// it, except cancelRunning, which a CancelRequest calls from another.
type session struct {
	srv      *Server
	conn     net.Conn
	be       *pgproto3.Backend
	log      *slog.Logger
	key      uint64 // BackendKeyData: pid<<32 | secret
	user     string
	database string
	analyst  *policy.Analyst
	src      mechanisms.Source

	txStatus byte     // 'I', 'T' or 'E'
	tx       *txState // the open transaction's settings state (txvars.go), or nil
	// implicitTx backs tx for implicit transactions.
	implicitTx txState
	settings   map[string]string
	// settingsShared: settings is also held by a transaction's or a
	// savepoint's snapshot (vars), so it is copied before it is changed
	// (ownSettings): a snapshot then costs nothing, where copying every
	// setting at each SAVEPOINT let one 64 KiB message of them take 54 MB.
	settingsShared bool
	epsilon        float64 // SET dp.epsilon; 0 means the policy default
	delta          float64 // SET dp.delta; 0 means defaultQueryDelta
	// targetError, when positive, makes DP queries accuracy-first: the
	// smallest ε whose counts and sums have this 95% half-width.
	targetError float64

	prepared      map[string]*prepared
	portals       map[string]*portal
	portalSeq     uint64 // numbers portals as Bind opens them (portal.seq)
	ignoreTilSync bool   // an error in an extended sequence skips to Sync

	midSequence    atomic.Bool // between an extended-protocol message and its Sync (see limits.go)
	tlsOn          bool        // the connection switched to TLS after SSLRequest
	channelBinding []byte      // tls-server-end-point data under TLS, for SCRAM-SHA-256-PLUS

	runMu   sync.Mutex
	running context.CancelFunc

	trace    stmtTrace // the statement running now, for its log line and metrics (observe.go)
	headroom headroom  // left by the last debit: may the next one overlap its query (overlap.go)
	calib    *calibration
}

func (s *Server) serveConn(c net.Conn) {
	sess := &session{
		srv:      s,
		conn:     c,
		be:       pgproto3.NewBackend(c, c),
		log:      s.log.With("remote", c.RemoteAddr().String()),
		txStatus: 'I',
		settings: map[string]string{},
		prepared: map[string]*prepared{},
		portals:  map[string]*portal{},
	}
	sess.be.SetMaxBodyLen(maxMessageBytes)
	defer c.Close()
	defer s.cfg.Metrics.ConnOpened()()
	defer func() {
		if r := recover(); r != nil {
			sess.log.Error("panic serving connection; closing it", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	ok, err := sess.startup()
	if err != nil {
		sess.fatal(err)
		return
	}
	if !ok {
		return
	}
	defer s.unregister(sess)
	sess.loop()
}

// fatal sends a FATAL error and gives up on the connection.
func (sess *session) fatal(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	pe := pgerror.As(err)
	sess.log.Info("connection refused", "code", pe.Code, "err", err)
	sess.be.Send(errorResponse(pe, "FATAL"))
	_ = sess.be.Flush()
}

// startup handles SSLRequest, GSSEncRequest, CancelRequest and the
// StartupMessage with authentication. ok is false when the connection ends
// normally (a cancel request).
func (sess *session) startup() (ok bool, err error) {
	_ = sess.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer sess.conn.SetReadDeadline(time.Time{})
	for {
		msg, err := sess.be.ReceiveStartupMessage()
		if err != nil {
			return false, pgerror.RefuseProtocol.Wrap(err, "invalid startup packet")
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if err := sess.answerSSLRequest(); err != nil {
				return false, err
			}
			continue
		case *pgproto3.GSSEncRequest:
			if _, err := sess.conn.Write([]byte{'N'}); err != nil {
				return false, err
			}
			continue
		case *pgproto3.CancelRequest:
			sess.srv.cancel(m.ProcessID, m.SecretKey)
			return false, nil
		case *pgproto3.StartupMessage:
			if err := sess.requireTLS(); err != nil {
				return false, err
			}
			if err := sess.checkConnectionLimit(); err != nil {
				return false, err
			}
			return true, sess.authenticate(m)
		default:
			return false, pgerror.RefuseProtocol.New("unexpected startup message %T", msg)
		}
	}
}

func (sess *session) authenticate(m *pgproto3.StartupMessage) error {
	if sess.srv.isClosing() {
		return pgerror.RefuseShutdown.New("the database system is shutting down")
	}
	sess.user = m.Parameters["user"]
	sess.database = m.Parameters["database"]
	if sess.database == "" {
		sess.database = sess.user
	}
	if sess.user == "" {
		return pgerror.Newf(pgerror.CodeInvalidAuthorization, "no PostgreSQL user name specified in startup packet")
	}
	if opts := m.Parameters["options"]; opts != "" {
		return pgerror.RefuseUnsupported.New("startup options are not accepted by dpproxy").
			WithHint("remove options=... (PGOPTIONS) from the connection string; use SET after connecting")
	}
	pol := sess.srv.Policy()
	sess.analyst = pol.Analyst(sess.user)
	switch {
	case sess.analyst != nil && sess.analyst.Verifier == nil && pol.Trust:
		// trust_local_analysts: demo policies only.
	default:
		var v *policy.Verifier
		if sess.analyst != nil {
			v = sess.analyst.Verifier
		}
		if err := scramAuthenticate(sess.be, sess.user, v, sess.channelBinding); err != nil {
			return err
		}
	}
	sess.log = sess.log.With("analyst", sess.user)
	sess.src = mechanisms.NewSecureSource()
	for k, v := range m.Parameters {
		if k == "application_name" || k == "client_encoding" || k == "DateStyle" || k == "TimeZone" {
			sess.ownSettings()
			sess.settings[strings.ToLower(k)] = v
		}
	}
	sess.srv.register(sess)
	sess.be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range sess.parameterStatuses() {
		sess.be.Send(p)
	}
	sess.be.Send(&pgproto3.BackendKeyData{ProcessID: uint32(sess.key >> 32), SecretKey: binary.BigEndian.AppendUint32(nil, uint32(sess.key))})
	sess.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	sess.log.Debug("analyst connected", "database", sess.database)
	return sess.be.Flush()
}

func (sess *session) parameterStatuses() []*pgproto3.ParameterStatus {
	tz := sess.srv.upstreamParams["TimeZone"]
	if tz == "" {
		tz = "UTC"
	}
	version := sess.srv.upstreamParams["server_version"]
	if version == "" {
		version = "15.0"
	}
	app := sess.settings["application_name"]
	params := [][2]string{
		{"application_name", app},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"default_transaction_read_only", "on"},
		{"in_hot_standby", "off"},
		{"integer_datetimes", "on"},
		{"IntervalStyle", "postgres"},
		{"is_superuser", "off"},
		{"server_encoding", "UTF8"},
		{"server_version", version},
		{"session_authorization", sess.user},
		{"standard_conforming_strings", "on"},
		{"TimeZone", tz},
	}
	out := make([]*pgproto3.ParameterStatus, len(params))
	for i, p := range params {
		out[i] = &pgproto3.ParameterStatus{Name: p[0], Value: p[1]}
	}
	return out
}

// loop is the command loop: one message at a time, answered in order.
func (sess *session) loop() {
	for {
		sess.armReadDeadline()
		msg, err := sess.be.Receive()
		if err != nil {
			if sess.receiveTimedOut(err) {
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) {
				sess.fatal(pgerror.RefuseProtocol.Wrap(err, "invalid frontend message: %v", err))
			}
			return
		}
		wasMid := sess.midSequence.Load()
		sess.noteMessage(msg)
		// Shutting down: refuse new work, but finish a started sequence.
		if sess.srv.isClosing() && sess.txStatus == 'I' && !wasMid {
			sess.fatal(pgerror.RefuseShutdown.New("terminating connection due to administrator command"))
			return
		}
		if sess.ignoreTilSync {
			switch msg.(type) {
			case *pgproto3.Sync:
			case *pgproto3.Terminate:
				return
			default:
				continue
			}
		}
		var flushErr error
		switch m := msg.(type) {
		case *pgproto3.Query:
			sess.simpleQuery(string([]byte(m.String)))
			sess.be.Send(&pgproto3.ReadyForQuery{TxStatus: sess.txStatus})
			flushErr = sess.be.Flush()
		case *pgproto3.Parse:
			sess.extended(sess.parse(m))
		case *pgproto3.Bind:
			sess.extended(sess.bind(m))
		case *pgproto3.Describe:
			sess.extended(sess.describe(m))
		case *pgproto3.Execute:
			sess.beginImplicit() // the messages up to Sync are one transaction
			sess.extended(sess.execute(m))
		case *pgproto3.Close:
			sess.extended(sess.closeObject(m))
		case *pgproto3.Sync:
			sess.ignoreTilSync = false
			sess.endImplicit(false)
			if sess.txStatus == 'I' { // the implicit transaction ends, and its portals with it
				clear(sess.portals)
			}
			sess.be.Send(&pgproto3.ReadyForQuery{TxStatus: sess.txStatus})
			flushErr = sess.be.Flush()
		case *pgproto3.Flush:
			flushErr = sess.be.Flush()
		case *pgproto3.Terminate:
			return
		case *pgproto3.FunctionCall:
			sess.sendError(pgerror.RefuseProtocol.New("the function call protocol message is not supported"))
			sess.be.Send(&pgproto3.ReadyForQuery{TxStatus: sess.txStatus})
			flushErr = sess.be.Flush()
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			// Only reachable if a client misbehaves: no COPY is ever started.
			sess.sendError(pgerror.RefuseProtocol.New("unexpected COPY message: no COPY is in progress"))
		default:
			sess.fatal(pgerror.RefuseProtocol.New("unexpected frontend message %T", msg))
			return
		}
		if flushErr != nil {
			return
		}
	}
}

// extended reports an error from an extended-protocol message and starts
// skipping to Sync.
func (sess *session) extended(err error) {
	if err != nil {
		sess.sendError(err)
		sess.endImplicit(true)
		sess.ignoreTilSync = true
	}
}

// sendError sends an ErrorResponse and moves an open transaction to failed.
func (sess *session) sendError(err error) {
	pe := pgerror.As(err)
	if pe.Code == pgerror.CodeInternalError {
		sess.log.Error("internal error", "err", err)
	}
	sess.be.Send(errorResponse(pe, "ERROR"))
	if sess.txStatus == 'T' {
		sess.txStatus = 'E'
	}
}

func errorResponse(pe *pgerror.Error, severity string) *pgproto3.ErrorResponse {
	if pe.Severity != "" {
		severity = pe.Severity
	}
	msg := pe.Message
	if pe.ID != "" {
		msg = fmt.Sprintf("%s [%s]", msg, pe.ID)
	}
	return &pgproto3.ErrorResponse{
		Severity: severity, SeverityUnlocalized: severity, Code: pe.Code,
		Message: msg, Detail: pe.Detail, Hint: pe.Hint, Position: pe.Position,
	}
}

func (sess *session) notice(msg string) {
	sess.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: pgerror.CodeSuccessfulCompletion, Message: msg})
}

// runContext returns a context for one upstream statement that a
// CancelRequest can cancel.
func (sess *session) runContext() (context.Context, func()) {
	timeout := sess.srv.Policy().Upstream.StatementTimeout + 5*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	sess.runMu.Lock()
	sess.running = cancel
	sess.runMu.Unlock()
	return ctx, func() {
		sess.runMu.Lock()
		sess.running = nil
		sess.runMu.Unlock()
		cancel()
	}
}

func (sess *session) cancelRunning() {
	sess.runMu.Lock()
	defer sess.runMu.Unlock()
	if sess.running != nil {
		sess.running()
	}
}
