package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// walkStep is one step of the README's walkthrough: a psql statement with
// what the README says it prints, or the ledger report.
type walkStep struct {
	line    int    // in README.md
	sql     string // "" for the ledger report
	refusal string // catalogue ID of the ERROR the README shows, if any
	notice  string // the NOTICE the README shows, if any
	output  []string
}

var refusalID = regexp.MustCompile(`\[(DP\d{3})\]`)

// readmeWalkthrough parses the fenced block after the marker comment in
// README.md.
func readmeWalkthrough(t *testing.T) []walkStep {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	i := 0
	for i < len(lines) && !strings.Contains(lines[i], "integration/readme_test.go replays") {
		i++
	}
	for i < len(lines) && !strings.HasPrefix(lines[i], "```") {
		i++
	}
	if i == len(lines) {
		t.Fatal("README.md has no walkthrough block after the readme_test marker")
	}
	var steps []walkStep
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "demo=> \\"): // psql meta-command (\q)
		case strings.HasPrefix(l, "demo=> "):
			steps = append(steps, walkStep{line: i + 1, sql: strings.TrimPrefix(l, "demo=> ")})
		case strings.HasPrefix(l, "$ ") && strings.Contains(l, "dpproxy ledger report"):
			steps = append(steps, walkStep{line: i + 1})
		case strings.HasPrefix(l, "$ ") || strings.HasPrefix(l, "--") || len(steps) == 0:
		case strings.HasPrefix(l, "ERROR:"):
			m := refusalID.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("README.md:%d: an ERROR without a catalogue ID", i+1)
			}
			steps[len(steps)-1].refusal = m[1]
		case strings.HasPrefix(l, "NOTICE:"):
			steps[len(steps)-1].notice = strings.TrimSpace(strings.TrimPrefix(l, "NOTICE:"))
		default:
			steps[len(steps)-1].output = append(steps[len(steps)-1].output, l)
		}
	}
	return steps
}

// TestReadmeWalkthrough replays the README's walkthrough: every statement
// runs through psql as alice against a proxy with the demo policy (answer
// cache on); statements the README shows refused must be refused with the
// same catalogue ID and a HINT, the others must succeed; each NOTICE's cost
// and budget left, SHOW dp.budget and alice's ledger report row must be as
// printed.
func TestReadmeWalkthrough(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatal("psql not found; install postgresql-client (scripts/test.sh does)")
	}
	steps := readmeWalkthrough(t)
	if len(steps) < 8 {
		t.Fatalf("the walkthrough has %d steps; the parser or the README changed", len(steps))
	}
	admin := freeAddr(t)
	p := startProxy(t, proxyOptions{cacheWindow: "10m", serveArgs: []string{"--admin", admin}})
	host, port, _ := net.SplitHostPort(p.addr)
	conninfo := fmt.Sprintf("host=%s port=%s user=alice dbname=demo sslmode=disable", host, port)

	var session []string // SETs so far: psql runs once per statement
	refused := 0
	for _, st := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if st.sql == "" {
			out, err := exec.CommandContext(ctx, binary, "ledger", "report", "--admin", admin).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("README.md:%d: ledger report: %v\n%s", st.line, err, out)
			}
			want, got := reportRow(st.output, "alice"), reportRow(strings.Split(string(out), "\n"), "alice")
			if want == nil || got == nil || want["SPENT_EPSILON"] != got["SPENT_EPSILON"] || want["QUERIES"] != got["QUERIES"] || want["REMAINING_EPSILON"] != got["REMAINING_EPSILON"] {
				t.Errorf("README.md:%d: alice's ledger row is %v, the README shows %v\n%s", st.line, got, want, out)
			}
			continue
		}
		script := strings.Join(append(append([]string{}, session...), st.sql), "\n") + "\n"
		cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", conninfo)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+alicePassword)
		cmd.Stdin = strings.NewReader(script)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		errText := stderr.String()
		if st.refusal != "" {
			refused++
			if err == nil || !strings.Contains(errText, "["+st.refusal+"]") || !strings.Contains(errText, "HINT:") {
				t.Errorf("README.md:%d: %s\nwas not refused with %s and a HINT: %v\n%s", st.line, st.sql, st.refusal, err, errText)
			}
			continue
		}
		if err != nil || strings.Contains(errText, "ERROR:") {
			t.Errorf("README.md:%d: %s\nfailed: %v\n%s", st.line, st.sql, err, errText)
			continue
		}
		if st.notice != "" {
			if got := noticeOf(errText); costPart(got) != costPart(st.notice) {
				t.Errorf("README.md:%d: %s\nNOTICE %q, the README shows %q", st.line, st.sql, got, st.notice)
			}
		}
		upper := strings.ToUpper(st.sql)
		switch {
		case strings.HasPrefix(upper, "SET "):
			session = append(session, st.sql)
		case strings.HasPrefix(upper, "SHOW DP.BUDGET"):
			if len(st.output) < 3 || !strings.Contains(stdout.String(), strings.TrimSpace(st.output[2])) {
				t.Errorf("README.md:%d: SHOW dp.budget printed %q, the README shows %q", st.line, stdout.String(), st.output)
			}
		}
	}
	if refused == 0 {
		t.Error("the walkthrough shows no refusal")
	}
}

func noticeOf(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.Index(l, "NOTICE:"); i >= 0 {
			return strings.TrimSpace(l[i+len("NOTICE:"):])
		}
	}
	return ""
}

// costPart is a NOTICE up to its first ';': the cost and the budget left,
// which are exact, without the accuracy notes.
func costPart(notice string) string {
	before, _, _ := strings.Cut(notice, ";")
	return before
}

// reportRow finds analyst's row in a `ledger report` table and returns it
// by column name.
func reportRow(lines []string, analyst string) map[string]string {
	var header []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if f[0] == "ANALYST" {
			header = f
			continue
		}
		if header != nil && f[0] == analyst && len(f) == len(header) {
			row := map[string]string{}
			for i, h := range header {
				row[h] = f[i]
			}
			return row
		}
	}
	return nil
}
