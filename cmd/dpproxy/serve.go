package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/metrics"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/wire"
)

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (required)")
	admin := fs.String("admin", "", "admin HTTP address for /metrics, /healthz, /readyz and /ledger/* (empty: off; default: the policy's admin, 127.0.0.1:6433)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	tlsOverride := tlsFlags(fs)
	fs.IntVar(&serveLimits.MaxConnections, "max-connections", 0, "analyst connections at once (0: the default, 1000)")
	fs.IntVar(&serveLimits.MaxStatementsPerAnalyst, "max-statements-per-analyst", 0, "statements one analyst runs upstream at once over all connections (0: the default, 8)")
	fs.DurationVar(&serveLimits.IdleTimeout, "idle-timeout", 0, "close analyst sessions idle this long, with 57P05 (0: never)")
	describe(fs, "dpproxy serve --policy FILE [flags]", `Serves analysts on the policy's listen address until SIGINT or SIGTERM (running
statements finish first). The policy file is watched and reloaded on change or SIGHUP.
The admin address serves /metrics (Prometheus), /healthz, /readyz (upstream and
ledger answer), /ledger/report, /ledger/verify and POST /ledger/grant. Logs go to
stderr, one "statement" line per statement. Exit 1 if the upstream, the ledger or
the listener cannot be opened.`)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	var err error
	if serveTLS, err = tlsOverride(); err != nil {
		return err
	}
	if *policyPath == "" {
		return usageError{"--policy FILE is required"}
	}
	pol, err := policy.Load(*policyPath)
	if err != nil {
		return err
	}
	adminAddr := pol.Admin
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "admin" {
			adminAddr = *admin
		}
	})
	if path := os.Getenv("DPPROXY_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	if path := os.Getenv("DPPROXY_ALLOCPROFILE"); path != "" {
		defer writeAllocProfile(path)
	}
	tuneGC()
	tuneProcs()
	lw := newLogWriter(os.Stderr, logFlushEvery)
	defer lw.Close()
	return serve(pol, *policyPath, adminAddr, newLoggerTo(lw, *logFormat), nil)
}

// serveGCPercent is the garbage collector's GOGC for `serve` unless the
// environment sets GOGC. The proxy's live heap is small (plans, sessions,
// the answer memo) and every statement allocates a few KiB, so at Go's
// default of 100 the collector runs thousands of times a second under load;
// 400 cut a cache hit's CPU by 10-20% in bench/run.sh at 32 clients
// (docs/benchmarks.md) for a heap up to five times the live data instead
// of twice.
const serveGCPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}

// tuneProcs gives serve one more P (GOMAXPROCS) than the CPUs Go found,
// unless the environment sets GOMAXPROCS. A goroutine in a blocking system
// call keeps its P until the runtime's monitor takes it back, which takes
// from 20 µs to 10 ms; the bolt ledger's writer spends most of its time in
// fdatasync, and a write to a busy upstream can be preempted inside the
// kernel. With as many Ps as CPUs one such call idles a CPU the sessions
// could use: on 2 CPUs a third P raised the trivial DP count at 32 clients
// by 13% (ledger on disk) and 6% (on tmpfs) in docs/benchmarks.md, session 7.
// Only when Go's default is the machine's CPU count: under a container CPU
// quota (which Go's default follows) a P more would run past the quota and
// be throttled, and setting GOMAXPROCS would stop Go from following a
// changing limit. GOMAXPROCS in the environment leaves the choice to Go.
func tuneProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) == runtime.NumCPU() {
		runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	}
}

// startCPUProfile writes a CPU profile of the whole serve run to path, for
// `go tool pprof` (bench/run.sh --profile). It is an environment variable,
// not a flag, because it is a tool for developers, not an operator's setting.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("DPPROXY_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("DPPROXY_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeAllocProfile writes the allocations of the whole serve run to path
// (DPPROXY_ALLOCPROFILE; `go tool pprof -sample_index=alloc_space`), to find
// what a statement allocates under real load.
func writeAllocProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "DPPROXY_ALLOCPROFILE: %v\n", err)
	}
}

// serveLimits holds the connection and concurrency limits set by `serve
// --max-connections / --max-statements-per-analyst` (zero: wire's defaults).
var serveLimits wire.Config

func newLogger(format string) *slog.Logger {
	return slog.New(newLineHandler(os.Stderr, format == "json"))
}

// newLoggerTo logs to w, batched, with warnings and errors written at once.
func newLoggerTo(w *logWriter, format string) *slog.Logger {
	return slog.New(flushOnWarn{newLineHandler(w, format == "json"), w})
}

// serve runs the proxy until SIGINT or SIGTERM. ready, when set, is called
// once the listener is up. SIGHUP reloads the policy from policyPath.
func serve(pol *policy.Policy, policyPath, adminAddr string, log *slog.Logger, ready func(addr string)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, err := openLedger(pol, log)
	if err != nil {
		return err
	}
	defer store.Close()

	poolCfg, err := wire.UpstreamPoolConfig(pol)
	if err != nil {
		return fmt.Errorf("upstream dsn: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(startCtx, poolCfg)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer pool.Close()
	cache, cacheCloser, err := openCache(pol, log)
	if err != nil {
		return fmt.Errorf("answer cache: %w", err)
	}
	if cacheCloser != nil {
		defer cacheCloser.Close()
	}
	mets := metrics.New()
	srv, err := wire.NewServer(startCtx, wire.Config{Policy: pol, Ledger: store, Cache: cache, Upstream: pool, Logger: log, TLS: serveTLS, Metrics: mets,
		MaxConnections: serveLimits.MaxConnections, MaxStatementsPerAnalyst: serveLimits.MaxStatementsPerAnalyst, IdleTimeout: serveLimits.IdleTimeout})
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	ln, err := net.Listen("tcp", pol.Listen)
	if err != nil {
		return err
	}
	log.Info("dpproxy listening", "addr", ln.Addr().String(), "policy_version", pol.Version, "ledger", pol.Ledger.Backend)
	if adminAddr != "" {
		adminSrv := &http.Server{Addr: adminAddr, Handler: adminHandler(srv, store, pool, mets), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := adminSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server failed", "err", err)
			}
		}()
		defer adminSrv.Close()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if policyPath != "" {
		go watchPolicy(ctx, policyPath, pol, srv, hup, log)
	}
	go srv.WatchCatalog(ctx)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case serveErr = <-errc:
		log.Error("listener failed; shutting down", "err", serveErr)
	case <-ctx.Done():
		log.Info("shutting down: finishing running statements")
	}
	_ = ln.Close()
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelShut()
	// Also after a listener failure: sessions end and batched cache-hit
	// audit entries are written before the ledger closes.
	if err := srv.Shutdown(shutCtx); serveErr == nil {
		return err
	}
	return serveErr
}

// openLedger opens the ledger the policy names. For Redis it builds a
// go-redis UniversalClient (one address: a single server; master_name: a
// Sentinel deployment, addrs are the sentinels; several addresses: a
// Cluster), with ContextTimeoutEnabled so a debit honours its deadline, and
// refuses to start on a Redis without persistence unless the policy sets
// allow_volatile (which is logged).
func openLedger(pol *policy.Policy, log *slog.Logger) (ledger.Store, error) {
	switch pol.Ledger.Backend {
	case "bolt":
		return ledger.OpenBolt(pol.Ledger.Path, ledger.BoltOptions{Logger: log, Mode: ledgerMode(pol)})
	case "redis":
		rc := pol.Ledger.Redis
		client := redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs:                 rc.Addrs,
			MasterName:            rc.MasterName,
			Username:              rc.Username,
			Password:              rc.Password,
			ContextTimeoutEnabled: true,
			DialTimeout:           2 * time.Second,
			ReadTimeout:           2 * time.Second,
			WriteTimeout:          2 * time.Second,
		})
		if rc.AllowVolatile {
			log.Warn("ledger: allow_volatile is set: dpproxy will accept a Redis without persistence, where a restart erases spent budgets")
		}
		store, err := ledger.NewRedis(client, ledger.RedisOptions{AllowVolatile: rc.AllowVolatile, Logger: log, Mode: ledgerMode(pol)})
		if err != nil {
			client.Close()
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := store.CheckDurability(ctx); err != nil {
			client.Close()
			return nil, fmt.Errorf("ledger: %w", err)
		}
		log.Info("ledger: using Redis", "addrs", rc.Addrs, "master_name", rc.MasterName)
		return closeWith{store, client}, nil
	}
	return nil, fmt.Errorf("ledger backend %q is not supported", pol.Ledger.Backend)
}

// closeWith is a Store whose Close also closes the client it owns.
type closeWith struct {
	ledger.Store
	client io.Closer
}

func (c closeWith) Close() error {
	err := c.Store.Close()
	if cerr := c.client.Close(); err == nil {
		err = cerr
	}
	return err
}
