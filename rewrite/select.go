package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

func classifySelect(sel *pg_query.SelectStmt, text string, pol *policy.Policy) (*Statement, error) {
	if readsCatalog(sel) {
		return classifyCatalog(sel, text, pol)
	}
	ctes, err := simpleCTEs(sel)
	if err != nil {
		return nil, err
	}
	if err := checkSelectShape(sel); err != nil {
		return nil, err
	}
	if len(sel.FromClause) == 0 {
		if err := checkConstantSelect(sel); err != nil {
			// SELECT current_schemas(false), SELECT 'patients'::regclass:
			// catalog functions without a catalog relation.
			st, cerr := classifyCatalog(sel, text, pol)
			switch {
			case cerr == nil:
				return st, nil
			case pgerror.As(cerr).ID == pgerror.RefuseCatalog.ID:
				return nil, cerr // SELECT pg_relation_size(...): name the statistic
			}
			return nil, err
		}
		return &Statement{Kind: KindPassthrough, SQL: text}, nil
	}
	if st, ok, err := classifyPublic(sel, pol, ctes); ok {
		return st, err
	}
	plan, err := planAggregate(sel, pol, ctes)
	if err != nil {
		return nil, err
	}
	return &Statement{Kind: KindDP, SQL: text, Plan: plan}, nil
}

// checkSelectShape refuses the clauses the planner does not handle yet.
func checkSelectShape(sel *pg_query.SelectStmt) error {
	switch {
	case sel.Op != pg_query.SetOperation_SETOP_NONE:
		return pgerror.RefuseUnsupported.New("UNION, INTERSECT and EXCEPT are not supported").
			WithHint("run each aggregate query separately")
	case sel.WithClause != nil && (sel.WithClause.Recursive || len(sel.FromClause) == 0):
		return pgerror.RefuseUnsupported.New("WITH RECURSIVE, and WITH without FROM, are not supported")
	case sel.IntoClause != nil:
		return pgerror.RefuseWrite.New("SELECT INTO creates a table and is not allowed through dpproxy")
	case len(sel.ValuesLists) > 0:
		return pgerror.RefuseUnsupported.New("VALUES lists are not supported")
	case len(sel.LockingClause) > 0:
		return pgerror.RefuseWrite.New("SELECT ... FOR UPDATE/SHARE locks rows and is not allowed")
	case len(sel.DistinctClause) > 0:
		return pgerror.RefuseUnsupported.New("SELECT DISTINCT is not supported").
			WithHint("to list groups, use GROUP BY with an aggregate such as count(*)")
	case len(sel.WindowClause) > 0:
		return pgerror.RefuseUnsupported.New("window clauses are not supported")
	}
	return nil
}

// safeConstantFuncs may appear in a SELECT without FROM: their results do not
// depend on any table's rows.
var safeConstantFuncs = map[string]bool{
	"version": true, "current_schema": true, "current_database": true, "current_user": true,
	"session_user": true, "now": true, "pg_backend_pid": false,
}

func checkConstantSelect(sel *pg_query.SelectStmt) error {
	if sel.WhereClause != nil {
		return pgerror.RefuseUnsupported.New("WHERE without FROM is not supported")
	}
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil || rt.Val == nil {
			return pgerror.RefuseUnsupported.New("unsupported select list item")
		}
		if err := checkConstantExpr(rt.Val); err != nil {
			return err
		}
	}
	return nil
}

func checkConstantExpr(n *pg_query.Node) error {
	switch e := n.Node.(type) {
	case *pg_query.Node_AConst:
		return nil
	case *pg_query.Node_TypeCast:
		if err := checkTypeName(e.TypeCast.TypeName); err != nil {
			return err
		}
		return checkConstantExpr(e.TypeCast.Arg)
	case *pg_query.Node_SqlvalueFunction:
		return nil
	case *pg_query.Node_AExpr:
		if e.AExpr.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
			return pgerror.RefuseUnsupported.New("unsupported expression in a select list without FROM")
		}
		if op := operatorName(e.AExpr.Name); !arithmeticOps[op] && !comparisonOps[op] {
			return pgerror.RefuseFunction.New("operator %s is not allowed", op)
		}
		for _, side := range []*pg_query.Node{e.AExpr.Lexpr, e.AExpr.Rexpr} {
			if side != nil {
				if err := checkConstantExpr(side); err != nil {
					return err
				}
			}
		}
		return nil
	case *pg_query.Node_FuncCall:
		name := funcName(e.FuncCall)
		if !safeConstantFuncs[name] || len(e.FuncCall.Args) > 0 {
			return pgerror.RefuseFunction.New("function %s is not allowed", name).
				WithHint("without FROM, only constants and version(), current_schema(), current_database(), current_user and now() are allowed")
		}
		return nil
	case *pg_query.Node_ColumnRef:
		return pgerror.RefuseUnsupported.New("column references need a FROM clause")
	}
	return pgerror.RefuseUnsupported.New("unsupported expression in a select list without FROM")
}

func funcName(f *pg_query.FuncCall) string {
	parts := make([]string, 0, len(f.Funcname))
	for _, n := range f.Funcname {
		parts = append(parts, n.GetString_().GetSval())
	}
	// pg_catalog.count is count.
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		return parts[1]
	}
	return strings.Join(parts, ".")
}

func operatorName(names []*pg_query.Node) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, n.GetString_().GetSval())
	}
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		return parts[1]
	}
	return strings.Join(parts, ".")
}

var comparisonOps = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true}
var arithmeticOps = map[string]bool{"+": true, "-": true, "*": true}

// allowedCastTypes are the types a constant may be cast to.
var allowedCastTypes = map[string]bool{
	"int2": true, "int4": true, "int8": true, "integer": true, "smallint": true, "bigint": true,
	"numeric": true, "float4": true, "float8": true, "real": true, "text": true, "varchar": true,
	"date": true, "timestamp": true, "timestamptz": true, "bool": true, "boolean": true, "interval": true,
}

func checkTypeName(tn *pg_query.TypeName) error {
	if tn == nil || len(tn.ArrayBounds) > 0 {
		return pgerror.RefuseUnsupported.New("array casts are not supported")
	}
	names := make([]string, 0, len(tn.Names))
	for _, n := range tn.Names {
		names = append(names, n.GetString_().GetSval())
	}
	last := names[len(names)-1]
	if len(names) > 2 || (len(names) == 2 && names[0] != "pg_catalog") || !allowedCastTypes[last] {
		return pgerror.RefuseUnsupported.New("cast to %s is not supported", strings.Join(names, "."))
	}
	return nil
}

// simpleCTEs returns the query's common table expressions by name. They are
// inlined where the FROM clause names them, as views of one private table
// (see scope.addView); anything else is refused there.
func simpleCTEs(sel *pg_query.SelectStmt) (map[string]*pg_query.SelectStmt, error) {
	if sel.WithClause == nil {
		return nil, nil
	}
	out := map[string]*pg_query.SelectStmt{}
	for _, n := range sel.WithClause.Ctes {
		cte := n.GetCommonTableExpr()
		q := cte.GetCtequery().GetSelectStmt()
		if cte == nil || q == nil || len(cte.Aliascolnames) > 0 || cte.SearchClause != nil || cte.CycleClause != nil {
			return nil, pgerror.RefuseUnsupported.New("only WITH name AS (SELECT ...) is supported")
		}
		out[cte.Ctename] = q
	}
	return out, nil
}
