package rewrite

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Names of the columns the rewritten SQL introduces. Analysts' identifiers
// are always quoted, so these cannot collide with them; a table's own
// columns can where the SQL adds one beside them (sampledRank).
const (
	unitCol = "dp_unit"
	rankCol = "dp_rank"
)

// sampledRank names the rank a row-sampled statement adds to its table's
// rows (SELECT *, row_number() .. AS dp_rank): dp_rank, or dp_rank_2, 3, ..
// when the table, or a public table joined to it (whose columns the outer
// query sees as well, through SELECT DISTINCT ON (..) *), has a column of
// that name upstream, which would make the outer filter ambiguous, a
// statement PostgreSQL refuses only after the charge. The verifier derives
// the same name.
func sampledRank(sc *scope) string {
	taken := func(name string) bool {
		for _, r := range sc.relations() {
			if sc.pol.HasUpstreamColumn(r.table, name) {
				return true
			}
		}
		return false
	}
	name := rankCol
	for i := 2; taken(name); i++ {
		name = fmt.Sprintf("%s_%d", rankCol, i)
	}
	return name
}

// generateSQL writes the rewritten statement.
//
// Row-level tables:
//
//	SELECT <keys>, <quantities> FROM t WHERE <where> [AND <domain filters>] GROUP BY <keys>
//
// Tables with a privacy unit pre-aggregate per (unit, group) with a hash
// aggregate, keep at most max_groups_per_unit groups per unit chosen at
// random (only with GROUP BY), and clamp each unit's totals so that it
// contributes at most what max_rows_per_unit rows within the bounds could:
//
//	SELECT k0.., sum(LEAST(a0, m)), ...
//	FROM (SELECT .., row_number() OVER (PARTITION BY dp_unit ORDER BY random()) AS dp_rank
//	      FROM (SELECT unit AS dp_unit, <keys>, <per-unit aggregates> FROM t WHERE .. GROUP BY unit, <keys>) u) b
//	WHERE dp_rank <= max_groups_per_unit GROUP BY <keys>
//
// Clamping a unit's total to m·[lo, hi] bounds its influence exactly as
// keeping m rows clamped to [lo, hi] would, without a sort over all rows.
// The random order is independent of every value, as the bound requires.
func (b *planBuilder) generateSQL(where *pg_query.Node) (string, error) {
	t := b.sc.table
	from := b.sc.fromSQL()
	conds := []string{}
	if where != nil {
		w, err := exprSQL(where)
		if err != nil {
			return "", err
		}
		conds = append(conds, "("+w+")")
	}
	// Groups outside a public domain are never released (answer/ walks the
	// domain), so filtering them out in SQL matters only where they would
	// take one of a unit's max_groups_per_unit slots; on row-level tables the
	// filter would only cost time (measured: a third of a GROUP BY's).
	for i, k := range b.plan.Keys {
		if b.filteredInSQL(i, k) {
			conds = append(conds, b.domainFilter(i))
		}
	}
	whereSQL := ""
	if len(conds) > 0 {
		whereSQL = " WHERE " + strings.Join(conds, " AND ")
	}
	groupBy := func(offset int) string {
		if len(b.plan.Keys) == 0 && offset == 0 {
			return ""
		}
		pos := make([]string, len(b.plan.Keys)+offset)
		for i := range pos {
			pos[i] = itoa(int64(i + 1))
		}
		return " GROUP BY " + strings.Join(pos, ", ")
	}
	keyList := make([]string, len(b.plan.Keys))
	for i, k := range b.keyGen {
		keyList[i] = fmt.Sprintf("%s AS k%d", k, i)
	}
	if !b.plan.UnitLevel {
		cols := append([]string{}, keyList...)
		for i, q := range b.qs {
			if q.Multi != nil {
				for j, m := range q.Multi {
					cols = append(cols, fmt.Sprintf("%s AS q%d_%d", m, i, j))
				}
				continue
			}
			row := q.Row
			b.plan.Quantities[i].Centre = nil
			if q.centre != nil && q.centre.Count >= 0 {
				row = q.rowSum
				b.plan.Quantities[i].Centre = q.centre
			}
			cols = append(cols, fmt.Sprintf("%s AS q%d", row, i))
		}
		if b.plan.Sampled > 0 {
			var err error
			if from, whereSQL, err = b.sampledFrom(); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("SELECT %s FROM %s%s%s", strings.Join(cols, ", "), from, whereSQL, groupBy(0)), nil
	}
	unitRef := fmt.Sprintf("%s.%s", quoteIdent(b.sc.alias), quoteIdent(t.Unit))
	inner := []string{fmt.Sprintf("%s AS %s", unitRef, unitCol)}
	inner = append(inner, keyList...)
	for i, q := range b.qs {
		if q.Multi != nil {
			for j, m := range q.Multi {
				inner = append(inner, fmt.Sprintf("%s AS a%d_%d", m, i, j))
			}
			inner = append(inner, fmt.Sprintf("%s AS a%d_t", q.Total, i))
			continue
		}
		inner = append(inner, fmt.Sprintf("%s AS a%d", q.Inner, i))
	}
	perUnit := fmt.Sprintf("SELECT %s FROM %s%s%s", strings.Join(inner, ", "), from, whereSQL, groupBy(1))
	outer := make([]string, 0, len(b.plan.Keys)+len(b.qs))
	passCols := []string{}
	for i := range b.plan.Keys {
		outer = append(outer, fmt.Sprintf("k%d", i))
		passCols = append(passCols, fmt.Sprintf("k%d", i))
	}
	m := b.maxRows()
	for i, q := range b.qs {
		if q.Multi != nil {
			// Scale the unit's counts to total at most m rows.
			for j := range q.Multi {
				outer = append(outer, fmt.Sprintf("sum(a%d_%d * LEAST(1, %d::numeric / NULLIF(a%d_t, 0))) AS q%d_%d", i, j, m, i, i, j))
				passCols = append(passCols, fmt.Sprintf("a%d_%d", i, j))
			}
			passCols = append(passCols, fmt.Sprintf("a%d_t", i))
			continue
		}
		outer = append(outer, fmt.Sprintf(q.Outer, fmt.Sprintf("a%d", i))+fmt.Sprintf(" AS q%d", i))
		passCols = append(passCols, fmt.Sprintf("a%d", i))
	}
	if len(b.plan.Keys) == 0 {
		return fmt.Sprintf("SELECT %s FROM (%s) AS dp_per_unit", strings.Join(outer, ", "), perUnit), nil
	}
	// When every key is a column filtered to its public domain in SQL and
	// the domains allow no more groups than max_groups_per_unit, no unit can
	// have more groups than it may keep: the random choice of groups would
	// keep them all, so it is left out (it is most of the statement's cost).
	if b.keysFilteredInSQL() && domainProduct(b.plan.Keys) <= max(1, t.MaxGroupsPerUnit) {
		return fmt.Sprintf("SELECT %s FROM (%s) AS dp_per_unit%s", strings.Join(outer, ", "), perUnit, groupBy(0)), nil
	}
	bounded := fmt.Sprintf("SELECT %s, row_number() OVER (PARTITION BY %s ORDER BY random()) AS %s FROM (%s) AS dp_per_unit",
		strings.Join(passCols, ", "), unitCol, rankCol, perUnit)
	return fmt.Sprintf("SELECT %s FROM (%s) AS dp_bounded WHERE %s <= %d%s",
		strings.Join(outer, ", "), bounded, rankCol, b.plan.MaxGroups, groupBy(0)), nil
}

// domainFilter keeps the rows whose i-th key is in its public domain.
func (b *planBuilder) domainFilter(i int) string {
	lits := make([]string, len(b.plan.Keys[i].Domain))
	for j, v := range b.plan.Keys[i].Domain {
		lits[j] = quoteLiteral(v)
	}
	return fmt.Sprintf("%s IN (%s)", b.keySQL[i], strings.Join(lits, ", "))
}
