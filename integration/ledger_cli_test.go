package integration

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// dpproxyCLI runs the binary with args and returns stdout, stderr and the
// exit code.
func dpproxyCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+pg.ReaderDSN())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := dpproxyCLI(t, args...)
	if code != 0 {
		t.Fatalf("dpproxy %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestLedgerCLI drives `dpproxy ledger report|verify|grant|reset` against a
// running proxy's admin endpoint and then against its stopped bolt file.
func TestLedgerCLI(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	ledgerPath := filepath.Join(dir, "ledger.db")
	addr, admin := freeAddr(t), freeAddr(t)
	p := startLedgerProxy(t, addr, boltLedgerPolicy(t, addr, ledgerPath, 0.5), "--admin", admin)
	carol := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := carol.Exec(ctx, "SET dp.epsilon = 0.25"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := queryCount(ctx, carol, countQuery); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := queryCount(ctx, carol, countQuery); sqlstate(err) == "" {
		t.Fatalf("carol's third query at 0.25 of 0.5: %v", err)
	}

	// Reports through the admin endpoint.
	recs, err := csv.NewReader(strings.NewReader(mustCLI(t, "ledger", "report", "--admin", admin, "--format", "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, r := range recs[1:] {
		rows[r[0]] = r
	}
	if c := rows["carol"]; c == nil || c[1] != "0.5" || c[3] != "0" || c[7] != "2" || rows["alice"] == nil {
		t.Fatalf("csv report %q", recs)
	}
	var js []map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, "ledger", "report", "--admin", admin, "--format", "json", "--analyst", "carol")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0]["analyst"] != "carol" || js[0]["spent_epsilon"] != 0.5 {
		t.Fatalf("json report for carol %v", js)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "ledger", "report", "--admin", admin, "--format", "json", "--analyst", "carol", "--since", "2999-01-01")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0]["spent_epsilon"] != 0.0 {
		t.Fatalf("report since 2999 %v", js)
	}
	htmlPath := filepath.Join(dir, "report.html")
	mustCLI(t, "ledger", "report", "--admin", admin, "--html", htmlPath)
	page, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte(`data-analyst="carol"`)) || !bytes.Contains(page, []byte("<polyline")) {
		t.Fatalf("html report (%v):\n%.500s", err, page)
	}
	if out := mustCLI(t, "ledger", "verify", "--admin", admin); !strings.Contains(out, "ledger verified: 2 entries") {
		t.Fatalf("verify: %s", out)
	}

	// Grants and resets through the admin endpoint.
	if out := mustCLI(t, "ledger", "grant", "--admin", admin, "--analyst", "carol", "--epsilon", "0.25", "--note", "ticket 42"); !strings.Contains(out, "remaining 0.25") {
		t.Fatalf("grant: %s", out)
	}
	if _, err := queryCount(ctx, carol, countQuery); err != nil {
		t.Fatalf("after a grant of 0.25: %v", err)
	}
	if _, err := queryCount(ctx, carol, countQuery); sqlstate(err) == "" {
		t.Fatalf("grant used up: %v", err)
	}
	if out := mustCLI(t, "ledger", "reset", "--admin", admin, "--analyst", "carol"); !strings.Contains(out, "remaining 0.5") {
		t.Fatalf("reset: %s", out)
	}
	if _, err := queryCount(ctx, carol, countQuery); err != nil {
		t.Fatalf("after a reset: %v", err)
	}
	if _, _, code := dpproxyCLI(t, "ledger", "grant", "--admin", admin, "--analyst", "carol"); code != 2 {
		t.Fatalf("grant without an amount: exit %d", code)
	}

	// The stopped proxy's file, read directly.
	carol.Close(ctx)
	p.terminate()
	if out := mustCLI(t, "ledger", "verify", "--ledger", ledgerPath); !strings.Contains(out, "ledger verified: 6 entries") {
		t.Fatalf("verify file: %s", out)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "ledger", "report", "--ledger", ledgerPath, "--format", "json", "--analyst", "carol")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0]["spent_epsilon"] != 1.0 || js[0]["budget_epsilon"] != 1.25 || js[0]["remaining_epsilon"] != 0.25 {
		t.Fatalf("file report %v", js) // budget 0.5 + grant 0.25 + reset 0.5 (spent 0.75 - granted 0.25); spent 1
	}
	table := mustCLI(t, "ledger", "report", "--policy", p.policyPath)
	if !strings.Contains(table, "carol") || !strings.Contains(table, "bob") { // bob never queried: listed from the policy
		t.Fatalf("table report from the policy's ledger:\n%s", table)
	}

	// Delete an audit entry: verify fails with exit 1 and names it.
	db, err := bolt.Open(ledgerPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("audit")).Delete([]byte{0, 0, 0, 0, 0, 0, 0, 3}) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := dpproxyCLI(t, "ledger", "verify", "--ledger", ledgerPath)
	if code != 1 || !strings.Contains(errOut, "entry 3 is missing") {
		t.Fatalf("verify of a file with a deleted entry: exit %d\n%s%s", code, out, errOut)
	}
}

// TestLedgerCLIRedis: `ledger verify` and `ledger grant` on the Redis
// ledger a policy names.
func TestLedgerCLIRedis(t *testing.T) {
	ctx := testContext(t)
	raddr := testenv.StartRedis(t)
	addr := freeAddr(t)
	p := startLedgerProxy(t, addr, redisLedgerPolicy(t, addr, 0.25, raddr))
	carol := p.connect(t, ctx, "carol", carolPassword, false)
	if _, err := carol.Exec(ctx, "SET dp.epsilon = 0.25"); err != nil {
		t.Fatal(err)
	}
	if _, err := queryCount(ctx, carol, countQuery); err != nil {
		t.Fatal(err)
	}
	if _, err := queryCount(ctx, carol, countQuery); sqlstate(err) == "" {
		t.Fatalf("over budget: %v", err)
	}
	mustCLI(t, "ledger", "grant", "--policy", p.policyPath, "--analyst", "carol", "--epsilon", "0.25")
	if _, err := queryCount(ctx, carol, countQuery); err != nil {
		t.Fatalf("after a grant in Redis: %v", err)
	}
	if out := mustCLI(t, "ledger", "verify", "--policy", p.policyPath); !strings.Contains(out, "ledger verified: 3 entries") {
		t.Fatalf("verify: %s", out)
	}
}
