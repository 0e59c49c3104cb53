package rewrite

import (
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// Row sampling of GROUP BY over privacy-unit tables: when to use it
// (useSampling), the SQL (sampledFrom) and its verification
// (unwrapSampled). A view of the table (a subquery or CTE in FROM that
// selects its rows, optionally filtered) is sampled as the table is, its
// rows numbered after its condition.

// useSampling plans a GROUP BY over a privacy-unit table by row sampling
// rather than per-(unit, group) pre-aggregation, when the query allows it
// and the groups would otherwise multiply the noise: a unit's rows are
// numbered in random order (row_number() OVER (PARTITION BY unit ORDER BY
// random())), at most max_rows_per_unit of them are kept, and the kept rows
// are aggregated as a row-level table's would be.
//
// The privacy argument is the shadow copy's (useShadow), made on the fly:
// a unit keeps at most m rows, chosen independently of every value, so it
// touches at most m groups and moves the vector of per-group counts by at
// most m in L1 (sums by m times a row's clamp): the sensitivities planned
// per unit hold without the factor of max_groups_per_unit that
// pre-aggregation needs. So the noise is up to max_groups_per_unit times
// smaller, while a unit with few rows keeps all of them. PostgreSQL sorts
// the rows by (unit, random()) instead of hashing per (unit, group); on
// the 1M-row bench this is also faster (docs/benchmarks.md, session 10).
//
// Joins to public tables are sampled too: the rows are sampled before the
// join, which cannot multiply them (each public table is joined through a
// DISTINCT ON its join columns), so a unit still keeps at most m rows. Rows
// the query would drop must not take a unit's place, so they are dropped
// before the sampling: the condition's conjuncts that read the private
// table alone are applied there, and each public table joined to the
// sampled table (or to one that filters) filters the rows to those with a
// match, whose keys are in their domains and that meet the conjuncts
// reading that table alone (joinFilters, splitWhere). A conjunct that reads
// several tables, or a table that cannot filter (a LEFT JOIN, a join to
// columns of two earlier tables), sends the plan back to pre-aggregation.
// Rows that a join to columns of two earlier tables drops (or a join to a
// table reached only through one), rows whose key from a LEFT JOINed table
// is outside its domain, and rows that meet a public table's key held more
// than once, with different values, are still sampled like any other and so
// may take a unit's place.
//
// Not for: partition selection and count(DISTINCT unit), which count units
// per group; quantiles and mode, which scale each unit's counts; joins of
// two private tables; shadow copies; and plans whose groups do not multiply the
// noise (MaxGroups 1), which pre-aggregation answers as cheaply with the
// same noise. enable_indexscan is off for the statement: a walk of the
// unit's index over rows not stored in unit order costs more than sorting
// them (an index-only scan stays allowed).
func (b *planBuilder) useSampling() bool {
	if !b.plan.UnitLevel || len(b.plan.Keys) == 0 || b.plan.MaxGroups <= 1 || b.sc.shadow || b.sc.noSampling {
		return false
	}
	for _, r := range b.sc.public {
		if r.table.IsPrivate() {
			return false
		}
	}
	if !b.splitWhere() {
		return false
	}
	for _, k := range b.plan.Keys {
		if k.Domain == nil {
			return false
		}
	}
	for _, q := range b.qs {
		if q.Row == "" || q.Multi != nil {
			return false
		}
	}
	b.plan.UnitLevel, b.plan.Sampled = false, b.maxRowsPerUnit()
	b.plan.Settings = []string{"enable_indexscan = off"}
	return true
}

// splitWhere sorts the conjuncts of the query's condition for a sampled
// plan: those that read only the private table (or no table) go before the
// sampling; those that read only one public table with joinFilters go into
// its filter and after the join, so that rows they drop take no unit's
// place either. It reports false when some conjunct reads several tables,
// or a public table whose rows cannot be filtered before the sampling.
func (b *planBuilder) splitWhere() bool {
	b.sampledWhere, b.publicWhere = nil, nil
	filtered := b.filteredTables(b.sc.alias)
	alone := &scope{table: b.sc.table, alias: b.sc.alias, pol: b.sc.pol, ctes: b.sc.ctes}
next:
	for _, c := range andArgs(b.where) {
		if checkPredicate(proto.Clone(c).(*pg_query.Node), alone) == nil {
			b.sampledWhere = append(b.sampledWhere, c)
			continue
		}
		for _, r := range filtered {
			one := &scope{table: r.table, alias: r.alias, pol: b.sc.pol, ctes: b.sc.ctes}
			if checkPredicate(proto.Clone(c).(*pg_query.Node), one) == nil {
				if b.publicWhere == nil {
					b.publicWhere = map[string][]*pg_query.Node{}
				}
				b.publicWhere[r.alias] = append(b.publicWhere[r.alias], c)
				continue next
			}
		}
		return false
	}
	return true
}

// filteredTables are the public tables that joinFilters(alias) filters on,
// directly or through the tables joined to them.
func (b *planBuilder) filteredTables(alias string) []*relation {
	var out []*relation
	for _, r := range b.sc.public {
		if r.filtersBefore(alias) {
			out = append(out, r)
			out = append(out, b.filteredTables(r.alias)...)
		}
	}
	return out
}

// filtersBefore reports whether joinFilters(alias) filters on r: r is
// inner-joined to the relation named alias, on one column or several, all
// of them equated with that relation's columns.
func (r *relation) filtersBefore(alias string) bool {
	if r.left || len(r.joinCols) == 0 {
		return false
	}
	for _, to := range r.joinedTo {
		if to[0] != alias {
			return false
		}
	}
	return true
}

// sampledFrom is the FROM and WHERE of a row-sampled plan (useSampling):
// the private table's rows that pass the conjuncts of the query's
// condition that read it alone, the domain filters of its own key columns
// and the joinFilters, numbered per unit in random order, then joined to
// the public tables; the outer WHERE keeps at most Sampled rows per unit
// and applies the domain filters of keys from public tables and the
// conjuncts that read them (again: see joinFilters).
//
//	(SELECT *, row_number() OVER (PARTITION BY alias.unit ORDER BY random()) AS dp_rank
//	 FROM t AS alias WHERE ..) AS alias [JOIN ..] WHERE dp_rank <= m [AND ..]
//
// where a view reads (SELECT * FROM t AS inner WHERE ..) AS alias for t AS alias.
func (b *planBuilder) sampledFrom() (from, whereSQL string, err error) {
	t := b.sc.table
	inner, err := conjunctsSQL(b.sampledWhere)
	if err != nil {
		return "", "", err
	}
	rank := sampledRank(b.sc)
	outer := []string{fmt.Sprintf("%s <= %d", rank, b.plan.Sampled)}
	for i, k := range b.plan.Keys {
		if !b.filteredInSQL(i, k) {
			continue
		}
		cond := b.domainFilter(i)
		if t.Column(b.keyCol[i].Name) == b.keyCol[i] {
			inner = append(inner, cond)
		} else {
			outer = append(outer, cond)
		}
	}
	filters, err := b.joinFilters(b.sc.alias)
	if err != nil {
		return "", "", err
	}
	inner = append(inner, filters...)
	for _, r := range b.sc.public {
		public, err := conjunctsSQL(b.publicWhere[r.alias])
		if err != nil {
			return "", "", err
		}
		outer = append(outer, public...)
	}
	innerSQL := ""
	if len(inner) > 0 {
		innerSQL = " WHERE " + strings.Join(inner, " AND ")
	}
	alias := quoteIdent(b.sc.alias)
	from = fmt.Sprintf("(SELECT *, row_number() OVER (PARTITION BY %s.%s ORDER BY random()) AS %s FROM %s%s) AS %s%s",
		alias, quoteIdent(t.Unit), rank, b.sc.privateSQL(), innerSQL, alias, b.sc.joinsSQL())
	return from, " WHERE " + strings.Join(outer, " AND "), nil
}

// conjunctsSQL writes each condition in parentheses.
func conjunctsSQL(conds []*pg_query.Node) ([]string, error) {
	out := make([]string, len(conds))
	for i, c := range conds {
		s, err := exprSQL(c)
		if err != nil {
			return nil, err
		}
		out[i] = "(" + s + ")"
	}
	return out, nil
}

// joinFilters keep, before the sampling, only the rows that the inner joins
// to public tables will keep after it, so that a row without a match takes
// no unit's place: for each public table inner-joined to the relation named
// alias alone (filtersBefore), an IN subquery of its join columns (a row of
// them for a join on several: (a, b) IN (SELECT x, y ..)), filtered by the
// domains of its own keys, the conjuncts of the query's condition that read
// it alone (splitWhere) and, in turn, by the tables joined to it. A row
// that passes still meets a DISTINCT ON of its table after the sampling,
// which keeps one of the rows with its key: only when a public table holds
// one key more than once, with different values, can a sampled row still be
// dropped there (so the conjuncts and domain filters are applied again
// after the join). The filters read public tables alone, so which of a
// unit's rows are kept still depends on that unit's rows only.
func (b *planBuilder) joinFilters(alias string) ([]string, error) {
	var conds []string
	for _, r := range b.sc.public {
		if !r.filtersBefore(alias) {
			continue
		}
		where, err := conjunctsSQL(b.publicWhere[r.alias])
		if err != nil {
			return nil, err
		}
		nested, err := b.joinFilters(r.alias)
		if err != nil {
			return nil, err
		}
		where = append(where, nested...)
		for i, k := range b.plan.Keys {
			if !b.filteredInSQL(i, k) {
				continue
			}
			if _, rel, err := b.sc.resolve(b.keyNodes[i].GetColumnRef()); err == nil && rel == r {
				where = append(where, b.domainFilter(i))
			}
		}
		keys, matched := make([]string, len(r.joinCols)), make([]string, len(r.joinCols))
		for i, c := range r.joinCols {
			keys[i] = quoteIdent(r.alias) + "." + quoteIdent(c)
			matched[i] = quoteIdent(alias) + "." + quoteIdent(r.joinedTo[i][1])
		}
		sub := fmt.Sprintf("SELECT %s FROM %s.%s AS %s", strings.Join(keys, ", "),
			quoteIdent(r.table.Schema), quoteIdent(r.table.Name), quoteIdent(r.alias))
		if len(where) > 0 {
			sub += " WHERE " + strings.Join(where, " AND ")
		}
		left := matched[0]
		if len(matched) > 1 {
			left = "(" + strings.Join(matched, ", ") + ")"
		}
		conds = append(conds, fmt.Sprintf("%s IN (%s)", left, sub))
	}
	return conds, nil
}

// unwrapSampled checks a row-sampled statement (planBuilder.useSampling),
//
//	SELECT .. FROM (SELECT *, row_number() OVER (PARTITION BY <unit> ORDER BY random()) AS dp_rank
//	                FROM <table or view of it> WHERE ..) AS <alias> [JOIN ..] WHERE dp_rank <= m [AND ..] GROUP BY ..
//
// and returns it as the row-level statement it aggregates, the sampling
// subquery replaced by its table and both conditions joined by AND, for
// verifyRowLevel to check.
func unwrapSampled(top *pg_query.SelectStmt, sc *scope, m int) (*pg_query.SelectStmt, error) {
	conds := andArgs(top.WhereClause)
	if len(conds) == 0 {
		return nil, fmt.Errorf("sampled rows are not limited per unit")
	}
	rankName := sampledRank(sc)
	if err := verifyRankFilter(conds[0], rankName, m); err != nil {
		return nil, err
	}
	if len(top.FromClause) != 1 {
		return nil, fmt.Errorf("sampled statement reads %d relations", len(top.FromClause))
	}
	flat := proto.Clone(top).(*pg_query.SelectStmt)
	// The leftmost item of the join tree is the sampling subquery.
	leftmost := flat.FromClause[0]
	for leftmost.GetJoinExpr() != nil {
		leftmost = leftmost.GetJoinExpr().Larg
	}
	rs := leftmost.GetRangeSubselect()
	if rs == nil {
		return nil, fmt.Errorf("sampled statement does not read a subquery first")
	}
	inner := rs.Subquery.GetSelectStmt()
	if rs.Lateral || rs.Alias == nil || rs.Alias.Aliasname != sc.alias || renamesColumns(rs.Alias) || inner == nil ||
		verifyPlainSelect(inner) != nil || len(inner.GroupClause) > 0 || len(inner.TargetList) != 2 || len(inner.FromClause) != 1 {
		return nil, fmt.Errorf("malformed sampling subquery")
	}
	star := inner.TargetList[0].GetResTarget()
	if star.Name != "" || len(star.GetVal().GetColumnRef().GetFields()) != 1 || star.GetVal().GetColumnRef().Fields[0].GetAStar() == nil {
		return nil, fmt.Errorf("sampling subquery does not select the table's rows")
	}
	rank := inner.TargetList[1].GetResTarget()
	f := rank.GetVal().GetFuncCall()
	if rank.Name != rankName || f == nil || funcName(f) != "row_number" || len(f.Args) > 0 || f.AggFilter != nil || f.Over == nil ||
		f.Over.Refname != "" || len(f.Over.PartitionClause) != 1 || len(f.Over.OrderClause) != 1 {
		return nil, fmt.Errorf("sampling subquery does not number each unit's rows")
	}
	// By name, as verifyPerUnit does: the unit column may be hidden from
	// analysts, which sc.resolve would refuse.
	unit := f.Over.PartitionClause[0].GetColumnRef()
	if fields := columnPathOf(unit); !slices.Equal(fields, []string{sc.alias, sc.table.Unit}) && !slices.Equal(fields, []string{sc.table.Unit}) {
		return nil, fmt.Errorf("rows are numbered per something other than the privacy unit")
	}
	// The private table, or a view of it (SELECT * FROM t WHERE ..., as
	// verifyFromItem accepts one), under the statement's alias.
	switch item := inner.FromClause[0]; {
	case item.GetRangeVar() != nil:
		if rv := item.GetRangeVar(); !sc.isPrivateTable(rv) || rv.Alias == nil || rv.Alias.Aliasname != sc.alias {
			return nil, fmt.Errorf("sampling subquery reads a relation other than %s", sc.table.QualifiedName())
		}
	case item.GetRangeSubselect() != nil:
		if rs := item.GetRangeSubselect(); rs.Alias == nil || rs.Alias.Aliasname != sc.alias || renamesColumns(rs.Alias) {
			return nil, fmt.Errorf("sampling subquery reads a view under another name")
		}
		if err := verifyFromItem(item, sc, true); err != nil {
			return nil, fmt.Errorf("sampling subquery %w", err)
		}
	default:
		return nil, fmt.Errorf("sampling subquery reads a relation other than %s", sc.table.QualifiedName())
	}
	if inner.WhereClause != nil {
		alone := &scope{table: sc.table, alias: sc.alias, pol: sc.pol, proven: sc.proven}
		if err := verifyPredicate(inner.WhereClause, alone); err != nil {
			return nil, fmt.Errorf("sampling condition fails validation: %w", err)
		}
	}
	if order := f.Over.OrderClause[0].GetSortBy().GetNode().GetFuncCall(); order == nil || funcName(order) != "random" || len(order.Args) > 0 {
		return nil, fmt.Errorf("rows are not numbered in random order")
	}
	// Only public tables may be joined to sampled rows: a private table
	// joined on the unit would multiply each of them.
	for j := flat.FromClause[0].GetJoinExpr(); j != nil; j = j.Larg.GetJoinExpr() {
		if j.Rarg.GetRangeVar() != nil {
			return nil, fmt.Errorf("sampled rows are joined to a table that is not a deduplicated public table")
		}
	}
	// The table read inside, under the alias the rest of the statement uses.
	leftmost.Node = inner.FromClause[0].Node
	var where []*pg_query.Node
	if inner.WhereClause != nil {
		where = append(where, inner.WhereClause)
	}
	where = append(where, andArgs(proto.Clone(top.WhereClause).(*pg_query.Node))[1:]...)
	switch len(where) {
	case 0:
		flat.WhereClause = nil
	case 1:
		flat.WhereClause = where[0]
	default:
		flat.WhereClause = &pg_query.Node{Node: &pg_query.Node_BoolExpr{BoolExpr: &pg_query.BoolExpr{Boolop: pg_query.BoolExprType_AND_EXPR, Args: where}}}
	}
	return flat, nil
}
