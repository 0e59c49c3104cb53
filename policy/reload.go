package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Watcher reloads the policy file when it changes (polled) or when asked
// (SIGHUP). A valid new policy is handed to Apply, which swaps it in
// atomically for new statements; an invalid one is logged with all its
// problems and the policy in service stays.
//
// A change is applied once the file's bytes have stayed the same for two
// consecutive polls, so a file caught half-written by an editor is not
// loaded. The watcher reads files but has no clock: Run takes the ticks.
type Watcher struct {
	path  string
	apply func(*Policy)
	log   *slog.Logger
	env   Env

	mu       sync.Mutex
	current  *Policy
	modTime  time.Time
	size     int64
	polls    int
	pending  string // version of bytes seen once, waiting to be stable
	rejected string // version of the last rejected bytes (logged once)
}

// WatcherOptions configure a Watcher. Path, Current and Apply are required.
type WatcherOptions struct {
	Path    string
	Current *Policy       // the policy in service
	Apply   func(*Policy) // e.g. wire.Server.SetPolicy
	Logger  *slog.Logger  // nil: slog.Default()
	// Getenv resolves dsn_env and password_env; nil means os.Getenv.
	Getenv func(string) string
}

// NewWatcher returns a watcher of o.Path.
func NewWatcher(o WatcherOptions) *Watcher {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	return &Watcher{
		path:    o.Path,
		apply:   o.Apply,
		log:     o.Logger,
		current: o.Current,
		env:     Env{Getenv: o.Getenv, ReadFile: os.ReadFile, Dir: filepath.Dir(o.Path)},
	}
}

// rehashEvery forces a read every this many polls even when the file's
// modification time and size look unchanged.
const rehashEvery = 10

// Run polls on every tick and reloads on every value from reload until ctx
// is done.
func (w *Watcher) Run(ctx context.Context, ticks <-chan time.Time, reload <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			w.Poll()
		case <-reload:
			w.Reload()
		}
	}
}

// Poll checks the file once and applies it when it has changed and stayed
// the same since the previous poll. It reports whether a policy was applied.
func (w *Watcher) Poll() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	fi, err := os.Stat(w.path)
	if err != nil {
		if w.rejected != "stat" {
			w.log.Error("policy file unreadable; keeping the current policy", "path", w.path, "err", err)
			w.rejected = "stat"
		}
		return false
	}
	if fi.ModTime().Equal(w.modTime) && fi.Size() == w.size && w.pending == "" && w.polls%rehashEvery != 0 {
		return false
	}
	w.modTime, w.size = fi.ModTime(), fi.Size()
	data, err := os.ReadFile(w.path)
	if err != nil {
		return false
	}
	v := version(data)
	if v == w.current.Version || v == w.rejected {
		w.pending = ""
		return false
	}
	if v != w.pending {
		w.pending = v // changed: wait one more poll for the writer to finish
		return false
	}
	w.pending = ""
	return w.load(data, "file changed")
}

// Reload reads and applies the file now, even when its bytes are unchanged.
func (w *Watcher) Reload() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.log.Error("policy reload failed; keeping the current policy", "path", w.path, "err", err)
		return false
	}
	w.pending = ""
	// Load even unchanged bytes: the files the policy names (TLS key pair,
	// dsn_file, secrets) may have changed.
	return w.load(data, "reload requested")
}

func (w *Watcher) load(data []byte, why string) bool {
	p, errs, warns := Check(w.path, data, w.env)
	if len(errs) > 0 {
		w.rejected = p2v(p, data)
		w.log.Error("policy reload rejected; keeping the current policy", "trigger", why,
			"path", w.path, "policy_version", w.current.Version, "problems", len(errs), "errors", errs.Error())
		return false
	}
	w.rejected = ""
	for _, what := range RestartNeeded(w.current, p) {
		w.log.Warn("policy change needs a restart to take effect; the running value stays", "setting", what)
	}
	w.apply(p)
	w.log.Info("policy reloaded", "trigger", why, "path", w.path, "policy_version", p.Version,
		"previous_version", w.current.Version, "warnings", len(warns))
	for _, wr := range warns {
		w.log.Warn("policy warning", "warning", wr.String())
	}
	w.current = p
	return true
}

func p2v(p *Policy, data []byte) string {
	if p != nil {
		return p.Version
	}
	return version(data)
}

func version(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// RestartNeeded lists the settings that differ between old and new but
// are only read when dpproxy starts (addresses, upstream pool, ledger).
func RestartNeeded(old, new *Policy) []string {
	var out []string
	if old.Listen != new.Listen {
		out = append(out, "listen")
	}
	if old.Admin != new.Admin {
		out = append(out, "admin")
	}
	if old.Upstream.DSN != new.Upstream.DSN {
		out = append(out, "upstream dsn")
	}
	if old.Upstream.MaxConns != new.Upstream.MaxConns {
		out = append(out, "upstream.max_conns")
	}
	if old.Ledger.Backend != new.Ledger.Backend || old.Ledger.Path != new.Ledger.Path ||
		!slices.Equal(old.Ledger.Redis.Addrs, new.Ledger.Redis.Addrs) || old.Ledger.Redis.MasterName != new.Ledger.Redis.MasterName ||
		old.Ledger.Redis.Username != new.Ledger.Redis.Username || old.Ledger.Redis.Password != new.Ledger.Redis.Password {
		out = append(out, "ledger")
	}
	return out
}
