package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/policy"
)

const erinPassword = "erin-test"

// writePolicy validates text as the proxy would, writes it over the running
// proxy's policy file and returns its version.
func writePolicy(t *testing.T, p *proxy, text string) string {
	t.Helper()
	pol, err := policy.Parse(p.policyPath, []byte(text), policy.Env{
		Getenv:   func(string) string { return pg.ReaderDSN() },
		ReadFile: os.ReadFile,
	})
	if err != nil {
		t.Fatalf("the edited policy is invalid:\n%v", err)
	}
	if err := os.WriteFile(p.policyPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return pol.Version
}

// waitLog waits until the proxy's logs contain every one of parts on one
// line, and returns that line.
func waitLog(t *testing.T, p *proxy, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			all := true
			for _, part := range parts {
				all = all && strings.Contains(line, part)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within 15s:\n%s", parts, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgCode is the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pge *pgconn.PgError
	if errors.As(err, &pge) {
		return pge.Code
	}
	return ""
}

func count(ctx context.Context, conn *pgx.Conn, sql string) error {
	var n int64
	return conn.QueryRow(ctx, sql).Scan(&n)
}

// TestPolicyReload edits the policy under a running proxy: a tightened
// budget, a removed table and a new analyst take effect on the next
// statement; a broken edit is rejected with its positions logged and
// service goes on under the old policy.
func TestPolicyReload(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 5})
	orig, err := os.ReadFile(p.policyPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(orig)
	edit := func(old, new string) {
		t.Helper()
		if !strings.Contains(text, old) {
			t.Fatalf("the test policy lacks %q", old)
		}
		text = strings.Replace(text, old, new, 1)
	}

	// Simple protocol: every statement is planned under the policy in
	// service (prepared statements are the subject of the test below).
	alice := p.connect(t, ctx, "alice", alicePassword, true)
	carol := p.connect(t, ctx, "carol", carolPassword, false)
	for _, q := range []string{"SELECT count(*) FROM patients", "SELECT count(*) FROM visits"} {
		if err := count(ctx, alice, q); err != nil {
			t.Fatalf("before any edit, %s: %v", q, err)
		}
	}
	if _, err := carol.Exec(ctx, "SET dp.epsilon = 0.5"); err != nil {
		t.Fatal(err)
	}
	if err := count(ctx, carol, "SELECT count(*) FROM patients"); err != nil {
		t.Fatalf("carol's first query: %v", err)
	}

	// 1. Tighten carol's budget from 5 to 0.6 (0.5 spent): picked up from
	// the file change alone, no signal.
	edit("budget: {epsilon: 5,", "budget: {epsilon: 0.6,")
	v1 := writePolicy(t, p, text)
	waitLog(t, p, "policy reloaded", "policy_version="+v1, `trigger="file changed"`)
	carol2 := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := carol2.Exec(ctx, "SET dp.epsilon = 0.5"); err != nil {
		t.Fatal(err)
	}
	if err := count(ctx, carol2, "SELECT count(*) FROM patients"); pgCode(err) != "53400" {
		t.Fatalf("after tightening carol's budget to 0.6 with 0.5 spent, a 0.5 query gave %v, want 53400 (budget exhausted)", err)
	}

	// 2. Remove the visits table: the next statement on an open connection
	// is refused as an undeclared table.
	start := strings.Index(text, "  - name: visits\n")
	end := strings.Index(text, "  - name: departments\n")
	if start < 0 || end < start {
		t.Fatal("cannot find the visits table in the test policy")
	}
	text = text[:start] + text[end:]
	v2 := writePolicy(t, p, text)
	waitLog(t, p, "policy reloaded", "policy_version="+v2)
	if err := count(ctx, alice, "SELECT count(*) FROM visits"); pgCode(err) != "42P01" {
		t.Fatalf("after removing visits, a query on it gave %v, want 42P01 (undeclared table)", err)
	}
	if err := count(ctx, alice, "SELECT count(*) FROM patients"); err != nil {
		t.Fatalf("patients after removing visits: %v", err)
	}

	// 3. Add an analyst, with SIGHUP: erin cannot connect before, can after.
	if _, err := pgx.Connect(ctx, p.dsn("erin", erinPassword)); pgCode(err) != "28P01" {
		t.Fatalf("erin before being added: %v, want 28P01", err)
	}
	v, err := policy.NewVerifier(erinPassword, []byte("integration-erin"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	edit("\ntables:\n", fmt.Sprintf("\n  - name: erin\n    password: %q\n    budget: {epsilon: 3}\n\ntables:\n", v.String()))
	v3 := writePolicy(t, p, text)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "policy reloaded", "policy_version="+v3)
	erin := p.connect(t, ctx, "erin", erinPassword, true)
	if err := count(ctx, erin, "SELECT count(*) FROM patients"); err != nil {
		t.Fatalf("erin after being added: %v", err)
	}

	// 4. A broken edit (and a SIGHUP) is rejected with every problem and its
	// position logged; the policy in service stays.
	broken := strings.Replace(text, "privacy: row", "privacy: secret", 1)
	broken = strings.Replace(broken, "budget: {epsilon: 3}", "budget: {epsilon: -1}", 1)
	if err := os.WriteFile(p.policyPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	line := waitLog(t, p, "policy reload rejected", "policy_version="+v3)
	for _, want := range []string{`unknown privacy \"secret\": write row, unit or public`, "budget epsilon must be a positive finite number", p.policyPath + ":"} {
		if !strings.Contains(line, want) {
			t.Errorf("rejection log lacks %q:\n%s", want, line)
		}
	}
	time.Sleep(1500 * time.Millisecond) // several polls of the broken file
	if strings.Count(p.logs.String(), "policy_version="+v3) < 2 || strings.Contains(p.logs.String(), "panic") {
		t.Fatalf("logs:\n%s", p.logs.String())
	}
	erin2 := p.connect(t, ctx, "erin", erinPassword, false)
	for _, conn := range []*pgx.Conn{erin, erin2, alice} {
		if err := count(ctx, conn, "SELECT count(*) FROM patients"); err != nil {
			t.Fatalf("after a broken edit, service changed: %v", err)
		}
	}
	if err := count(ctx, alice, "SELECT count(*) FROM visits"); pgCode(err) != "42P01" {
		t.Fatalf("after a broken edit, visits gave %v, want the previous policy's 42P01", err)
	}

	// Fixing the file brings it back into service.
	v4 := writePolicy(t, p, strings.Replace(text, "budget: {epsilon: 3}", "budget: {epsilon: 2}", 1))
	waitLog(t, p, "policy reloaded", "policy_version="+v4)
}

// runCLI runs the dpproxy binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// TestPolicyInitDraftPassesCheck drafts a policy from the demo database's
// schema: it suggests the privacy unit from the foreign key, leaves bounds
// as TODO (so check fails), and passes check once the bounds are filled in.
func TestPolicyInitDraftPassesCheck(t *testing.T) {
	dir := t.TempDir()
	draftPath := filepath.Join(dir, "draft.yaml")
	if out, errOut, code := runCLI(t, nil, "policy", "init", "--dsn", pg.AdminDSN(), "--out", draftPath); code != 0 {
		t.Fatalf("policy init: exit %d\n%s%s", code, out, errOut)
	}
	b, err := os.ReadFile(draftPath)
	if err != nil {
		t.Fatal(err)
	}
	draft := string(b)
	for _, want := range []string{
		"- name: visits\n",
		"# patient_id references public.patients(patient_id): all rows with one patient_id are one privacy unit.",
		"privacy: unit\n    unit: patient_id\n",
		"# Other candidate: department references public.departments(name).",
		"{name: age, type: integer, bounds: TODO}",
		"{name: cost, type: numeric, bounds: TODO}",
		"{name: patient_id, type: integer, hidden: true}",
		"bounds taken from the data",
	} {
		if !strings.Contains(draft, want) {
			t.Errorf("draft lacks %q\ndraft:\n%s", want, draft)
		}
	}
	if strings.Contains(draft, "password=") {
		t.Error("draft contains a connection password")
	}
	env := []string{"DPPROXY_UPSTREAM_DSN=" + pg.ReaderDSN()}
	_, errOut, code := runCLI(t, env, "policy", "check", draftPath)
	if code != 1 || !strings.Contains(errOut, `bounds of column "age" are still TODO`) {
		t.Errorf("check of the unfilled draft: exit %d\n%s", code, errOut)
	}
	filled := strings.ReplaceAll(draft, "bounds: TODO", "bounds: [0, 100]")
	if err := os.WriteFile(draftPath, []byte(filled), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, env, "policy", "check", "--strict", draftPath)
	if code != 0 {
		t.Fatalf("check of the filled draft: exit %d\n%s%s\ndraft:\n%s", code, out, errOut, filled)
	}
	if !strings.Contains(out, "public.visits: private, all rows with one patient_id are one person") {
		t.Errorf("summary:\n%s", out)
	}
}

// TestPolicyReloadOpenSessions checks what an edit does to what an open
// connection already holds: a statement prepared (and cached by pgx) before a
// table was removed must be refused, and an analyst connected before their
// budget was tightened must be held to the new budget.
func TestPolicyReloadOpenSessions(t *testing.T) {
	ctx := testContext(t)
	p := startProxy(t, proxyOptions{carolBudget: 5})
	orig, err := os.ReadFile(p.policyPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(orig)
	alice := p.connect(t, ctx, "alice", alicePassword, false) // pgx prepares and caches statements
	carol := p.connect(t, ctx, "carol", carolPassword, false)
	if err := count(ctx, alice, "SELECT count(*) FROM visits"); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Exec(ctx, "SET dp.epsilon = 0.5"); err != nil {
		t.Fatal(err)
	}
	if err := count(ctx, carol, "SELECT count(*) FROM patients"); err != nil {
		t.Fatal(err)
	}
	start := strings.Index(text, "  - name: visits\n")
	end := strings.Index(text, "  - name: departments\n")
	if start < 0 || end < start {
		t.Fatal("cannot find the visits table in the test policy")
	}
	text = text[:start] + text[end:]
	text = strings.Replace(text, "budget: {epsilon: 5,", "budget: {epsilon: 0.6,", 1)
	v := writePolicy(t, p, text)
	waitLog(t, p, "policy reloaded", "policy_version="+v)
	if err := count(ctx, alice, "SELECT count(*) FROM visits"); pgCode(err) != "42P01" {
		t.Errorf("a statement prepared before visits was removed gave %v, want 42P01", err)
	}
	if err := count(ctx, carol, "SELECT count(*) FROM patients"); pgCode(err) != "53400" {
		t.Errorf("carol, connected before her budget was tightened to 0.6 (0.5 spent), gave %v for 0.5 more, want 53400", err)
	}
}
