// Package metrics holds dpproxy's Prometheus collectors behind one small
// struct, *Metrics, that the wire server is given (wire.Config.Metrics) and
// the admin endpoint serves at /metrics.
//
// Every method is safe on a nil *Metrics (it does nothing), so tests and
// embedders that do not want metrics pass nil. Each Metrics has its own
// registry (no global state); Handler serves it with the Go runtime and
// process collectors.
//
// Label values are bounded: statement kinds and outcomes are fixed sets,
// refusal IDs come from the pgerror catalogue, and analysts are the
// policy's (a connection is only counted under an analyst's name once it
// has authenticated). Nothing here ever sees statement text, parameters or
// results.
//
// Series (all prefixed dpproxy_):
//
//	statements_total{kind,outcome}        every statement, once
//	refusals_total{id}                    refusals by catalogue ID (DP001...)
//	epsilon_spent_total{analyst}          ε charged to the ledger
//	delta_spent_total{analyst}            δ charged to the ledger
//	budget_epsilon_remaining{analyst}     ε left after the analyst's last charge
//	stage_duration_seconds{stage}         parse (parse+plan), ledger, upstream, total
//	answer_cache_lookups_total{result}    hit or miss; hit ratio = hit / (hit+miss)
//	connections_total                     analyst connections accepted
//	connections_open                      analyst connections open now
package metrics
