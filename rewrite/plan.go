package rewrite

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// scope is what column references in a query can resolve to.
type scope struct {
	table *policy.Table
	alias string // the name the query uses for the table
}

func planAggregate(sel *pg_query.SelectStmt, pol *policy.Policy) (*Plan, error) {
	sc, err := resolveFrom(sel.FromClause, pol)
	if err != nil {
		return nil, err
	}
	if sel.WhereClause != nil {
		if err := checkPredicate(sel.WhereClause, sc); err != nil {
			return nil, err
		}
	}
	b := &planBuilder{sc: sc, plan: &Plan{Tables: []string{sc.table.QualifiedName()}}}
	for _, t := range sel.TargetList {
		if err := b.addTarget(t.GetResTarget()); err != nil {
			return nil, err
		}
	}
	for i := range b.plan.Quantities {
		b.plan.Quantities[i].Weight = 1 / float64(len(b.plan.Quantities))
	}
	sql, err := b.rewrite(sel)
	if err != nil {
		return nil, err
	}
	b.plan.SQL = sql
	return b.plan, nil
}

func resolveFrom(from []*pg_query.Node, pol *policy.Policy) (*scope, error) {
	if len(from) != 1 {
		return nil, pgerror.RefuseUnsupported.New("joins are not supported yet: query one table at a time")
	}
	rv := from[0].GetRangeVar()
	if rv == nil {
		switch from[0].Node.(type) {
		case *pg_query.Node_JoinExpr:
			return nil, pgerror.RefuseUnsupported.New("joins are not supported yet: query one table at a time")
		case *pg_query.Node_RangeSubselect:
			return nil, pgerror.RefuseUnsupported.New("subqueries in FROM are not supported yet")
		case *pg_query.Node_RangeFunction:
			return nil, pgerror.RefuseFunction.New("set-returning functions in FROM are not allowed")
		}
		return nil, pgerror.RefuseUnsupported.New("unsupported FROM item")
	}
	if rv.Catalogname != "" {
		return nil, pgerror.RefuseUnsupported.New("cross-database references are not supported")
	}
	t := pol.Table(rv.Schemaname, rv.Relname)
	if t == nil {
		name := rv.Relname
		if rv.Schemaname != "" {
			name = rv.Schemaname + "." + name
		}
		if strings.HasPrefix(rv.Schemaname, "pg_") || rv.Schemaname == "information_schema" || strings.HasPrefix(rv.Relname, "pg_") {
			return nil, pgerror.RefuseCatalog.New("catalog relation %s is not allowed in this query", name)
		}
		return nil, pgerror.RefuseUnknownTable.New("relation %q is not declared in the dpproxy policy", name)
	}
	switch t.Privacy {
	case policy.PrivacyUnit:
		return nil, pgerror.RefuseUnsupported.New("table %s has a privacy unit; contribution bounding is not supported yet", t.QualifiedName())
	case policy.PrivacyPublic:
		return nil, pgerror.RefuseUnsupported.New("queries over public table %s are not supported yet", t.QualifiedName())
	}
	alias := t.Name
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	return &scope{table: t, alias: alias}, nil
}

// column resolves a column reference against the scope.
func (sc *scope) column(cr *pg_query.ColumnRef) (*policy.Column, error) {
	fields := cr.Fields
	var names []string
	for _, f := range fields {
		if _, star := f.Node.(*pg_query.Node_AStar); star {
			return nil, pgerror.RefusePrivateColumn.New("SELECT * would return the private rows of table %s", sc.table.QualifiedName())
		}
		names = append(names, f.GetString_().GetSval())
	}
	var col string
	switch len(names) {
	case 1:
		col = names[0]
	case 2:
		if names[0] != sc.alias {
			return nil, pgerror.RefuseUnknownColumn.New("missing FROM-clause entry for table %q", names[0])
		}
		col = names[1]
	case 3:
		if names[0] != sc.table.Schema || names[1] != sc.table.Name {
			return nil, pgerror.RefuseUnknownColumn.New("missing FROM-clause entry for table %q", names[0]+"."+names[1])
		}
		col = names[2]
	default:
		return nil, pgerror.RefuseUnknownColumn.New("improper qualified name %q", strings.Join(names, "."))
	}
	c := sc.table.Column(col)
	if c == nil {
		return nil, pgerror.RefuseUnknownColumn.New("column %q of table %s is not declared in the dpproxy policy", col, sc.table.QualifiedName())
	}
	if c.Hidden {
		return nil, pgerror.RefuseHiddenColumn.New("column %q of table %s is hidden by the policy", col, sc.table.QualifiedName())
	}
	return c, nil
}

type planBuilder struct {
	sc      *scope
	plan    *Plan
	targets []string // rewritten select list, one entry per quantity
}

func (b *planBuilder) quantity(expr, sqlExpr string, sens, gran float64, nonNeg bool) int {
	b.plan.Quantities = append(b.plan.Quantities, Quantity{Expr: expr, L1Sensitivity: sens, Granularity: gran, NonNegative: nonNeg})
	b.targets = append(b.targets, fmt.Sprintf("%s AS q%d", sqlExpr, len(b.targets)))
	return len(b.plan.Quantities) - 1
}

func (b *planBuilder) addTarget(rt *pg_query.ResTarget) error {
	if rt == nil || rt.Val == nil {
		return pgerror.RefuseUnsupported.New("unsupported select list item")
	}
	switch v := rt.Val.Node.(type) {
	case *pg_query.Node_ColumnRef:
		c, err := b.sc.column(v.ColumnRef)
		if err != nil {
			return err
		}
		return pgerror.RefusePrivateColumn.New("column %q of table %s is private and can only be read through an aggregate", c.Name, b.sc.table.QualifiedName()).
			WithHint("use an aggregate like count(*) or avg(%s)", c.Name)
	case *pg_query.Node_FuncCall:
		return b.addAggregate(v.FuncCall, rt.Name)
	}
	return pgerror.RefuseUnsupported.New("select list items must be aggregates such as count(*), sum(col) or avg(col)")
}

func (b *planBuilder) addAggregate(f *pg_query.FuncCall, alias string) error {
	name := funcName(f)
	switch {
	case f.Over != nil:
		return pgerror.RefuseUnsupported.New("window functions are not supported")
	case f.AggFilter != nil:
		return pgerror.RefuseUnsupported.New("FILTER (WHERE ...) is not supported yet").WithHint("move the condition into WHERE")
	case f.AggDistinct:
		return pgerror.RefuseUnsupported.New("%s(DISTINCT ...) is not supported yet", name)
	case len(f.AggOrder) > 0 || f.AggWithinGroup:
		return pgerror.RefuseUnsupported.New("ordered-set aggregates are not supported yet")
	case f.FuncVariadic:
		return pgerror.RefuseUnsupported.New("VARIADIC calls are not supported")
	}
	out := Output{Name: alias, Agg: name}
	if out.Name == "" {
		out.Name = name
	}
	switch name {
	case AggCount:
		out.Type = TypeInt8
		if f.AggStar {
			out.Value = b.quantity("count(*)", "count(*)", 1, 1, true)
			break
		}
		c, err := b.singleColumnArg(f, name)
		if err != nil {
			return err
		}
		out.Value = b.quantity(fmt.Sprintf("count(%s)", c.Name), fmt.Sprintf("count(%s)", quoteIdent(c.Name)), 1, 1, true)
	case AggSum, AggAvg:
		c, err := b.singleColumnArg(f, name)
		if err != nil {
			return err
		}
		if !c.IsNumeric() {
			return pgerror.RefuseUnsupported.New("%s(%s) needs a numeric column; %s is %s", name, c.Name, c.Name, c.Type).
				WithHint("use count(%s) for non-numeric columns", c.Name)
		}
		if c.Bounds == nil {
			return pgerror.RefuseNoBounds.New("%s(%s) needs bounds for column %q, and the policy declares none", name, c.Name, c.Name)
		}
		lo, hi := c.Bounds.Lower, c.Bounds.Upper
		clamped := clampSQL(c, lo, hi)
		gran := c.EffectiveGranularity()
		if name == AggSum {
			out.Type = sumType(c)
			out.Value = b.quantity(fmt.Sprintf("sum(%s)", c.Name), fmt.Sprintf("sum(%s)", clamped), math.Max(math.Abs(lo), math.Abs(hi)), gran, false)
			break
		}
		// avg = mid + noisy Σ(x - mid) / noisy count: centring halves the
		// sum's sensitivity (Google's differential-privacy BoundedMean).
		mid := lo + (hi-lo)/2
		out.Type = avgType(c)
		out.Lower, out.Upper, out.Mid = lo, hi, mid
		centred := fmt.Sprintf("sum(%s - %s)", clamped, numLiteral(mid, c))
		out.Value = b.quantity(fmt.Sprintf("sum(%s - mid)", c.Name), centred, (hi-lo)/2, gran, false)
		out.Count = b.quantity(fmt.Sprintf("count(%s)", c.Name), fmt.Sprintf("count(%s)", quoteIdent(c.Name)), 1, 1, true)
	default:
		return pgerror.RefuseFunction.New("function %s is not a supported aggregate", name).
			WithHint("supported aggregates are count(*), count(col), sum(col) and avg(col)")
	}
	b.plan.Outputs = append(b.plan.Outputs, out)
	return nil
}

func (b *planBuilder) singleColumnArg(f *pg_query.FuncCall, name string) (*policy.Column, error) {
	if len(f.Args) != 1 {
		return nil, pgerror.RefuseUnsupported.New("%s takes exactly one column", name)
	}
	cr := f.Args[0].GetColumnRef()
	if cr == nil {
		return nil, pgerror.RefuseUnsupported.New("%s of an expression is not supported yet; aggregate a column", name)
	}
	return b.sc.column(cr)
}

// clampSQL clamps a column to [lo, hi]. Integer columns with int4-sized
// bounds stay int4, so sum() uses its fast int8 accumulator without overflow;
// anything else is clamped as numeric, which cannot overflow either.
func clampSQL(c *policy.Column, lo, hi float64) string {
	col := quoteIdent(c.Name)
	if !(c.IsInteger() && isInt32(lo) && isInt32(hi) && c.Type != "bigint") {
		col += "::numeric"
	}
	return fmt.Sprintf("LEAST(GREATEST(%s, %s), %s)", col, numLiteral(lo, c), numLiteral(hi, c))
}

func isInt32(f float64) bool { return f == math.Trunc(f) && f >= math.MinInt32 && f <= math.MaxInt32 }

func numLiteral(f float64, c *policy.Column) string {
	if c.IsInteger() && isInt32(f) && c.Type != "bigint" {
		return strconv.FormatInt(int64(f), 10)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if f < 0 {
		return "(" + s + ")"
	}
	return s
}

func sumType(c *policy.Column) ResultType {
	switch c.Type {
	case "smallint", "integer":
		return TypeInt8
	case "real", "double precision":
		return TypeFloat8
	}
	return TypeNumeric
}

func avgType(c *policy.Column) ResultType {
	if c.Type == "real" || c.Type == "double precision" {
		return TypeFloat8
	}
	return TypeNumeric
}

// rewrite replaces the select list with the quantities and deparses, then
// re-parses and re-validates the result.
func (b *planBuilder) rewrite(sel *pg_query.SelectStmt) (string, error) {
	tmpl, err := pg_query.Parse("SELECT " + strings.Join(b.targets, ", "))
	if err != nil {
		return "", fmt.Errorf("building rewritten select list: %w", err)
	}
	out := &pg_query.SelectStmt{
		TargetList:  tmpl.Stmts[0].Stmt.GetSelectStmt().TargetList,
		FromClause:  sel.FromClause,
		WhereClause: sel.WhereClause,
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg_query.SetOperation_SETOP_NONE,
	}
	sql, err := deparse(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: out}})
	if err != nil {
		return "", fmt.Errorf("deparsing rewritten query: %w", err)
	}
	if err := verifyRewritten(sql, b.sc, len(b.plan.Quantities)); err != nil {
		return "", err
	}
	return sql, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
