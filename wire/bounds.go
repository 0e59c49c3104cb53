package wire

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Proven bounds.
//
// A bounded numeric column of a private table of at least 2 MiB whose
// validated CHECK constraints keep every value within the policy's bounds
// is left unclamped by the rewriter (rewrite/bounds.go). The server reads the
// constraints when it starts and on every policy reload, like unique units,
// and each query that relies on them checks them again in the snapshot that
// reads its rows (rewrite.Plan.GuardSQL).

// withCatalogFacts returns pol with what the upstream catalog says about
// its tables: unique privacy units, proven bounds and declared types that
// differ (coltypes.go).
func (s *Server) withCatalogFacts(ctx context.Context, pol *policy.Policy) *policy.Policy {
	return s.withColumnTypes(ctx, s.withProvenBounds(ctx, s.withUniqueUnits(ctx, pol)), s.policy.Load())
}

// CatalogFacts returns pol with what the upstream catalog proves about its
// tables, read through upstream as `serve` reads it: for `dpproxy explain
// --upstream`, to show the SQL the proxy would send.
func CatalogFacts(ctx context.Context, upstream *pgxpool.Pool, pol *policy.Policy, log *slog.Logger) *policy.Policy {
	s := &Server{cfg: Config{Upstream: upstream}, log: log}
	return s.withCatalogFacts(ctx, pol)
}

// withProvenBounds returns pol with the columns whose bounds CHECK
// constraints prove. On any error a table's columns stay unproven: they are
// then clamped, which is always sound.
func (s *Server) withProvenBounds(ctx context.Context, pol *policy.Policy) *policy.Policy {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var tables []*policy.Table
	for _, t := range pol.Tables {
		if !t.IsPrivate() {
			continue
		}
		for _, c := range t.Columns {
			if c.IsNumeric() && c.Bounds != nil {
				tables = append(tables, t)
				break
			}
		}
	}
	if len(tables) == 0 {
		return pol
	}
	conn, err := s.cfg.Upstream.Acquire(ctx)
	if err != nil {
		s.log.Warn("cannot read CHECK constraints upstream; bounded columns are clamped", "err", err)
		return pol.WithProvenBounds(nil)
	}
	defer conn.Release()
	proofs := map[string][]string{}
	for _, t := range tables {
		s.proveTable(ctx, conn.Conn(), t, t.Schema, t.Name, policy.ProvenKey, proofs)
		if t.Shadow {
			s.proveTable(ctx, conn.Conn(), t, policy.ShadowSchema, t.ShadowName(), policy.ShadowProvenKey, proofs)
		}
	}
	return pol.WithProvenBounds(proofs)
}

// proveTable adds to proofs, under key(t, column), the bounds of t's columns
// that the CHECK constraints of upstream table schema.name prove: t itself
// or its shadow copy.
func (s *Server) proveTable(ctx context.Context, conn *pgx.Conn, t *policy.Table, schema, name string,
	key func(*policy.Table, string) string, proofs map[string][]string) {
	qualified := rewrite.QuoteQualified(schema, name)
	var large bool
	if err := conn.QueryRow(ctx, provableTableSQL, qualified).Scan(&large); err != nil || !large {
		return // small, foreign somewhere, missing or unreadable: clamped
	}
	rows, _ := conn.Query(ctx, rewrite.CheckConstraintsSQL, qualified)
	exprs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.log.Warn("cannot read CHECK constraints upstream; table's columns are clamped", "table", schema+"."+name, "err", err)
		return
	}
	for _, c := range t.Columns {
		if !c.IsNumeric() || c.Bounds == nil {
			continue
		}
		if proof := rewrite.ProveBounds(exprs, c.Name, c.Bounds.Lower, c.Bounds.Upper); proof != nil {
			proofs[key(t, c.Name)] = proof
			s.log.Info("CHECK constraints keep a column within its bounds: no clamping needed", "table", schema+"."+name, "column", c.Name)
		}
	}
}

// provableTableSQL tells whether proven bounds may apply to a table
// (rewrite.ProvableTableSQL) and whether it is large enough for them to
// pay: a query that relies on them runs inside a REPEATABLE READ
// transaction with its guard, which costs a trivial statement about as much
// as the statement itself, while the clamps it saves cost ~10 ns a row.
// From 2 MiB (~50,000 narrow rows) the clamps cost more. A partitioned
// table's own size is zero; it counts as large.
var provableTableSQL = rewrite.ProvableTableSQL(2 << 20)

// refreshCatalog re-reads the catalog facts after a query's guard found one
// gone, so later statements clamp and bound as usual.
func (s *Server) refreshCatalog(what string) {
	s.log.Warn("a catalog fact a plan relied on is gone; reading the catalog again", "fact", what)
	s.learnCatalog()
}

// WatchCatalog re-reads the column types every catalogRefreshInterval
// until ctx is done, so that a type changed upstream without the policy
// (coltypes.go) is noticed without a reload. Unique units and proven
// bounds need no watch: each query that relies on them re-checks them.
func (s *Server) WatchCatalog(ctx context.Context) {
	ticker := time.NewTicker(catalogRefreshInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.relearnColumnTypes(ctx)
		}
	}
}

// relearnColumnTypes re-reads the column types, and replaces the policy in
// force only if a verdict changed, so that plans and prepared statements
// keep their cache otherwise.
func (s *Server) relearnColumnTypes(ctx context.Context) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	cur := s.policy.Load()
	if next := s.withColumnTypes(ctx, cur, cur); next.CatalogTag() != cur.CatalogTag() {
		s.policy.Store(next)
	}
}

// catalogRefreshInterval is how often WatchCatalog reads the catalog.
const catalogRefreshInterval = time.Minute

// learnCatalog re-reads the catalog facts, as at start and on a policy
// reload: after a fact is found gone, or when a table appears upstream
// whose facts could not be read before (a shadow copy's first refresh).
func (s *Server) learnCatalog() {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	s.policy.Store(s.withCatalogFacts(context.Background(), s.policy.Load()))
}
