package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Statement(KindDP, OutcomeOK, "", time.Millisecond)
	m.Observe(StageParse, time.Millisecond)
	m.Charged("alice", 0.5, 0, 4.5)
	m.CacheLookup(true)
	m.ConnOpened()()
}

func TestMetricsExposition(t *testing.T) {
	m := New()
	closed := m.ConnOpened()
	m.Statement(KindDP, OutcomeOK, "", 3*time.Millisecond)
	m.Statement(KindUnparsed, OutcomeRefused, "DP001", time.Millisecond)
	m.Observe(StageLedger, time.Millisecond)
	m.Charged("alice", 0.5, 1e-7, 4.5)
	m.Charged("alice", 0.25, 0, 4.25)
	m.CacheLookup(true)
	m.CacheLookup(false)
	m.CacheLookup(false)

	body := scrape(t, m)
	for _, want := range []string{
		`dpproxy_statements_total{kind="dp",outcome="ok"} 1`,
		`dpproxy_statements_total{kind="unclassified",outcome="refused"} 1`,
		`dpproxy_refusals_total{id="DP001"} 1`,
		`dpproxy_epsilon_spent_total{analyst="alice"} 0.75`,
		`dpproxy_delta_spent_total{analyst="alice"} 1e-07`,
		`dpproxy_budget_epsilon_remaining{analyst="alice"} 4.25`,
		`dpproxy_stage_duration_seconds_count{stage="total"} 2`,
		`dpproxy_stage_duration_seconds_count{stage="ledger"} 1`,
		`dpproxy_stage_duration_seconds_count{stage="upstream"} 0`,
		`dpproxy_answer_cache_lookups_total{result="hit"} 1`,
		`dpproxy_answer_cache_lookups_total{result="miss"} 2`,
		`dpproxy_connections_total 1`,
		`dpproxy_connections_open 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	closed()
	if body := scrape(t, m); !strings.Contains(body, "dpproxy_connections_open 0") {
		t.Error("connections_open did not return to 0")
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, b)
	}
	return string(b)
}
