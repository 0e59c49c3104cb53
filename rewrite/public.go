package rewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// publicAggregates may appear in a query over public tables only.
var publicAggregates = map[string]bool{"count": true, "sum": true, "avg": true, "min": true, "max": true}

// classifyPublic answers queries that read only tables the policy declares
// public (lookup tables such as departments): they hold no private data, so
// they run upstream without noise or charge. ok is false when some FROM item
// is not a public table, and the query is then planned as a DP query. The
// expressions still go through the allowlist (no pg_sleep, file access or
// other function abuse), and every table is schema-qualified as the policy
// names it before the statement is deparsed and sent.
func classifyPublic(sel *pg_query.SelectStmt, pol *policy.Policy, ctes map[string]*pg_query.SelectStmt) (*Statement, bool, error) {
	sc := &scope{pol: pol}
	var rvs []*pg_query.RangeVar
	var walk func(n *pg_query.Node) bool
	walk = func(n *pg_query.Node) bool {
		switch v := n.Node.(type) {
		case *pg_query.Node_RangeVar:
			rv := v.RangeVar
			if _, isCTE := ctes[rv.Relname]; isCTE && rv.Schemaname == "" {
				return false
			}
			t := pol.Table(rv.Schemaname, rv.Relname)
			if t == nil || t.IsPrivate() || rv.Catalogname != "" {
				return false
			}
			rvs = append(rvs, rv)
			alias := t.Name
			if rv.Alias != nil {
				alias = rv.Alias.Aliasname
			}
			if sc.table == nil {
				sc.table, sc.alias = t, alias
			} else {
				sc.public = append(sc.public, &relation{table: t, alias: alias})
			}
			return true
		case *pg_query.Node_JoinExpr:
			return walk(v.JoinExpr.Larg) && walk(v.JoinExpr.Rarg)
		}
		return false
	}
	if len(sel.FromClause) == 0 || sel.WithClause != nil {
		return nil, false, nil
	}
	for _, n := range sel.FromClause {
		if !walk(n) {
			return nil, false, nil
		}
	}
	refuse := func(what string) error {
		return pgerror.RefuseUnsupported.New("%s is not supported in queries over public tables", what).
			WithHint("select columns, constants and count/sum/avg/min/max, with WHERE, GROUP BY, ORDER BY and LIMIT")
	}
	if err := checkPublicJoins(sel.FromClause, sc); err != nil {
		return nil, true, err
	}
	if sel.HavingClause != nil || len(sel.WindowClause) > 0 {
		return nil, true, refuse("HAVING or WINDOW")
	}
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil || checkPublicOutput(rt.Val, sc) != nil {
			return nil, true, refuse("this select list item")
		}
	}
	if sel.WhereClause != nil {
		if err := checkPredicate(sel.WhereClause, sc); err != nil {
			return nil, true, err
		}
	}
	for _, g := range sel.GroupClause {
		if _, ok := intConst(g); !ok && checkPublicOutput(g, sc) != nil {
			return nil, true, refuse("this GROUP BY item")
		}
	}
	for _, o := range sel.SortClause {
		sb := o.GetSortBy()
		if sb == nil {
			return nil, true, refuse("this ORDER BY item")
		}
		if _, ok := intConst(sb.Node); ok {
			continue
		}
		if cr := sb.Node.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && isOutputName(sel, cr.Fields[0].GetString_().GetSval()) {
			continue
		}
		if checkPublicOutput(sb.Node, sc) != nil {
			return nil, true, refuse("this ORDER BY item")
		}
	}
	for _, n := range []*pg_query.Node{sel.LimitCount, sel.LimitOffset} {
		if n != nil && n.GetAConst() == nil {
			return nil, true, refuse("a LIMIT or OFFSET other than a constant")
		}
	}
	for _, d := range sel.DistinctClause {
		if d != nil && d.Node != nil && checkPublicOutput(d, sc) != nil {
			return nil, true, refuse("this DISTINCT ON item")
		}
	}
	for _, rv := range rvs {
		rv.Schemaname = pol.Table(rv.Schemaname, rv.Relname).Schema
	}
	sql, err := deparse(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}})
	if err != nil {
		return nil, true, err
	}
	return &Statement{Kind: KindPassthrough, SQL: sql}, true, nil
}

func isOutputName(sel *pg_query.SelectStmt, name string) bool {
	for _, t := range sel.TargetList {
		if rt := t.GetResTarget(); rt != nil && rt.Name == name {
			return true
		}
	}
	return false
}

// checkPublicOutput accepts columns (and *), constants, and count/sum/avg/
// min/max of a column or *.
func checkPublicOutput(n *pg_query.Node, sc *scope) error {
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		if last := v.ColumnRef.Fields[len(v.ColumnRef.Fields)-1]; last.GetAStar() != nil {
			return nil
		}
		_, err := sc.column(v.ColumnRef)
		return err
	case *pg_query.Node_AConst:
		return nil
	case *pg_query.Node_FuncCall:
		f := v.FuncCall
		if !publicAggregates[funcName(f)] || f.Over != nil || f.AggFilter != nil || len(f.AggOrder) > 0 || f.FuncVariadic {
			return pgerror.RefuseFunction.New("function %s is not allowed here", funcName(f))
		}
		if f.AggStar {
			return nil
		}
		if len(f.Args) != 1 || f.Args[0].GetColumnRef() == nil {
			return pgerror.RefuseUnsupported.New("aggregate arguments must be columns")
		}
		_, err := sc.column(f.Args[0].GetColumnRef())
		return err
	}
	return pgerror.RefuseUnsupported.New("unsupported expression")
}

// checkPublicJoins accepts joins whose conditions are allowed predicates.
func checkPublicJoins(from []*pg_query.Node, sc *scope) error {
	for _, n := range from {
		j := n.GetJoinExpr()
		if j == nil {
			continue
		}
		if j.IsNatural || len(j.UsingClause) > 0 || j.Alias != nil {
			return pgerror.RefuseUnsupported.New("joins of public tables need an explicit ON condition")
		}
		if j.Quals != nil {
			if err := checkPredicate(j.Quals, sc); err != nil {
				return err
			}
		}
		if err := checkPublicJoins([]*pg_query.Node{j.Larg, j.Rarg}, sc); err != nil {
			return err
		}
	}
	return nil
}
