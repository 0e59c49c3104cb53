package rewrite

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
)

// postFuncs may be applied to aggregates and keys after noise.
var postFuncs = map[string]bool{"round": true, "abs": true, "ceil": true, "ceiling": true, "floor": true,
	"greatest": true, "least": true, "coalesce": true, "nullif": true}

// castTypes are the types post-processing casts may produce.
var castTypes = map[string]ResultType{
	"int2": TypeInt2, "smallint": TypeInt2, "int4": TypeInt4, "integer": TypeInt4, "int": TypeInt4,
	"int8": TypeInt8, "bigint": TypeInt8, "numeric": TypeNumeric, "decimal": TypeNumeric,
	"float8": TypeFloat8, "float4": TypeFloat4, "real": TypeFloat4, "text": TypeText, "varchar": TypeText,
}

func (b *planBuilder) addOutputs(sel *pg_query.SelectStmt) error {
	for _, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil || rt.Val == nil {
			return pgerror.RefuseUnsupported.New("unsupported select list item")
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			for _, f := range cr.Fields {
				if f.GetAStar() != nil {
					return pgerror.RefusePrivateColumn.New("SELECT * would return the private rows of table %s", b.sc.table.QualifiedName())
				}
			}
		}
		e, err := b.postExpr(rt.Val, "the select list")
		if err != nil {
			return err
		}
		out := Output{Name: rt.Name, Expr: e, Type: b.typeOf(e), Decimals: b.decimals(e)}
		if out.Name == "" {
			out.Name = defaultName(rt.Val)
		}
		b.plan.Outputs = append(b.plan.Outputs, out)
	}
	return nil
}

func (b *planBuilder) addOrder(sel *pg_query.SelectStmt) error {
	for _, item := range sel.SortClause {
		sb := item.GetSortBy()
		if sb == nil || sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
			return pgerror.RefuseUnsupported.New("ORDER BY ... USING is not supported")
		}
		o := Order{Desc: sb.SortbyDir == pg_query.SortByDir_SORTBY_DESC}
		o.NullsFirst = o.Desc
		switch sb.SortbyNulls {
		case pg_query.SortByNulls_SORTBY_NULLS_FIRST:
			o.NullsFirst = true
		case pg_query.SortByNulls_SORTBY_NULLS_LAST:
			o.NullsFirst = false
		}
		e, err := b.orderExpr(sb.Node)
		if err != nil {
			return err
		}
		o.Expr = e
		b.plan.Order = append(b.plan.Order, o)
	}
	return nil
}

// orderExpr resolves an ORDER BY item: an output position or name first, then
// an expression, as Postgres does.
func (b *planBuilder) orderExpr(n *pg_query.Node) (*Expr, error) {
	if i, ok := intConst(n); ok {
		if i < 1 || int(i) > len(b.plan.Outputs) {
			return nil, pgerror.Newf("42P10", "ORDER BY position %d is not in select list", i).
				WithHint("ORDER BY positions count select list items from 1")
		}
		return b.plan.Outputs[i-1].Expr, nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		name := cr.Fields[0].GetString_().GetSval()
		for _, o := range b.plan.Outputs {
			if o.Name == name {
				return o.Expr, nil
			}
		}
	}
	return b.postExpr(n, "ORDER BY")
}

// postExpr turns an expression over aggregates and group keys into a
// post-processing expression, planning the aggregates it uses.
func (b *planBuilder) postExpr(n *pg_query.Node, where string) (*Expr, error) {
	if n == nil {
		return nil, pgerror.RefuseUnsupported.New("missing expression in %s", where)
	}
	if len(b.keySQL) > 0 {
		if text, err := exprSQL(n); err == nil {
			for i, k := range b.keySQL {
				if k == text {
					return &Expr{Kind: ExprKey, Index: i}, nil
				}
			}
		}
	}
	switch v := n.Node.(type) {
	case *pg_query.Node_FuncCall:
		name := funcName(v.FuncCall)
		if isAggregateName(name) {
			i, err := b.aggregate(v.FuncCall)
			if err != nil {
				return nil, err
			}
			return &Expr{Kind: ExprAgg, Index: i}, nil
		}
		if !postFuncs[name] || v.FuncCall.AggStar || v.FuncCall.Over != nil || v.FuncCall.AggFilter != nil {
			return nil, pgerror.RefuseFunction.New("function %s is not allowed in %s", name, where).
				WithHint("aggregates can be combined with arithmetic, round, abs, ceil, floor, greatest, least, coalesce and casts")
		}
		e := &Expr{Kind: ExprFunc, Op: name}
		for _, a := range v.FuncCall.Args {
			ae, err := b.postExpr(a, where)
			if err != nil {
				return nil, err
			}
			e.Args = append(e.Args, ae)
		}
		if len(e.Args) == 0 || (name == "round" && len(e.Args) > 2) || (name == "nullif" && len(e.Args) != 2) {
			return nil, pgerror.RefuseUnsupported.New("wrong number of arguments to %s", name)
		}
		return e, nil
	case *pg_query.Node_ColumnRef:
		c, rel, err := b.sc.resolve(v.ColumnRef)
		if err != nil {
			return nil, err
		}
		return nil, pgerror.RefusePrivateColumn.New("column %q of table %s is private row data here: it must appear in GROUP BY or be used in an aggregate", c.Name, rel.table.QualifiedName()).
			WithHint("use an aggregate like count(*) or avg(%s), or GROUP BY %s if the policy allows it", c.Name, c.Name)
	case *pg_query.Node_AConst:
		return constExpr(v.AConst), nil
	case *pg_query.Node_TypeCast:
		names := v.TypeCast.TypeName.GetNames()
		tname := ""
		if len(names) > 0 {
			tname = names[len(names)-1].GetString_().GetSval()
		}
		t, ok := castTypes[tname]
		if !ok || len(v.TypeCast.TypeName.ArrayBounds) > 0 {
			return nil, pgerror.RefuseUnsupported.New("cast to %s is not supported in %s", tname, where)
		}
		arg, err := b.postExpr(v.TypeCast.Arg, where)
		if err != nil {
			return nil, err
		}
		return &Expr{Kind: ExprCast, Type: t, Args: []*Expr{arg}}, nil
	case *pg_query.Node_AExpr:
		a := v.AExpr
		op := operatorName(a.Name)
		if a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || !(comparisonOps[op] || arithmeticOps[op] || op == "/" || op == "%") {
			return nil, pgerror.RefuseUnsupported.New("operator %s is not supported in %s", op, where)
		}
		e := &Expr{Kind: ExprOp, Op: op}
		if op == "!=" {
			e.Op = "<>"
		}
		for _, side := range []*pg_query.Node{a.Lexpr, a.Rexpr} {
			if side == nil {
				e.Args = append(e.Args, &Expr{Kind: ExprConst, Num: 0})
				continue
			}
			se, err := b.postExpr(side, where)
			if err != nil {
				return nil, err
			}
			e.Args = append(e.Args, se)
		}
		return e, nil
	case *pg_query.Node_BoolExpr:
		e := &Expr{Kind: ExprOp}
		switch v.BoolExpr.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			e.Op = "AND"
		case pg_query.BoolExprType_OR_EXPR:
			e.Op = "OR"
		default:
			e.Op = "NOT"
		}
		for _, a := range v.BoolExpr.Args {
			ae, err := b.postExpr(a, where)
			if err != nil {
				return nil, err
			}
			e.Args = append(e.Args, ae)
		}
		return e, nil
	case *pg_query.Node_NullTest:
		arg, err := b.postExpr(v.NullTest.Arg, where)
		if err != nil {
			return nil, err
		}
		e := &Expr{Kind: ExprIsNull, Args: []*Expr{arg}}
		if v.NullTest.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL {
			e.Op = "not"
		}
		return e, nil
	}
	return nil, pgerror.RefuseUnsupported.New("unsupported expression in %s", where).
		WithHint("use aggregates, GROUP BY keys, constants, arithmetic and comparisons")
}

func constExpr(c *pg_query.A_Const) *Expr {
	if c.Isnull {
		return &Expr{Kind: ExprConst, Null: true, Type: TypeText}
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return &Expr{Kind: ExprConst, Num: float64(v.Ival.Ival), Type: TypeInt4}
	case *pg_query.A_Const_Fval:
		f, _ := strconv.ParseFloat(v.Fval.Fval, 64)
		d := 0
		if i := strings.IndexByte(v.Fval.Fval, '.'); i >= 0 {
			d = len(v.Fval.Fval) - i - 1
		}
		return &Expr{Kind: ExprConst, Num: f, Type: TypeNumeric, Index: d}
	case *pg_query.A_Const_Boolval:
		n := 0.0
		if v.Boolval.Boolval {
			n = 1
		}
		return &Expr{Kind: ExprConst, Num: n, Type: TypeBool}
	case *pg_query.A_Const_Sval:
		return &Expr{Kind: ExprConst, Str: v.Sval.Sval, IsStr: true, Type: TypeText}
	}
	return &Expr{Kind: ExprConst, Null: true, Type: TypeText}
}

// typeOf infers an expression's result type as Postgres would.
func (b *planBuilder) typeOf(e *Expr) ResultType {
	switch e.Kind {
	case ExprAgg:
		return b.plan.Aggs[e.Index].Type
	case ExprKey:
		return b.plan.Keys[e.Index].Type
	case ExprConst, ExprCast:
		return e.Type
	case ExprIsNull:
		return TypeBool
	case ExprOp:
		if comparisonOps[e.Op] || e.Op == "<>" || e.Op == "AND" || e.Op == "OR" || e.Op == "NOT" {
			return TypeBool
		}
		return promote(b.typeOf(e.Args[0]), b.typeOf(e.Args[1]))
	case ExprFunc:
		t := b.typeOf(e.Args[0])
		for _, a := range e.Args[1:] {
			if e.Op != "round" {
				t = promote(t, b.typeOf(a))
			}
		}
		switch e.Op {
		case "round", "ceil", "ceiling", "floor":
			if t.IsInteger() || len(e.Args) == 2 {
				return TypeNumeric
			}
		}
		return t
	}
	return TypeText
}

// promote is the result type of arithmetic on a and b.
func promote(a, b ResultType) ResultType {
	switch {
	case a == TypeFloat8 || b == TypeFloat8 || a == TypeFloat4 || b == TypeFloat4:
		return TypeFloat8
	case a == TypeNumeric || b == TypeNumeric:
		return TypeNumeric
	case a == TypeInt8 || b == TypeInt8:
		return TypeInt8
	case a.IsInteger() && b.IsInteger():
		return TypeInt4
	}
	return a
}

// decimals is how many digits after the point a numeric output shows.
func (b *planBuilder) decimals(e *Expr) int {
	switch e.Kind {
	case ExprAgg:
		return b.plan.Aggs[e.Index].Decimals
	case ExprConst:
		return e.Index
	case ExprFunc:
		if e.Op == "round" {
			if len(e.Args) == 2 && e.Args[1].Kind == ExprConst {
				return int(e.Args[1].Num)
			}
			return 0
		}
	}
	d := 0
	for _, a := range e.Args {
		d = max(d, b.decimals(a))
	}
	if e.Kind == ExprOp && e.Op == "/" {
		d += 4
	}
	return min(d, 16)
}
