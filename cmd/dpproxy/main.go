// Command dpproxy is a PostgreSQL wire-protocol proxy that answers aggregate
// queries over private tables with differential privacy.
//
// Exit codes: 0 success, 1 runtime failure, 2 usage error.
package main

import (
	"flag"
	"fmt"
	"os"
)

const usage = `dpproxy: a PostgreSQL proxy that enforces differential privacy

Usage:
  dpproxy serve --policy FILE          serve analysts with the policy in FILE
  dpproxy demo [flags]                 start a local PostgreSQL with demo data and serve it
  dpproxy demo load --dsn DSN          load the demo data into an existing PostgreSQL (compose init step)
  dpproxy policy check FILE            validate a policy file and summarise what it exposes
  dpproxy policy init --dsn DSN        draft a policy from the upstream schema
  dpproxy ledger report [flags]        budgets spent per analyst
  dpproxy ledger verify|grant|reset    check the audit trail's hash chain; adjust a budget
  dpproxy shadow refresh --policy FILE  refill the pre-bounded shadow copies of tables marked shadow: true
  dpproxy explain --policy FILE 'SQL'  show how a statement would be answered, without running or charging it
  dpproxy passwd                       print a SCRAM-SHA-256 verifier for a password read from the terminal or stdin
  dpproxy errors [--markdown]          print the catalogue of refusals
  dpproxy audit --policy FILE --dsn DSN  empirical lower bounds on epsilon for built-in queries

Run 'dpproxy COMMAND --help' for a command's flags.
serve's admin address answers /metrics, /healthz, /readyz and /ledger/*.
Docs: README.md, docs/analyst-guide.md, docs/dba-guide.md, docs/auditor-guide.md.
Exit codes: 0 success (and --help), 1 failure, 2 usage error.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		err = cmdServe(args)
	case "demo":
		err = cmdDemo(args)
	case "policy":
		err = cmdPolicy(args)
	case "ledger":
		err = cmdLedger(args)
	case "passwd":
		err = cmdPasswd(args)
	case "errors":
		err = cmdErrors(args)
	case "explain":
		err = cmdExplain(args)
	case "shadow":
		err = cmdShadow(args)
	case "audit":
		err = cmdAudit(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "dpproxy: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if err.Error() == flag.ErrHelp.Error() { // COMMAND --help: the flags were printed
			return
		}
		fmt.Fprintf(os.Stderr, "dpproxy %s: %v\n", os.Args[1], err)
		if _, ok := err.(usageError); ok {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
