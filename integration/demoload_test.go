package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// TestDemoLoad runs `dpproxy demo load` (the compose stack's init step)
// against an empty PostgreSQL: it loads the demo data with progress, gives
// the read-only role the password from the environment, and a second run
// leaves the data alone.
func TestDemoLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cluster := testenv.StartCluster(ctx, t)

	for run := range 2 {
		cmd := exec.CommandContext(ctx, binary, "demo", "load", "--dsn", cluster.DSN("postgres"))
		cmd.Env = append(os.Environ(), "DPPROXY_READER_PASSWORD=reader-secret")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("demo load (run %d): %v\n%s", run+1, err, out)
		}
		if run == 0 && !strings.Contains(string(out), "loading") {
			t.Errorf("demo load showed no progress:\n%s", out)
		}
	}
	conn, err := pgx.Connect(ctx, cluster.DSN("demo"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n == 0 {
		t.Fatalf("patients after demo load: %d, %v", n, err)
	}
	var hasPassword bool
	if err := conn.QueryRow(ctx, "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'dpproxy_reader'").Scan(&hasPassword); err != nil || !hasPassword {
		t.Fatalf("dpproxy_reader has no password after demo load (%v)", err)
	}
}
