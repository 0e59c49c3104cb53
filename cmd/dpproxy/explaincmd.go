package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
	"github.com/dpproxy/dpproxy/wire"
)

// cmdExplain prints how dpproxy would answer a statement under a policy:
// no charge, and no upstream contact unless --upstream asks for the
// catalog facts serve would use.
func cmdExplain(args []string) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (required)")
	eps := fs.Float64("epsilon", 0, "epsilon of the query (default: the policy's default)")
	delta := fs.Float64("delta", 1e-7, "delta spent by partition selection, when the query needs it")
	upstream := fs.Bool("upstream", false, "read the upstream catalog as serve does (unique units, proven bounds); needs DPPROXY_UPSTREAM_DSN or the policy's DSN")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *policyPath == "" || fs.NArg() != 1 {
		return usageError{"usage: dpproxy explain --policy FILE [--epsilon E] [--delta D] 'SQL'"}
	}
	// The upstream DSN is not needed to explain; let a missing one pass.
	if os.Getenv("DPPROXY_UPSTREAM_DSN") == "" && !*upstream {
		os.Setenv("DPPROXY_UPSTREAM_DSN", "host=unused")
	}
	pol, err := policy.Load(*policyPath)
	if err != nil {
		return err
	}
	if *eps == 0 {
		*eps = pol.Defaults.Epsilon
	}
	if *upstream {
		if pol, err = withUpstreamCatalog(pol); err != nil {
			return err
		}
	}
	stmts, err := rewrite.Classify(fs.Arg(0), pol)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		switch st.Kind {
		case rewrite.KindDP, rewrite.KindExplain:
			lines, err := answer.Explain(st.Plan, *eps, *delta)
			if err != nil {
				return err
			}
			fmt.Println(strings.Join(lines, "\n"))
		case rewrite.KindPassthrough:
			fmt.Println("passthrough: reads no private data; runs upstream as written, free")
		case rewrite.KindSession:
			fmt.Println("session command: answered by the proxy, free")
		default:
			fmt.Println("empty statement")
		}
	}
	return nil
}

// withUpstreamCatalog adds to pol what the upstream catalog proves, as
// serve would read it at start.
func withUpstreamCatalog(pol *policy.Policy) (*policy.Policy, error) {
	cfg, err := wire.UpstreamPoolConfig(pol)
	if err != nil {
		return nil, fmt.Errorf("upstream DSN: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting upstream: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connecting upstream: %w", err)
	}
	return wire.CatalogFacts(ctx, pool, pol, slog.New(slog.NewTextHandler(io.Discard, nil))), nil
}
