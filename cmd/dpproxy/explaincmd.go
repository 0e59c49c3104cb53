package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// cmdExplain prints how dpproxy would answer a statement under a policy:
// no upstream contact and no charge.
func cmdExplain(args []string) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (required)")
	eps := fs.Float64("epsilon", 0, "epsilon of the query (default: the policy's default)")
	delta := fs.Float64("delta", 1e-7, "delta spent by partition selection, when the query needs it")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *policyPath == "" || fs.NArg() != 1 {
		return usageError{"usage: dpproxy explain --policy FILE [--epsilon E] [--delta D] 'SQL'"}
	}
	// The upstream DSN is not needed to explain; let a missing one pass.
	if os.Getenv("DPPROXY_UPSTREAM_DSN") == "" {
		os.Setenv("DPPROXY_UPSTREAM_DSN", "host=unused")
	}
	pol, err := policy.Load(*policyPath)
	if err != nil {
		return err
	}
	if *eps == 0 {
		*eps = pol.Defaults.Epsilon
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
