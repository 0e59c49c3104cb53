package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dpproxy/dpproxy/internal/pgcluster"
	"github.com/dpproxy/dpproxy/ledger"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// ledgerProxy is a dpproxy process started from an explicit policy text, so
// the ledger tests can choose the backend and kill the process with SIGKILL.
type ledgerProxy struct {
	proxy
	exited chan error
}

var ledgerBlock = regexp.MustCompile(`(?m)^ledger:\n(?:[ \t]+.*\n)+`)

// redisLedgerPolicy is the test policy (demo + carol with carolBudget) with
// the ledger block replaced by a Redis ledger at addrs.
func redisLedgerPolicy(t *testing.T, listen string, carolBudget float64, addrs ...string) string {
	t.Helper()
	text := testPolicy(t, listen, "unused.db", proxyOptions{carolBudget: carolBudget})
	block := fmt.Sprintf("ledger:\n  backend: redis\n  redis:\n    addrs: [%s]\n", strings.Join(addrs, ", "))
	if !ledgerBlock.MatchString(text) {
		t.Fatal("no ledger block in the test policy")
	}
	return ledgerBlock.ReplaceAllString(text, block)
}

// boltLedgerPolicy is the test policy with the bolt ledger at path.
func boltLedgerPolicy(t *testing.T, listen, path string, carolBudget float64) string {
	return testPolicy(t, listen, path, proxyOptions{carolBudget: carolBudget})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := pgcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startLedgerProxy runs dpproxy serve with policy text (whose listen address
// is addr) and waits until it accepts connections. Cleanup stops it with
// SIGTERM unless it was killed.
func startLedgerProxy(t *testing.T, addr, policyText string, extraArgs ...string) *ledgerProxy {
	t.Helper()
	p := &ledgerProxy{proxy: proxy{addr: addr, logs: &testenv.Buffer{}}, exited: make(chan error, 1)}
	p.policyPath = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p.policyPath, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--policy", p.policyPath, "--admin", ""}, extraArgs...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+pg.ReaderDSN())
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.terminate()
		if t.Failed() {
			t.Logf("dpproxy %s logs:\n%s", p.addr, p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("dpproxy exited before listening: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dpproxy did not listen on %s: %v\n%s", p.addr, err, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminate stops the process with SIGTERM (SIGKILL after 40s); a no-op
// once it has exited.
func (p *ledgerProxy) terminate() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *ledgerProxy) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
}

// sqlstate returns the SQLSTATE of a Postgres error, or "".
func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// queryCount runs a one-row count and returns it.
func queryCount(ctx context.Context, conn *pgx.Conn, sql string) (int64, error) {
	var n int64
	err := conn.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

// runBinary runs dpproxy serve with policy text and returns its output once
// it exits (within 30s): for configurations it must refuse.
func runBinary(t *testing.T, policyText string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--policy", path, "--admin", "")
	cmd.Env = append(os.Environ(), "DPPROXY_UPSTREAM_DSN="+pg.ReaderDSN())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// entriesByStatement verifies the ledger's hash chain (after names the event,
// for the failure message) and counts carol's audit entries per statement
// and in all.
func entriesByStatement(t *testing.T, ctx context.Context, store ledger.Store, after string) (map[string]int, int) {
	t.Helper()
	if err := store.Verify(ctx); err != nil {
		t.Fatalf("Verify after %s: %v", after, err)
	}
	es, err := store.Entries(ctx, ledger.Filter{Analyst: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]int{}
	for _, e := range es {
		entries[e.Statement]++
	}
	return entries, len(es)
}
