package integration

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

// TestMetricsEndpoint scrapes /metrics on the admin address before and after
// a mix of statements and checks that the counters moved as they should:
// statements by kind and outcome, refusals by ID, epsilon spent and budget
// left by analyst, stage latencies, cache hits and connections. It also
// checks the statement log lines: one per statement, with an ID, and never
// the answer.
func TestMetricsEndpoint(t *testing.T) {
	ctx := testContext(t)
	admin := freeAddr(t)
	p := startProxy(t, proxyOptions{cacheWindow: "10m", serveArgs: []string{"--admin", admin, "--log-format", "json"}})
	base := "http://" + admin

	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	before := scrape(t, base)
	if v := before[`dpproxy_connections_open`]; v != 0 {
		t.Errorf("connections_open before any client: %v", v)
	}

	conn := p.connect(t, ctx, "alice", alicePassword, true)
	var first, second int64
	if err := conn.QueryRow(ctx, countQuery).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, countQuery).Scan(&second); err != nil { // a cache hit
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("the repeat was not answered from the cache: %d then %d", first, second)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM patients"); sqlstate(err) != "42501" {
		t.Fatalf("SELECT * FROM patients: %v, want a DP001 refusal", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET dp.epsilon = 0.25"); err != nil {
		t.Fatal(err)
	}

	after := scrape(t, base)
	for series, want := range map[string]float64{
		`dpproxy_statements_total{kind="dp",outcome="ok"}`:                1,
		`dpproxy_statements_total{kind="dp",outcome="cache_hit"}`:         1,
		`dpproxy_statements_total{kind="unclassified",outcome="refused"}`: 1,
		`dpproxy_statements_total{kind="passthrough",outcome="ok"}`:       1,
		`dpproxy_statements_total{kind="session",outcome="ok"}`:           1,
		`dpproxy_refusals_total{id="DP001"}`:                              1,
		`dpproxy_epsilon_spent_total{analyst="alice"}`:                    0.5,
		`dpproxy_answer_cache_lookups_total{result="hit"}`:                1,
		`dpproxy_answer_cache_lookups_total{result="miss"}`:               1,
		`dpproxy_connections_total`:                                       1,
		`dpproxy_connections_open`:                                        1,
		`dpproxy_stage_duration_seconds_count{stage="ledger"}`:            2, // the fresh answer and the audited cache hit
		`dpproxy_stage_duration_seconds_count{stage="upstream"}`:          2, // the DP query and SELECT 1
		`dpproxy_stage_duration_seconds_count{stage="total"}`:             5,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	if got := after[`dpproxy_budget_epsilon_remaining{analyst="alice"}`]; got != 4.5 {
		t.Errorf("budget_epsilon_remaining for alice = %v, want 4.5", got)
	}
	if after[`dpproxy_stage_duration_seconds_count{stage="parse"}`] < 4 {
		t.Errorf("parse stage observed %v times, want at least 4", after[`dpproxy_stage_duration_seconds_count{stage="parse"}`])
	}

	conn.Close(ctx)
	waitFor(t, "connections_open back to 0", func() bool { return scrape(t, base)[`dpproxy_connections_open`] == 0 })

	// Logs: one "statement" line per statement, carrying an ID, the
	// outcome and timings, never the answer or the upstream DSN. Info
	// lines reach stderr within 10 ms (cmd/dpproxy/logwriter.go).
	var logs string
	var stmts []string
	waitFor(t, "five statement log lines", func() bool {
		logs, stmts = p.logs.String(), nil
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, `"msg":"statement"`) {
				stmts = append(stmts, line)
			}
		}
		return len(stmts) >= 5
	})
	if len(stmts) != 5 {
		t.Errorf("%d statement log lines, want 5:\n%s", len(stmts), strings.Join(stmts, "\n"))
	}
	for _, want := range []string{`"outcome":"cache_hit"`, `"refusal":"DP001"`, `"analyst":"alice"`, `"total_ms":`, `"id":"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for _, line := range stmts {
		if strings.Contains(line, strconv.FormatInt(first, 10)) {
			t.Errorf("a statement log line contains the answer %d: %s", first, line)
		}
	}
	if strings.Contains(logs, pg.ReaderDSN()) {
		t.Error("the logs contain the upstream DSN")
	}
}

// TestReadyzFollowsRedis: with a Redis ledger, /readyz is ready while Redis
// answers and unready (503, naming the ledger) once it stops; /healthz
// stays up.
func TestReadyzFollowsRedis(t *testing.T) {
	ctx := testContext(t)
	raddr := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: raddr})
	t.Cleanup(func() { rc.Close() })
	addr, admin := freeAddr(t), freeAddr(t)
	text := strings.Replace(redisLedgerPolicy(t, addr, 0, raddr), "  redis:\n", "  redis:\n    allow_volatile: true\n", 1)
	startLedgerProxy(t, addr, text, "--admin", admin)
	base := "http://" + admin

	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with Redis up: %d %s", code, body)
	}
	_ = rc.ShutdownNoSave(ctx).Err()
	var code int
	var body string
	waitFor(t, "/readyz to turn unready", func() bool {
		code, body = httpGet(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "ledger") {
		t.Errorf("/readyz body %q does not name the ledger", body)
	}
	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz with Redis down: %d %s", code, body)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads /metrics into series -> value (series written as in the
// exposition, labels included).
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
