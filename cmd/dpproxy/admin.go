package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/ledger"
	"github.com/dpproxy/dpproxy/metrics"
	"github.com/dpproxy/dpproxy/wire"
)

// adminHandler serves the admin endpoints. Bind it to loopback or a private
// network: the ledger report and the metrics name analysts and their
// spending, and POST /ledger/grant changes budgets.
//
//	GET  /metrics        Prometheus metrics (see package metrics)
//	GET  /healthz        200 while the process serves HTTP (liveness)
//	GET  /readyz         200 only when the upstream and the ledger answer (readiness)
//	GET  /ledger/report  budgets per analyst (?analyst=, ?since=, ?format=table|csv|json|html)
//	GET  /ledger/verify  checks the audit trail's hash chain
//	POST /ledger/grant   grants or resets a budget (JSON body)
func adminHandler(srv *wire.Server, store ledger.Store, pool *pgxpool.Pool, mets *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	if mets != nil {
		mux.Handle("GET /metrics", mets.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			http.Error(w, "upstream unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if _, err := store.Balances(ctx); err != nil {
			http.Error(w, "ledger unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /ledger/report", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		q := reportQuery{Analyst: r.URL.Query().Get("analyst"), Format: r.URL.Query().Get("format")}
		if q.Format == "" {
			q.Format = "table"
		}
		var err error
		if q.Since, err = parseSince(r.URL.Query().Get("since")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var buf bytes.Buffer
		if err := writeLedgerReport(ctx, &buf, store, srv.Policy(), q); err != nil {
			status := http.StatusServiceUnavailable
			if !errors.Is(err, ledger.ErrUnavailable) {
				status = http.StatusBadRequest
			}
			http.Error(w, err.Error(), status)
			return
		}
		if q.Format == "html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
		_, _ = w.Write(buf.Bytes())
	})
	mux.HandleFunc("GET /ledger/verify", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
		defer cancel()
		msg, err := verifyLedger(ctx, store)
		if err != nil {
			status := http.StatusServiceUnavailable
			if errors.Is(err, ledger.ErrTampered) {
				status = http.StatusConflict
			}
			http.Error(w, err.Error(), status)
			return
		}
		_, _ = w.Write([]byte(msg + "\n"))
	})
	// POST /ledger/grant adjusts a budget (grant or reset) and writes it to
	// the audit trail. Anyone who can reach the admin address can do this.
	mux.HandleFunc("POST /ledger/grant", func(w http.ResponseWriter, r *http.Request) {
		var req grantRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "bad grant request: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		bal, err := store.Grant(ctx, req.grant(time.Now()))
		if err != nil {
			status := http.StatusServiceUnavailable
			if !errors.Is(err, ledger.ErrUnavailable) {
				status = http.StatusBadRequest
			}
			http.Error(w, err.Error(), status)
			return
		}
		_, _ = w.Write([]byte(describeGrant(req, bal) + "\n"))
	})
	return mux
}
