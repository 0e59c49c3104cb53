package rewrite

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// verifyRewritten re-parses a rewritten statement and checks, independently
// of how it was built, that it is one SELECT over the scope's table whose
// select list holds exactly n aggregates of clamped columns or counts, and
// whose WHERE passes the predicate allowlist.
func verifyRewritten(sql string, sc *scope, n int) error {
	raws, err := parse(sql)
	if err != nil {
		return fmt.Errorf("rewritten query does not re-parse: %w", err)
	}
	if len(raws) != 1 {
		return fmt.Errorf("rewritten query has %d statements", len(raws))
	}
	sel := raws[0].Stmt.GetSelectStmt()
	if sel == nil {
		return fmt.Errorf("rewritten query is not a SELECT")
	}
	if err := checkSelectShape(sel); err != nil {
		return fmt.Errorf("rewritten query has a refused clause: %w", err)
	}
	if len(sel.FromClause) != 1 {
		return fmt.Errorf("rewritten query reads %d FROM items", len(sel.FromClause))
	}
	rv := sel.FromClause[0].GetRangeVar()
	if rv == nil || rv.Relname != sc.table.Name || (rv.Schemaname != "" && rv.Schemaname != sc.table.Schema) {
		return fmt.Errorf("rewritten query reads another relation")
	}
	if sel.WhereClause != nil {
		if err := checkPredicate(sel.WhereClause, sc); err != nil {
			return fmt.Errorf("rewritten WHERE fails validation: %w", err)
		}
	}
	if len(sel.TargetList) != n {
		return fmt.Errorf("rewritten query has %d outputs, want %d", len(sel.TargetList), n)
	}
	for i, t := range sel.TargetList {
		f := t.GetResTarget().GetVal().GetFuncCall()
		if f == nil || f.Over != nil || f.AggFilter != nil || f.AggDistinct || len(f.AggOrder) > 0 {
			return fmt.Errorf("rewritten output %d is not a plain aggregate", i)
		}
		switch funcName(f) {
		case "count":
			if !f.AggStar && (len(f.Args) != 1 || f.Args[0].GetColumnRef() == nil) {
				return fmt.Errorf("rewritten count %d has an unexpected argument", i)
			}
			if !f.AggStar {
				if _, err := sc.column(f.Args[0].GetColumnRef()); err != nil {
					return err
				}
			}
		case "sum":
			if len(f.Args) != 1 || !isClamped(f.Args[0], sc) {
				return fmt.Errorf("rewritten sum %d does not sum a clamped column", i)
			}
		default:
			return fmt.Errorf("rewritten output %d uses %s", i, funcName(f))
		}
	}
	return nil
}

// isClamped matches LEAST(GREATEST(col[::numeric], c1), c2) [- c3].
func isClamped(n *pg_query.Node, sc *scope) bool {
	if a := n.GetAExpr(); a != nil {
		if a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || operatorName(a.Name) != "-" || !isNumConst(a.Rexpr) {
			return false
		}
		n = a.Lexpr
	}
	least := n.GetMinMaxExpr()
	if least == nil || least.Op != pg_query.MinMaxOp_IS_LEAST || len(least.Args) != 2 || !isNumConst(least.Args[1]) {
		return false
	}
	greatest := least.Args[0].GetMinMaxExpr()
	if greatest == nil || greatest.Op != pg_query.MinMaxOp_IS_GREATEST || len(greatest.Args) != 2 || !isNumConst(greatest.Args[1]) {
		return false
	}
	col := greatest.Args[0]
	if tc := col.GetTypeCast(); tc != nil {
		col = tc.Arg
	}
	cr := col.GetColumnRef()
	if cr == nil {
		return false
	}
	c, err := sc.column(cr)
	return err == nil && c.Bounds != nil
}

func isNumConst(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	c := n.GetAConst()
	if c == nil {
		return false
	}
	switch c.Val.(type) {
	case *pg_query.A_Const_Ival, *pg_query.A_Const_Fval:
		return true
	}
	return false
}
