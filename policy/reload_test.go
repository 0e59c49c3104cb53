package policy

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		// Make the change visible to the mtime check even on coarse clocks.
		later := time.Now().Add(time.Duration(len(text)) * time.Millisecond)
		_ = os.Chtimes(path, later, later)
	}
	write(basePolicy)
	getenv := testEnv.Getenv
	cur, errs, _ := Check(path, []byte(basePolicy), Env{Getenv: getenv})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var applied []*Policy
	logs := &testenv.Buffer{}
	w := NewWatcher(WatcherOptions{Path: path, Current: cur, Getenv: getenv,
		Apply: func(p *Policy) { applied = append(applied, p) }, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	if w.Poll() || w.Poll() || len(applied) != 0 {
		t.Fatal("applied an unchanged file")
	}
	// A valid change is applied on the second poll that sees it.
	tightened := strings.Replace(basePolicy, "epsilon: 5,", "epsilon: 1,", 1)
	write(tightened)
	if w.Poll() {
		t.Fatal("applied on the first poll; it must wait for the file to be stable")
	}
	if !w.Poll() || len(applied) != 1 || applied[0].Analyst("alice").Budget.Epsilon != 1 {
		t.Fatalf("tightened budget not applied: %v\n%s", applied, logs)
	}
	if w.Poll() || len(applied) != 1 {
		t.Fatal("applied twice")
	}
	// A broken change is logged once and leaves the policy in service.
	write(strings.Replace(tightened, "privacy: unit", "privacy: secret", 1))
	w.Poll()
	w.Poll()
	w.Poll()
	if len(applied) != 1 {
		t.Fatal("applied a broken policy")
	}
	if n := strings.Count(logs.String(), "policy reload rejected"); n != 1 || !strings.Contains(logs.String(), `unknown privacy \"secret\"`) {
		t.Fatalf("rejections logged %d times:\n%s", n, logs)
	}
	// Reload (SIGHUP) applies at once.
	write(strings.Replace(tightened, "listen: 127.0.0.1:6432", "listen: 127.0.0.1:7000", 1))
	if !w.Reload() || len(applied) != 2 || applied[1].Listen != "127.0.0.1:7000" {
		t.Fatalf("reload: %v", applied)
	}
	if !strings.Contains(logs.String(), "setting=listen") {
		t.Errorf("no restart warning for listen:\n%s", logs)
	}
	if !w.Reload() || len(applied) != 3 {
		t.Error("an explicit reload of unchanged bytes must apply them (named files may have changed)")
	}
}
