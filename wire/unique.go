package wire

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Unique privacy units.
//
// A privacy-unit table whose unit column is unique upstream has at most one
// row per unit, so the rewriter can plan it row-level: no per-unit
// aggregation, no group bounding, sensitivities of one row
// (rewrite.planBuilder.useUniqueUnit). The server reads which tables
// qualify from the catalog when it starts and on every policy reload, and
// the plan's query checks the index again in the snapshot that reads the
// rows (uniqueGuard), so a constraint dropped after the check is caught
// before anything is released.

// uniqueIndexSQL is true when table %s (a quoted name) has a unique index
// whose only key is column %s, immediate, valid, not partial and not on an
// expression, and the column is NOT NULL (a unique index admits many
// NULLs, and rows without a unit would be one unbounded unit). The table
// must be a plain table without inheritance children (a query reads the
// children too, and the parent's index does not cover them;
// relhassubclass may stay true after the children are gone, which only
// errs on the safe side) or a partitioned table (whose unique index covers
// every partition).
const uniqueIndexSQL = `SELECT EXISTS (
  SELECT 1 FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = pg_catalog.to_regclass(%s) AND i.indisunique AND i.indimmediate
    AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND i.indexprs IS NULL
    AND i.indnkeyatts = 1 AND a.attname = %s AND a.attnotnull
    AND (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relhassubclass)))`

// uniqueGuard is the statement run before a plan that relies on u, in the
// same REPEATABLE READ transaction: it returns one boolean.
func uniqueGuard(u *rewrite.UniqueUnit) string {
	return fmt.Sprintf(uniqueIndexSQL, quoteLiteral(pgx.Identifier{u.Schema, u.Name}.Sanitize()), quoteLiteral(u.Column))
}

// quoteLiteral writes s as an escape string constant, which reads the
// same whatever standard_conforming_strings says.
func quoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}

// withUniqueUnits returns pol with the privacy-unit tables whose unit is
// unique upstream marked. On any error the tables stay unmarked: they are
// then bounded per unit, which is always sound.
func (s *Server) withUniqueUnits(ctx context.Context, pol *policy.Policy) *policy.Policy {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	unique := map[string]bool{}
	var units []*policy.Table
	for _, t := range pol.Tables {
		if t.Privacy == policy.PrivacyUnit && t.Unit != "" {
			units = append(units, t)
		}
	}
	if len(units) == 0 {
		return pol
	}
	conn, err := s.cfg.Upstream.Acquire(ctx)
	if err != nil {
		s.log.Warn("cannot read unique indexes upstream; privacy-unit tables are bounded per unit", "err", err)
		return pol.WithUniqueUnits(nil) // pol may carry marks from an earlier read
	}
	defer conn.Release()
	for _, t := range units {
		var ok bool
		q := uniqueGuard(&rewrite.UniqueUnit{Schema: t.Schema, Name: t.Name, Column: t.Unit})
		if err := conn.QueryRow(ctx, q).Scan(&ok); err != nil {
			s.log.Warn("cannot read unique indexes upstream; table is bounded per unit", "table", t.QualifiedName(), "err", err)
			continue
		}
		if ok {
			unique[t.QualifiedName()] = true
			s.log.Info("privacy unit is unique upstream: no contribution bounding needed", "table", t.QualifiedName(), "unit", t.Unit)
		}
	}
	return pol.WithUniqueUnits(unique)
}

// forgetUniqueUnit re-reads the catalog after a guard found table's unique
// index gone, so later statements are bounded per unit.
func (s *Server) forgetUniqueUnit(table string) {
	s.log.Warn("the unique index a privacy unit relied on is gone; bounding it per unit from now on", "table", table)
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	s.policy.Store(s.withUniqueUnits(context.Background(), s.policy.Load()))
}
