package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/policy"
)

const ledgerUsage = `usage:
  dpproxy ledger report [SOURCE] [--analyst A] [--since TIME] [--format table|csv|json] [--html FILE]
  dpproxy ledger verify [SOURCE]
  dpproxy ledger grant  [SOURCE] --analyst A --epsilon X [--delta D] [--period P] [--note TEXT]
  dpproxy ledger reset  [SOURCE] --analyst A [--period P] [--note TEXT]

SOURCE is one of
  --ledger FILE     a bolt ledger file (the dpproxy using it must be stopped)
  --policy FILE     the ledger the policy names (bolt file, or Redis)
  --admin ADDR      the admin address of a running dpproxy (default 127.0.0.1:6433)
TIME is RFC 3339 (2025-06-01T00:00:00Z) or a date (2025-06-01, UTC).
Grants raise the analyst's budget (negative values lower it); a reset makes
the whole budget available again. Both are written to the audit trail.`

// ledgerSource says where a ledger command reads or writes.
type ledgerSource struct {
	file, policyPath, admin string
	adminSet                bool
}

func (src *ledgerSource) flags(fs *flag.FlagSet) {
	fs.StringVar(&src.file, "ledger", "", "bolt ledger file (the dpproxy using it must be stopped)")
	fs.StringVar(&src.policyPath, "policy", "", "policy file naming the ledger (also lists analysts with no spending in reports)")
	fs.Func("admin", "admin address of a running dpproxy (default 127.0.0.1:6433)", func(s string) error {
		src.admin, src.adminSet = s, true
		return nil
	})
}

// direct reports whether the command opens the ledger itself.
func (src *ledgerSource) direct() bool {
	return !src.adminSet && (src.file != "" || src.policyPath != "")
}

func (src *ledgerSource) adminAddr() string {
	if src.admin == "" {
		return "127.0.0.1:6433"
	}
	return src.admin
}

// open opens the ledger named by --ledger or --policy.
func (src *ledgerSource) open() (ledger.Store, *policy.Policy, error) {
	var pol *policy.Policy
	if src.policyPath != "" {
		var err error
		if pol, err = policy.Load(src.policyPath); err != nil {
			return nil, nil, err
		}
	}
	if src.file != "" {
		mode := ledger.ModeBasic
		if pol != nil {
			mode = ledgerMode(pol)
		}
		s, err := ledger.OpenBolt(src.file, ledger.BoltOptions{LockTimeout: time.Second, Mode: mode})
		if err != nil {
			return nil, nil, fmt.Errorf("%w (if a dpproxy is serving from this file, use --admin instead)", err)
		}
		return s, pol, nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	s, err := openLedger(pol, log)
	if err != nil && pol.Ledger.Backend == "bolt" {
		err = fmt.Errorf("%w (if a dpproxy is serving from this file, use --admin instead)", err)
	}
	return s, pol, err
}

func cmdLedger(args []string) error {
	if len(args) == 0 {
		return usageError{ledgerUsage}
	}
	switch args[0] {
	case "report":
		return cmdLedgerReport(args[1:])
	case "verify":
		return cmdLedgerVerify(args[1:])
	case "grant", "reset":
		return cmdLedgerGrant(args[0], args[1:])
	}
	return usageError{ledgerUsage}
}

// reportQuery selects what a report shows.
type reportQuery struct {
	Analyst string
	Since   time.Time
	Format  string // table, csv, json or html
}

func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 (2025-06-01T00:00:00Z) or a date (2025-06-01)", s)
	}
	return t, nil
}

func cmdLedgerReport(args []string) error {
	fs := flag.NewFlagSet("ledger report", flag.ContinueOnError)
	var src ledgerSource
	src.flags(fs)
	analyst := fs.String("analyst", "", "only this analyst")
	since := fs.String("since", "", "only spending from this time on (RFC 3339 or YYYY-MM-DD, UTC)")
	format := fs.String("format", "table", "table, csv or json")
	htmlFile := fs.String("html", "", "also write a self-contained HTML report (chart of cumulative spend) to FILE")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	sinceT, err := parseSince(*since)
	if err != nil {
		return usageError{err.Error()}
	}
	switch *format {
	case ledger.FormatTable, ledger.FormatCSV, ledger.FormatJSON:
	default:
		return usageError{fmt.Sprintf("--format %q: want table, csv or json", *format)}
	}
	q := reportQuery{Analyst: *analyst, Since: sinceT, Format: *format}
	if !src.direct() {
		if err := reportFromAdmin(src.adminAddr(), q, os.Stdout); err != nil {
			return err
		}
		if *htmlFile != "" {
			q.Format = "html"
			return writeFileFrom(*htmlFile, func(w io.Writer) error { return reportFromAdmin(src.adminAddr(), q, w) })
		}
		return nil
	}
	store, pol, err := src.open()
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := writeLedgerReport(ctx, os.Stdout, store, pol, q); err != nil {
		return err
	}
	if *htmlFile != "" {
		q.Format = "html"
		return writeFileFrom(*htmlFile, func(w io.Writer) error { return writeLedgerReport(ctx, w, store, pol, q) })
	}
	return nil
}

func writeFileFrom(path string, fn func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := fn(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// writeLedgerReport writes the report q of store. Without Since, the rows
// are the analysts' lifetime accounts; with Since, the charges from Since
// on, summed per analyst (with each analyst's last budget). pol, when not
// nil, adds its analysts who have spent nothing and their budgets.
func writeLedgerReport(ctx context.Context, w io.Writer, store ledger.Store, pol *policy.Policy, q reportQuery) error {
	if q.Format == "html" {
		es, err := store.Entries(ctx, ledger.Filter{Analyst: q.Analyst, Since: q.Since})
		if err != nil {
			return err
		}
		return ledger.WriteHTMLReport(w, es)
	}
	var bals []ledger.Balance
	if q.Since.IsZero() {
		var err error
		if bals, err = store.Balances(ctx); err != nil {
			return err
		}
	} else {
		es, err := store.Entries(ctx, ledger.Filter{Analyst: q.Analyst, Since: q.Since})
		if err != nil {
			return err
		}
		bals = sumEntries(es)
	}
	if pol != nil {
		bals = withPolicyBudgets(bals, pol)
	}
	if q.Analyst != "" {
		var mine []ledger.Balance
		for _, b := range bals {
			if b.Analyst == q.Analyst {
				mine = append(mine, b)
			}
		}
		bals = mine
	}
	return ledger.WriteReport(w, bals, q.Format)
}

// sumEntries sums charge entries per analyst (grants only adjust budgets).
func sumEntries(es []ledger.Entry) []ledger.Balance {
	by := map[string]*ledger.Balance{}
	var names []string
	for _, e := range es {
		b := by[e.Analyst]
		if b == nil {
			b = &ledger.Balance{Analyst: e.Analyst}
			by[e.Analyst] = b
			names = append(names, e.Analyst)
		}
		if e.Kind != ledger.KindCharge {
			b.GrantedEpsilon += e.Epsilon
			b.GrantedDelta += e.Delta
			continue
		}
		b.SpentEpsilon += e.Epsilon
		b.SpentDelta += e.Delta
		b.Queries++
		b.Budget = e.Budget
	}
	sort.Strings(names)
	out := make([]ledger.Balance, len(names))
	for i, n := range names {
		out[i] = *by[n]
	}
	return out
}

func reportFromAdmin(addr string, q reportQuery, w io.Writer) error {
	v := url.Values{"format": {q.Format}}
	if q.Analyst != "" {
		v.Set("analyst", q.Analyst)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	return adminCall(addr, http.MethodGet, "/ledger/report", v, nil, w)
}

// adminCall sends one request to a running dpproxy's admin endpoint and
// copies the body of a 200 answer to w.
func adminCall(addr, method, path string, query url.Values, body []byte, w io.Writer) error {
	u := url.URL{Scheme: "http", Host: addr, Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach dpproxy's admin address %s: %w (is it running? or pass --ledger FILE / --policy FILE)", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errors.New(string(bytes.TrimSpace(msg)))
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func cmdLedgerVerify(args []string) error {
	fs := flag.NewFlagSet("ledger verify", flag.ContinueOnError)
	var src ledgerSource
	src.flags(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if !src.direct() {
		return adminCall(src.adminAddr(), http.MethodGet, "/ledger/verify", nil, nil, os.Stdout)
	}
	store, _, err := src.open()
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	msg, err := verifyLedger(ctx, store)
	if err != nil {
		return err
	}
	fmt.Println(msg)
	return nil
}

// verifyLedger runs Verify and describes the result.
func verifyLedger(ctx context.Context, store ledger.Store) (string, error) {
	if err := store.Verify(ctx); err != nil {
		return "", err
	}
	es, err := store.Entries(ctx, ledger.Filter{})
	if err != nil {
		return "", err
	}
	msg := fmt.Sprintf("ledger verified: %d entries, hash chains and accounts consistent", len(es))
	if len(es) > 0 {
		last := es[len(es)-1]
		msg += fmt.Sprintf("; last entry %s (analyst %s, seq %d, hash %s)", last.Time.UTC().Format(time.RFC3339), last.Analyst, last.Seq, last.Hash)
	}
	return msg, nil
}

// grantRequest is the body of POST /ledger/grant on the admin endpoint.
type grantRequest struct {
	Analyst string  `json:"analyst"`
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	Reset   bool    `json:"reset"`
	Period  string  `json:"period"`
	Note    string  `json:"note"`
	ID      string  `json:"id"`
}

func (r grantRequest) grant(now time.Time) ledger.Grant {
	return ledger.Grant{
		ID: r.ID, Analyst: r.Analyst, Reset: r.Reset, Epsilon: r.Epsilon, Delta: r.Delta,
		Period: ledger.Period(r.Period), Note: r.Note, Time: now,
	}
}

func cmdLedgerGrant(kind string, args []string) error {
	fs := flag.NewFlagSet("ledger "+kind, flag.ContinueOnError)
	var src ledgerSource
	src.flags(fs)
	analyst := fs.String("analyst", "", "the analyst (required)")
	period := fs.String("period", "lifetime", "the account adjusted: lifetime, or the current daily / monthly / yearly period")
	note := fs.String("note", "", "why, recorded in the audit trail (default: who ran the command)")
	var eps, delta *float64
	if kind == "grant" {
		eps = fs.Float64("epsilon", 0, "epsilon added to the budget (negative: taken back)")
		delta = fs.Float64("delta", 0, "delta added to the budget")
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *analyst == "" {
		return usageError{"--analyst is required"}
	}
	if kind == "grant" && *eps == 0 && *delta == 0 {
		return usageError{"--epsilon or --delta is required"}
	}
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	req := grantRequest{Analyst: *analyst, Reset: kind == "reset", Period: *period, Note: *note, ID: "admin-" + hex.EncodeToString(idb[:])}
	if kind == "grant" {
		req.Epsilon, req.Delta = *eps, *delta
	}
	if req.Note == "" {
		host, _ := os.Hostname()
		req.Note = fmt.Sprintf("dpproxy ledger %s by %s@%s", kind, os.Getenv("USER"), host)
	}
	if !src.direct() {
		body, _ := json.Marshal(req)
		return adminCall(src.adminAddr(), http.MethodPost, "/ledger/grant", nil, body, os.Stdout)
	}
	store, _, err := src.open()
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bal, err := store.Grant(ctx, req.grant(time.Now()))
	if err != nil {
		return err
	}
	fmt.Println(describeGrant(req, bal))
	return nil
}

func describeGrant(req grantRequest, b ledger.Balance) string {
	what := "granted epsilon " + strconv.FormatFloat(req.Epsilon, 'g', -1, 64)
	if req.Delta != 0 {
		what += ", delta " + strconv.FormatFloat(req.Delta, 'g', -1, 64)
	}
	if req.Reset {
		what = "reset"
	}
	acct := "lifetime account"
	if b.Bucket != "" {
		acct = "account for " + b.Bucket
	}
	return fmt.Sprintf("%s for analyst %s (%s): spent epsilon %g, granted %g, remaining %g",
		what, req.Analyst, acct, b.SpentEpsilon, b.GrantedEpsilon, b.RemainingEpsilon())
}

// withPolicyBudgets lists every analyst of the policy, with the policy's
// budget, including those who have not spent anything yet.
func withPolicyBudgets(bals []ledger.Balance, pol *policy.Policy) []ledger.Balance {
	byName := map[string]int{}
	for i, b := range bals {
		byName[b.Analyst] = i
	}
	for _, a := range pol.Analysts {
		budget := ledger.Budget{Epsilon: a.Budget.Epsilon, Delta: a.Budget.Delta, Period: ledger.Period(a.Budget.Period)}
		if i, ok := byName[a.Name]; ok {
			bals[i].Budget = budget
			continue
		}
		bals = append(bals, ledger.Balance{Analyst: a.Name, Budget: budget})
	}
	sort.Slice(bals, func(i, j int) bool { return bals[i].Analyst < bals[j].Analyst })
	return bals
}

// ledgerMode is the ledger's accounting mode from the policy.
func ledgerMode(pol *policy.Policy) ledger.Mode {
	if pol.Defaults.Accounting == policy.AccountingRDP {
		return ledger.ModeRDP
	}
	return ledger.ModeBasic
}
