package rewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
)

// safePredicateFuncs cannot raise an error or take time that depends on the
// values they are given.
var safePredicateFuncs = map[string]bool{"lower": true, "upper": true, "length": true, "coalesce": true}

// checkPredicate validates a WHERE clause over one table. The allowlist admits
// only expressions that cannot raise a data-dependent error or take
// data-dependent time: comparisons, boolean logic, IN lists and LIKE with
// constant patterns, NULL tests. Arithmetic on columns is refused until it is
// promoted so it cannot overflow.
func checkPredicate(n *pg_query.Node, sc *scope) error {
	return checkExpr(n, sc, false)
}

// checkExpr walks an expression; inArith is true below an arithmetic operator.
func checkExpr(n *pg_query.Node, sc *scope, inArith bool) error {
	if n == nil {
		return nil
	}
	switch e := n.Node.(type) {
	case *pg_query.Node_AConst, *pg_query.Node_ParamRef:
		return nil
	case *pg_query.Node_ColumnRef:
		if inArith {
			return pgerror.RefuseUnsupported.New("arithmetic on columns in WHERE is not supported yet").
				WithHint("compare columns with constants directly, e.g. WHERE age > 40")
		}
		_, err := sc.column(e.ColumnRef)
		return err
	case *pg_query.Node_BoolExpr:
		for _, a := range e.BoolExpr.Args {
			if err := checkExpr(a, sc, false); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_NullTest:
		return checkExpr(e.NullTest.Arg, sc, false)
	case *pg_query.Node_BooleanTest:
		return checkExpr(e.BooleanTest.Arg, sc, false)
	case *pg_query.Node_TypeCast:
		if e.TypeCast.Arg.GetAConst() == nil {
			return pgerror.RefuseUnsupported.New("casts of columns are not supported: a cast can fail on some rows and not others").
				WithHint("cast the constant instead, e.g. WHERE visit_date >= '2025-01-01'::date")
		}
		return checkTypeName(e.TypeCast.TypeName)
	case *pg_query.Node_List:
		for _, item := range e.List.Items {
			if err := checkExpr(item, sc, inArith); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_AExpr:
		return checkAExpr(e.AExpr, sc, inArith)
	case *pg_query.Node_FuncCall:
		name := funcName(e.FuncCall)
		if !safePredicateFuncs[name] || e.FuncCall.AggStar || e.FuncCall.Over != nil || e.FuncCall.AggFilter != nil {
			return pgerror.RefuseFunction.New("function %s is not allowed in WHERE", name).
				WithHint("allowed functions in WHERE are lower, upper, length and coalesce")
		}
		for _, a := range e.FuncCall.Args {
			if err := checkExpr(a, sc, inArith); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_CoalesceExpr:
		for _, a := range e.CoalesceExpr.Args {
			if err := checkExpr(a, sc, inArith); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_SubLink:
		return pgerror.RefuseUnsupported.New("subqueries in WHERE are not supported yet")
	case *pg_query.Node_SqlvalueFunction:
		return nil
	}
	return pgerror.RefuseUnsupported.New("unsupported expression in WHERE")
}

func checkAExpr(a *pg_query.A_Expr, sc *scope, inArith bool) error {
	op := operatorName(a.Name)
	switch a.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		switch {
		case comparisonOps[op]:
			inArith = false
		case arithmeticOps[op]:
			inArith = true
		default:
			return pgerror.RefuseFunction.New("operator %s is not allowed in WHERE", op).
				WithHint("use comparisons (=, <>, <, <=, >, >=), AND, OR, NOT, IN, BETWEEN, LIKE and IS NULL")
		}
	case pg_query.A_Expr_Kind_AEXPR_IN, pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
	case pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE:
		if a.Rexpr.GetAConst() == nil {
			return pgerror.RefuseUnsupported.New("LIKE patterns must be constants")
		}
	default:
		return pgerror.RefuseFunction.New("this operator is not allowed in WHERE").
			WithHint("regular expressions, SIMILAR TO and ANY/ALL are refused; use LIKE with a constant pattern or IN (...)")
	}
	if err := checkExpr(a.Lexpr, sc, inArith); err != nil {
		return err
	}
	return checkExpr(a.Rexpr, sc, inArith)
}
