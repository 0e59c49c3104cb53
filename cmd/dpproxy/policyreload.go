package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/wire"
)

// policyPollInterval is how often serve looks at the policy file. A change
// is applied once two polls see the same bytes, so within about a second.
const policyPollInterval = 500 * time.Millisecond

// watchPolicy reloads the policy file on SIGHUP and when it changes, until
// ctx is done. A valid policy replaces the one in service atomically (new
// statements use it); an invalid one is logged and the old one stays.
func watchPolicy(ctx context.Context, path string, cur *policy.Policy, srv *wire.Server, hup <-chan os.Signal, log *slog.Logger) {
	w := policy.NewWatcher(policy.WatcherOptions{Path: path, Current: cur, Apply: srv.SetPolicy, Logger: log})
	ticker := time.NewTicker(policyPollInterval)
	defer ticker.Stop()
	w.Run(ctx, ticker.C, hup)
}
