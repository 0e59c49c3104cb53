package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
)

func cmdLedger(args []string) error {
	if len(args) == 0 || args[0] != "report" {
		return usageError{"usage: dpproxy ledger report [--ledger FILE [--policy FILE] | --admin ADDR] [--format table|csv|json]"}
	}
	fs := flag.NewFlagSet("ledger report", flag.ContinueOnError)
	file := fs.String("ledger", "", "read this bolt ledger file directly (the proxy using it must be stopped)")
	policyPath := fs.String("policy", "", "policy file, to list analysts who have spent nothing and their budgets")
	admin := fs.String("admin", "127.0.0.1:6433", "admin address of a running dpproxy, used when --ledger is not given")
	format := fs.String("format", "table", "table, csv or json")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *file == "" {
		return reportFromAdmin(*admin, *format)
	}
	store, err := ledger.OpenBolt(*file, ledger.BoltOptions{LockTimeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w (if a dpproxy is serving from this file, use --admin instead)", err)
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bals, err := store.Balances(ctx)
	if err != nil {
		return err
	}
	if *policyPath != "" {
		pol, err := policy.Load(*policyPath)
		if err != nil {
			return err
		}
		bals = withPolicyBudgets(bals, pol)
	}
	return ledger.WriteReport(os.Stdout, bals, *format)
}

func reportFromAdmin(addr, format string) error {
	u := url.URL{Scheme: "http", Host: addr, Path: "/ledger/report", RawQuery: url.Values{"format": {format}}.Encode()}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u.String())
	if err != nil {
		return fmt.Errorf("cannot reach dpproxy's admin address %s: %w (is it running? or pass --ledger FILE)", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errors.New(string(body))
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}

// withPolicyBudgets lists every analyst of the policy, with the policy's
// budget, including those who have not spent anything yet.
func withPolicyBudgets(bals []ledger.Balance, pol *policy.Policy) []ledger.Balance {
	byName := map[string]int{}
	for i, b := range bals {
		byName[b.Analyst] = i
	}
	for _, a := range pol.Analysts {
		budget := ledger.Budget{Epsilon: a.Budget.Epsilon, Delta: a.Budget.Delta}
		if i, ok := byName[a.Name]; ok {
			bals[i].Budget = budget
			continue
		}
		bals = append(bals, ledger.Balance{Analyst: a.Name, Budget: budget})
	}
	sort.Slice(bals, func(i, j int) bool { return bals[i].Analyst < bals[j].Analyst })
	return bals
}
