package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Statement kinds (the kind label).
const (
	KindDP          = "dp"           // aggregate over private tables
	KindPassthrough = "passthrough"  // no private data: run upstream as is
	KindSession     = "session"      // SET, SHOW, BEGIN, ... answered by the proxy
	KindExplain     = "explain"      // EXPLAIN of a DP query
	KindEmpty       = "empty"        // an empty query string
	KindUnparsed    = "unclassified" // refused before it could be classified
)

// Statement outcomes (the outcome label).
const (
	OutcomeOK       = "ok"        // answered (DP: fresh noise, charged)
	OutcomeCacheHit = "cache_hit" // DP answer repeated from the cache, no charge
	OutcomeRefused  = "refused"   // refused with a catalogue ID (DPnnn)
	OutcomeError    = "error"     // any other error (upstream, protocol, internal)
)

// Stage is a timed part of a statement (the stage label).
type Stage string

// Stages.
const (
	StageParse    Stage = "parse"    // classify, analyze and plan (pg_query + rewrite)
	StageLedger   Stage = "ledger"   // the debit round trip
	StageUpstream Stage = "upstream" // running SQL on the upstream pool
	StageTotal    Stage = "total"    // the whole statement, from execution start to the last row sent
)

// Metrics is the set of dpproxy collectors. The zero value is not usable:
// call New. A nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	statements *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	epsSpent   *prometheus.CounterVec
	deltaSpent *prometheus.CounterVec
	epsLeft    *prometheus.GaugeVec
	durations  *prometheus.HistogramVec
	cache      *prometheus.CounterVec
	connsTotal prometheus.Counter
	connsOpen  prometheus.Gauge

	// The series every statement touches, looked up once: WithLabelValues
	// hashes its labels and takes a lock on each call.
	stages          map[Stage]prometheus.Observer
	hits, misses    prometheus.Counter
	statementSeries sync.Map // kind + "\x00" + outcome -> prometheus.Counter
}

// latencyBuckets span 100µs (a cached plan, a session command) to 30s (the
// default upstream statement timeout).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// New returns collectors registered on a fresh registry, together with the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "statements_total",
			Help: "Statements executed, by kind (dp, passthrough, session, explain, empty, unclassified) and outcome (ok, cache_hit, refused, error).",
		}, []string{"kind", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "refusals_total",
			Help: "Statements refused, by catalogue ID (see dpproxy errors).",
		}, []string{"id"}),
		epsSpent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "epsilon_spent_total",
			Help: "Privacy budget epsilon charged to the ledger by this proxy, by analyst.",
		}, []string{"analyst"}),
		deltaSpent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "delta_spent_total",
			Help: "Privacy budget delta charged to the ledger by this proxy, by analyst.",
		}, []string{"analyst"}),
		epsLeft: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dpproxy", Name: "budget_epsilon_remaining",
			Help: "Epsilon left in the analyst's own budget, as the ledger reported it after the analyst's last charge through this proxy.",
		}, []string{"analyst"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dpproxy", Name: "stage_duration_seconds",
			Help:    "Time spent per statement in each stage: parse (classify+plan), ledger (debit), upstream, total.",
			Buckets: latencyBuckets,
		}, []string{"stage"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "answer_cache_lookups_total",
			Help: "Answer cache lookups of DP queries, by result (hit, miss). Hit ratio: hit / (hit + miss).",
		}, []string{"result"}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dpproxy", Name: "connections_total",
			Help: "Client connections accepted (including those that later fail authentication).",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dpproxy", Name: "connections_open",
			Help: "Client connections open now.",
		}),
	}
	m.reg.MustRegister(m.statements, m.refusals, m.epsSpent, m.deltaSpent, m.epsLeft,
		m.durations, m.cache, m.connsTotal, m.connsOpen,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Pre-create the series a dashboard plots, so they read 0 rather than
	// "no data" before the first statement.
	m.stages = map[Stage]prometheus.Observer{}
	for _, s := range []Stage{StageParse, StageLedger, StageUpstream, StageTotal} {
		m.stages[s] = m.durations.WithLabelValues(string(s))
	}
	m.hits, m.misses = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	return m
}

// Registry returns the registry the collectors are on, to add more or to
// gather them in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Statement counts one finished statement. refusalID is the catalogue ID
// when the statement was refused ("" otherwise); total is its duration.
func (m *Metrics) Statement(kind, outcome, refusalID string, total time.Duration) {
	if m == nil {
		return
	}
	key := kind + "\x00" + outcome
	c, ok := m.statementSeries.Load(key)
	if !ok {
		c, _ = m.statementSeries.LoadOrStore(key, m.statements.WithLabelValues(kind, outcome))
	}
	c.(prometheus.Counter).Inc()
	if refusalID != "" {
		m.refusals.WithLabelValues(refusalID).Inc()
	}
	if total > 0 {
		m.Observe(StageTotal, total)
	}
}

// Observe records the duration of one stage of a statement. Use Statement
// for StageTotal.
func (m *Metrics) Observe(stage Stage, d time.Duration) {
	if m == nil {
		return
	}
	if o, ok := m.stages[stage]; ok {
		o.Observe(d.Seconds())
		return
	}
	m.durations.WithLabelValues(string(stage)).Observe(d.Seconds())
}

// Charged records a successful ledger debit of eps and delta for analyst
// and the epsilon the ledger reports left in the analyst's own budget.
func (m *Metrics) Charged(analyst string, eps, delta, epsRemaining float64) {
	if m == nil {
		return
	}
	if eps > 0 {
		m.epsSpent.WithLabelValues(analyst).Add(eps)
	}
	if delta > 0 {
		m.deltaSpent.WithLabelValues(analyst).Add(delta)
	}
	m.epsLeft.WithLabelValues(analyst).Set(max(0, epsRemaining))
}

// CacheLookup records one answer cache lookup.
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.hits.Inc()
	} else {
		m.misses.Inc()
	}
}

// ConnOpened counts an accepted connection; call the returned function when
// it closes.
func (m *Metrics) ConnOpened() (closed func()) {
	if m == nil {
		return func() {}
	}
	m.connsTotal.Inc()
	m.connsOpen.Inc()
	return m.connsOpen.Dec
}
