package main

import (
	"bufio"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

func cmdPolicy(args []string) error {
	if len(args) != 2 || args[0] != "check" {
		return usageError{"usage: dpproxy policy check FILE"}
	}
	pol, err := policy.Load(args[1])
	if err != nil {
		return fmt.Errorf("%s is invalid:\n%w", args[1], err)
	}
	fmt.Printf("%s is valid (version %s)\n", args[1], pol.Version)
	fmt.Printf("listen %s, ledger %s, default epsilon %g per query (cap %g)\n", pol.Listen, pol.Ledger.Backend, pol.Defaults.Epsilon, pol.Defaults.MaxEpsilon)
	for _, a := range pol.Analysts {
		fmt.Printf("analyst %-12s budget epsilon %g delta %g, per-query cap %g\n", a.Name, a.Budget.Epsilon, a.Budget.Delta, pol.EpsilonCap(a))
	}
	for _, t := range pol.Tables {
		var cols []string
		for _, c := range t.Columns {
			switch {
			case c.Hidden:
				cols = append(cols, c.Name+"(hidden)")
			case c.Bounds != nil:
				cols = append(cols, fmt.Sprintf("%s[%g,%g]", c.Name, c.Bounds.Lower, c.Bounds.Upper))
			default:
				cols = append(cols, c.Name)
			}
		}
		fmt.Printf("table %s: %s privacy; columns %s\n", t.QualifiedName(), t.Privacy, strings.Join(cols, ", "))
	}
	return nil
}

func cmdPasswd(args []string) error {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	iterations := fs.Int("iterations", 4096, "PBKDF2 iterations")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	fmt.Fprint(os.Stderr, "password: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
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
	fmt.Fprintln(os.Stderr)
	fmt.Println(v.String())
	return nil
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
