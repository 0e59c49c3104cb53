package wire

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Limits, each with Postgres's SQLSTATE:
//   - Config.MaxConnections analyst connections at once (default 1000);
//     one more is refused after its startup packet with 53300 (DP019), as
//     Postgres's "sorry, too many clients already".
//   - Config.MaxStatementsPerAnalyst statements running upstream at once
//     for one analyst, over all their connections (default 8); one more is
//     refused with 53300 (DP019) before anything is charged or run.
//   - Config.IdleTimeout: a session that sends nothing for this long is
//     closed with 57P05, like idle_session_timeout (default 0: never).
//   - Config.LedgerTimeout: a debit or balance read not answered in this
//     time refuses the statement with DP007 (default 3s).
//   - frontend messages larger than maxMessageBytes (1 MiB) end the
//     connection with 08P01.
//   - what one session keeps in the proxy's memory, which every analyst
//     shares: maxSettings, maxPrepared, maxSavepoints and maxPortals; one
//     more is refused with 54000 and a hint. PostgreSQL has no such limits,
//     but no client comes near these, and without them one analyst could
//     grow the process until it ran out of memory without running anything
//     upstream or spending any budget.
//
// Shutdown (SIGTERM) lets running statements finish and closes every
// session the next time it waits for a message, with 57P01, so the proxy
// stops promptly without cutting an answer in half.

const (
	defaultMaxConnections          = 1000
	defaultMaxStatementsPerAnalyst = 8
	// defaultLedgerTimeout bounds a debit: a slow ledger refuses the query
	// rather than stall it (fail closed).
	defaultLedgerTimeout = 3 * time.Second

	maxSettings   = 1000  // distinct names SET in a session
	maxPrepared   = 4096  // named prepared statements (drivers cache 100–512)
	maxSavepoints = 10000 // open in one transaction
	maxPortals    = 10000 // open at once
)

func (s *Server) ledgerTimeout() time.Duration {
	if s.cfg.LedgerTimeout > 0 {
		return s.cfg.LedgerTimeout
	}
	return defaultLedgerTimeout
}

func (s *Server) maxConnections() int {
	if s.cfg.MaxConnections > 0 {
		return s.cfg.MaxConnections
	}
	return defaultMaxConnections
}

func (s *Server) maxStatementsPerAnalyst() int {
	if s.cfg.MaxStatementsPerAnalyst > 0 {
		return s.cfg.MaxStatementsPerAnalyst
	}
	return defaultMaxStatementsPerAnalyst
}

// checkConnectionLimit refuses a connection beyond MaxConnections.
func (sess *session) checkConnectionLimit() error {
	s := sess.srv
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n > s.maxConnections() {
		return pgerror.RefuseTooManyConnections.New("sorry, too many clients already: dpproxy serves at most %d connections", s.maxConnections())
	}
	return nil
}

// acquireStatement reserves one of the analyst's concurrent statement
// slots for a statement that runs upstream; release frees it.
func (sess *session) acquireStatement(st *rewrite.Statement) (release func(), err error) {
	if st.Kind != rewrite.KindDP && st.Kind != rewrite.KindPassthrough {
		return func() {}, nil
	}
	s := sess.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runningByAnalyst == nil {
		s.runningByAnalyst = map[string]int{}
	}
	if s.runningByAnalyst[sess.user] >= s.maxStatementsPerAnalyst() {
		return nil, pgerror.RefuseTooManyConnections.New("analyst %q already runs %d statements at once, the most dpproxy allows", sess.user, s.maxStatementsPerAnalyst())
	}
	s.runningByAnalyst[sess.user]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.runningByAnalyst[sess.user]--; s.runningByAnalyst[sess.user] <= 0 {
			delete(s.runningByAnalyst, sess.user)
		}
	}, nil
}

// armReadDeadline sets the deadline of the next Receive: the idle timeout,
// or none.
// Shutdown ends a session at a protocol boundary only (after ReadyForQuery),
// never between an Execute and its Sync, whose answer is still unsent.
func (sess *session) armReadDeadline() {
	if d := sess.srv.cfg.IdleTimeout; d > 0 {
		_ = sess.conn.SetReadDeadline(time.Now().Add(d))
	}
	if sess.srv.isClosing() && !sess.midSequence.Load() {
		_ = sess.conn.SetReadDeadline(time.Unix(1, 0)) // end at this wait
	}
}

// noteMessage tracks whether the session is inside an extended-protocol
// sequence, for Shutdown.
func (sess *session) noteMessage(msg pgproto3.FrontendMessage) {
	switch msg.(type) {
	case *pgproto3.Sync, *pgproto3.Query, *pgproto3.FunctionCall:
		sess.midSequence.Store(false)
	case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close, *pgproto3.Flush:
		sess.midSequence.Store(true)
	}
}

// receiveTimedOut handles a Receive that ended on a deadline: shutdown
// (Shutdown set a deadline in the past) or the idle timeout. It reports
// whether err was such a timeout; the session must then end.
func (sess *session) receiveTimedOut(err error) bool {
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		return false
	}
	if sess.srv.isClosing() {
		sess.fatal(pgerror.RefuseShutdown.New("terminating connection due to administrator command"))
	} else {
		sess.fatal(pgerror.Newf("57P05", "terminating connection due to idle-session timeout"))
	}
	return true
}

// kickIdle makes every session end the next time it waits for a message at
// a protocol boundary: at once if it is waiting there now, after its
// running statement or extended-protocol sequence otherwise.
func (s *Server) kickIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if !sess.midSequence.Load() {
			_ = sess.conn.SetReadDeadline(time.Unix(1, 0))
		}
	}
}
