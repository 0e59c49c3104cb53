package wire

import (
	"context"
	"time"

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
// rows (rewrite.UniqueUnit.GuardSQL), so a constraint dropped after the
// check is caught before anything is released.

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
		q := (&rewrite.UniqueUnit{Schema: t.Schema, Name: t.Name, Column: t.Unit}).GuardSQL()
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
