package wire

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/metrics"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Config is what a Server needs. Policy may be swapped at run time with
// SetPolicy; every other field is fixed.
type Config struct {
	Policy *policy.Policy
	Ledger ledger.Store
	// Cache holds noisy answers for repeats within the policy's cache
	// window; nil disables it.
	Cache    ledger.AnswerCache
	Upstream *pgxpool.Pool
	Logger   *slog.Logger
	// Limits (see limits.go); zero means the default.
	MaxConnections          int           // analyst connections at once (1000)
	MaxStatementsPerAnalyst int           // statements running upstream at once per analyst (8)
	IdleTimeout             time.Duration // close sessions idle this long (0: never)
	LedgerTimeout           time.Duration // bounds a debit or a balance read (3s)
	// TLS, when set, overrides the policy's tls section (the serve
	// command's --tls-* flags); nil uses the policy in force.
	TLS *policy.TLS
	// Now is the clock for ledger entries; time.Now when nil.
	Now func() time.Time
	// Metrics receives statement, spend, latency, cache and connection
	// counts; nil records nothing.
	Metrics *metrics.Metrics
}

// Server accepts analyst connections. Each connection is served by one
// goroutine; calls for one connection are serialised by it.
type Server struct {
	cfg      Config
	policy   atomic.Pointer[policy.Policy]
	policyMu sync.Mutex // serialises replacing the policy (reloads, catalog changes)
	plans    *rewrite.Cache
	log      *slog.Logger

	upstreamParams map[string]string // ParameterStatus values read from upstream once
	// sessionDefaults is what a pooled upstream session starts with, read
	// once (UpstreamPoolConfig sets it): when it is read-only with the
	// policy's statement timeout, a DP statement is sent alone.
	sessionDefaults upstreamSession

	mu       sync.Mutex
	sessions map[uint64]*session // by BackendKeyData, for CancelRequest
	conns    map[net.Conn]struct{}
	closing  bool
	wg       sync.WaitGroup

	runningByAnalyst map[string]int // statements running upstream, for MaxStatementsPerAnalyst

	shadowSeen sync.Map // tables whose pre-bounded copy was found: the first sighting re-reads the catalog (checkShadow)

	hits       *hitAudit   // batched audit of cache hits (hitaudit.go)
	memo       *answerMemo // decoded answers read from the answer cache (answermemo.go)
	paramTypes typeCache   // inferred parameter types of rewritten DP statements
	// unprepared is set once the upstream lost a statement prepared on one
	// of its connections (a transaction-mode pooler): DP statements then go
	// unprepared (prepared.go).
	unprepared atomic.Bool
}

// NewServer checks the upstream and returns a server ready to Serve.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:      cfg,
		plans:    rewrite.NewCache(planCacheEntries, planCacheBytes),
		log:      cfg.Logger,
		sessions: map[uint64]*session{},
		conns:    map[net.Conn]struct{}{},
		hits:     newHitAudit(cfg.Ledger, cfg.Logger),
		memo:     newAnswerMemo(memoMaxEntries, memoMaxBytes),
	}
	s.policy.Store(cfg.Policy)
	params, sd, err := readUpstreamParams(ctx, cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("reading upstream settings: %w", err)
	}
	s.upstreamParams, s.sessionDefaults = params, sd
	s.policy.Store(s.withCatalogFacts(ctx, cfg.Policy))
	return s, nil
}

// SetPolicy replaces the policy for statements that start after the call,
// with what the upstream catalog says about its tables (unique.go, bounds.go).
func (s *Server) SetPolicy(p *policy.Policy) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	s.policy.Store(s.withCatalogFacts(context.Background(), p))
}

// Policy returns the policy in force.
func (s *Server) Policy() *policy.Policy { return s.policy.Load() }

// The plan cache, shared by every session: statement texts, and an estimate
// of the memory their plans keep (rewrite.Cache). 64 MiB holds the 4,096
// texts when they are ordinary statements (about 5 KiB each).
const (
	planCacheEntries = 4096
	planCacheBytes   = 64 << 20
)

// minServerVersionNum is the oldest upstream dpproxy runs against. The
// rewriter lets dates be compared with timestamps and joined on, which
// PostgreSQL 12 and older do by converting the date (failing beyond 294276
// AD); it casts real and double precision values to numeric to clamp them,
// which PostgreSQL 13 and older cannot do for infinity; and it groups by
// extract() of a date, which PostgreSQL 13 computes through a timestamp.
const minServerVersionNum = 140000

// upstreamSession is the start-up state of a pooled upstream session.
type upstreamSession struct {
	readOnly bool
	timeout  time.Duration // statement_timeout
}

func readUpstreamParams(ctx context.Context, pool *pgxpool.Pool) (map[string]string, upstreamSession, error) {
	var sd upstreamSession
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, sd, err
	}
	defer conn.Release()
	out := map[string]string{}
	for _, name := range []string{"server_version", "TimeZone"} {
		if v := conn.Conn().PgConn().ParameterStatus(name); v != "" {
			out[name] = v
		}
	}
	var ms, version int64
	err = conn.QueryRow(ctx, "SELECT current_setting('default_transaction_read_only')::bool, (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'statement_timeout'), current_setting('server_version_num')::bigint").Scan(&sd.readOnly, &ms, &version)
	if err != nil {
		return nil, sd, err
	}
	if version < minServerVersionNum {
		return nil, sd, fmt.Errorf("upstream PostgreSQL %s is not supported: dpproxy needs PostgreSQL 14 or later (before 13 comparing a date with a timestamp converts the date, before 14 numeric has no infinity and extract() on a date converts it to a timestamp: conversions that fail on extreme values, so such an error would reveal a private row)", out["server_version"])
	}
	sd.timeout = time.Duration(ms) * time.Millisecond
	return out, sd, nil
}

// sendAlone reports whether a DP statement may go upstream without the
// BEGIN READ ONLY; SET LOCAL statement_timeout … COMMIT around it: the
// pooled sessions already start read-only with the policy's timeout.
func (s *Server) sendAlone() bool {
	sd := s.sessionDefaults
	return sd.readOnly && sd.timeout == s.Policy().Upstream.StatementTimeout
}

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.serveConn(c)
		}()
	}
}

// Shutdown stops accepting statements and waits for connections to end or
// ctx to expire, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.kickIdle()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// Cache hits answered in batched audit mode are written once no
	// session can add more.
	defer s.hits.close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) register(sess *session) {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		key := binary.BigEndian.Uint64(b[:])
		s.mu.Lock()
		if _, taken := s.sessions[key]; !taken && key != 0 {
			s.sessions[key] = sess
			s.mu.Unlock()
			sess.key = key
			return
		}
		s.mu.Unlock()
	}
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess.key)
	s.mu.Unlock()
}

func (s *Server) cancel(pid uint32, secret []byte) {
	if len(secret) != 4 {
		return
	}
	key := uint64(pid)<<32 | uint64(binary.BigEndian.Uint32(secret))
	s.mu.Lock()
	sess := s.sessions[key]
	s.mu.Unlock()
	if sess != nil {
		sess.cancelRunning()
	}
}
