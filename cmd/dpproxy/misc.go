package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

func cmdPolicy(args []string) error {
	const usage = "usage: dpproxy policy check [--strict] FILE | dpproxy policy init --dsn DSN [--out FILE]"
	if len(args) == 0 {
		return usageError{usage}
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(args[1:], os.Stdout, os.Stderr)
	case "init":
		return cmdPolicyInit(args[1:])
	}
	return usageError{usage}
}

// cmdPolicyCheck validates a policy file: every error and warning with its
// position on stderr, then a summary of what the policy exposes on stdout.
// Errors (and, with --strict, warnings) make it fail.
func cmdPolicyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	strict := fs.Bool("strict", false, "fail on warnings too")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"usage: dpproxy policy check [--strict] FILE"}
	}
	path := fs.Arg(0)
	pol, errs, warns, err := policy.CheckFile(path)
	if err != nil {
		return err
	}
	all := append(append(policy.Problems{}, errs...), warns...)
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Line != all[j].Line {
			return all[i].Line < all[j].Line
		}
		return all[i].Column < all[j].Column
	})
	for _, p := range all {
		fmt.Fprintln(stderr, p.String())
	}
	counts := fmt.Sprintf("%s, %s", plural(len(errs), "error"), plural(len(warns), "warning"))
	if len(errs) > 0 {
		return fmt.Errorf("%s is invalid: %s; the running proxy keeps its current policy", path, counts)
	}
	fmt.Fprintf(stdout, "%s is valid (version %s): %s\n\n", path, pol.Version, counts)
	writeSummary(stdout, pol)
	if *strict && len(warns) > 0 {
		return fmt.Errorf("%s has %s (--strict)", path, plural(len(warns), "warning"))
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// writeSummary says what the policy exposes, table by table and analyst by
// analyst, in words a reviewer can check against intent.
func writeSummary(w io.Writer, pol *policy.Policy) {
	admin := pol.Admin
	if admin == "" {
		admin = "off"
	}
	fmt.Fprintf(w, "serves %s (tls %s), admin %s, ledger %s", pol.Listen, pol.TLS.Mode, admin, pol.Ledger.Backend)
	if pol.Ledger.Backend == "bolt" {
		fmt.Fprintf(w, " %s", pol.Ledger.Path)
	} else {
		fmt.Fprintf(w, " %s", strings.Join(pol.Ledger.Redis.Addrs, ","))
	}
	cache := "off"
	if pol.Defaults.CacheWindow > 0 {
		cache = pol.Defaults.CacheWindow.String()
	}
	fmt.Fprintf(w, "\nper query: epsilon %g by default, at most %g; delta %g; %s accounting; answer cache %s\n",
		pol.Defaults.Epsilon, pol.Defaults.MaxEpsilon, pol.Defaults.Delta, pol.Defaults.Accounting, cache)
	if pol.Trust {
		fmt.Fprintln(w, "analysts without a password are trusted (trust_local_analysts)")
	}

	fmt.Fprintf(w, "\nanalysts (%d):\n", len(pol.Analysts))
	for _, a := range pol.Analysts {
		tables := "all tables"
		if a.Tables != nil {
			tables = "tables " + strings.Join(a.Tables, ", ")
			if len(a.Tables) == 0 {
				tables = "no tables"
			}
		}
		team := ""
		if a.Team != "" {
			team = ", team " + a.Team
		}
		fmt.Fprintf(w, "  %-12s budget %s; per query epsilon <= %g, delta <= %g; %s%s\n",
			a.Name, budgetText(a.Budget), pol.EpsilonCap(a), pol.DeltaCap(a), tables, team)
	}
	for _, t := range pol.Teams {
		fmt.Fprintf(w, "  team %s (%s) shares budget %s\n", t.Name, strings.Join(t.Members, ", "), budgetText(t.Budget))
	}
	for _, d := range pol.Datasets {
		fmt.Fprintf(w, "  dataset %s (%s): all analysts together spend at most %s\n", d.Name, strings.Join(d.Tables, ", "), budgetText(d.Budget))
	}

	fmt.Fprintf(w, "\ntables (%d):\n", len(pol.Tables))
	for _, t := range pol.Tables {
		switch t.Privacy {
		case policy.PrivacyPublic:
			fmt.Fprintf(w, "  %s: public, answered exactly and not charged\n", t.QualifiedName())
		case policy.PrivacyRow:
			fmt.Fprintf(w, "  %s: private, each row is one person\n", t.QualifiedName())
		case policy.PrivacyUnit:
			fmt.Fprintf(w, "  %s: private, all rows with one %s are one person; at most %d rows and %d groups per person count\n",
				t.QualifiedName(), t.Unit, t.MaxRowsPerUnit, t.MaxGroupsPerUnit)
		}
		var sums, groups, filters, hidden []string
		for _, c := range t.Columns {
			switch {
			case c.Hidden:
				hidden = append(hidden, c.Name)
				continue
			case c.Bounds != nil:
				sums = append(sums, fmt.Sprintf("%s [%g, %g]", c.Name, c.Bounds.Lower, c.Bounds.Upper))
			}
			switch {
			case c.Domain != nil:
				groups = append(groups, fmt.Sprintf("%s (%d values)", c.Name, len(c.Domain)))
			case c.Range != nil:
				groups = append(groups, fmt.Sprintf("%s by period in [%s, %s)", c.Name, c.Range.Lower.Format("2006-01-02"), c.Range.Upper.Format("2006-01-02")))
			case c.Bounds == nil:
				filters = append(filters, c.Name)
			}
		}
		if t.IsPrivate() {
			line := func(what string, cols []string) {
				if len(cols) > 0 {
					fmt.Fprintf(w, "    %s: %s\n", what, strings.Join(cols, ", "))
				}
			}
			line("sum/avg (clamped to bounds)", sums)
			line("group by without spending delta", groups)
			line("filter and count only", filters)
			line("hidden (never usable)", hidden)
		}
		if d := pol.DatasetOf(t); d != nil {
			fmt.Fprintf(w, "    in dataset %s\n", d.Name)
		}
	}
}

func budgetText(b policy.Budget) string {
	s := fmt.Sprintf("epsilon %g", b.Epsilon)
	if b.Delta > 0 {
		s += fmt.Sprintf(" delta %g", b.Delta)
	}
	return s + " " + b.Period
}

// cmdPasswd prints a SCRAM-SHA-256 verifier for a password read from the
// terminal (without echo, asked twice) or, non-interactively, from the first
// line of stdin: `echo -n secret | dpproxy passwd`.
func cmdPasswd(args []string) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	iterations := fs.Int("iterations", 4096, "PBKDF2 iterations")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{"usage: dpproxy passwd [--iterations N] < password (the password is never an argument: it would show in ps and shell history)"}
	}
	if *iterations < 4096 {
		return usageError{"--iterations must be at least 4096"}
	}
	var pw string
	if isTerminal(os.Stdin) {
		first, err := readSecret("password: ")
		if err != nil {
			return err
		}
		again, err := readSecret("again: ")
		if err != nil {
			return err
		}
		if first != again {
			return errors.New("the passwords differ")
		}
		pw = first
	} else {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return usageError{"empty password"}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	v, err := policy.NewVerifier(pw, salt, *iterations)
	if err != nil {
		return err
	}
	fmt.Println(v.String())
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// readSecret prompts on stderr and reads a line from the terminal with echo
// turned off where the platform allows it.
func readSecret(prompt string) (string, error) {
	fmt.Fprint(os.Stderr, prompt)
	restore := noEcho(os.Stdin)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	restore()
	fmt.Fprintln(os.Stderr)
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func cmdErrors(args []string) error {
	markdown := len(args) == 1 && args[0] == "--markdown"
	if markdown {
		fmt.Println("| ID | SQLSTATE | refused | hint |")
		fmt.Println("| --- | --- | --- | --- |")
	}
	for _, r := range pgerror.Catalogue {
		if markdown {
			fmt.Printf("| %s | %s | %s | %s |\n", r.ID, r.Code, r.Summary, strings.ReplaceAll(r.Hint, "|", "\\|"))
		} else {
			fmt.Printf("%s %s  %s\n", r.ID, r.Code, r.Summary)
		}
	}
	return nil
}
