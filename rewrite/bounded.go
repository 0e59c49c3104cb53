package rewrite

import (
	"fmt"
	"math"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// maxConstMagnitude bounds the constants of aggregated expressions, so that
// no combination of them within the nesting limit can overflow numeric.
const maxConstMagnitude = 1e12

// interval is the range an expression's value lies in.
type interval struct {
	lo, hi float64
	isInt  bool // every value is an integer
}

func (a interval) add(b interval) interval {
	return interval{a.lo + b.lo, a.hi + b.hi, a.isInt && b.isInt}
}
func (a interval) sub(b interval) interval {
	return interval{a.lo - b.hi, a.hi - b.lo, a.isInt && b.isInt}
}
func (a interval) mul(b interval) interval {
	p := []float64{a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi}
	lo, hi := p[0], p[0]
	for _, x := range p[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return interval{lo, hi, a.isInt && b.isInt}
}
func (a interval) union(b interval) interval {
	return interval{math.Min(a.lo, b.lo), math.Max(a.hi, b.hi), a.isInt && b.isInt}
}

// boundedExpr validates an aggregated expression such as price * qty or
// CASE WHEN age > 60 THEN 1 ELSE 0 END and derives its range by interval
// arithmetic from the columns' bounds. It returns SQL in which every column
// is clamped to its bounds and computed in numeric, so nothing can overflow
// or raise an error for any row, and a pseudo-column carrying the bounds.
func (b *planBuilder) boundedExpr(n *pg_query.Node) (string, interval, error) {
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		c, err := b.sc.column(v.ColumnRef)
		if err != nil {
			return "", interval{}, err
		}
		if !c.IsNumeric() {
			return "", interval{}, pgerror.RefuseUnsupported.New("column %s in an aggregated expression must be numeric; it is %s", c.Name, c.Type)
		}
		if c.Bounds == nil {
			return "", interval{}, pgerror.RefuseNoBounds.New("column %s in an aggregated expression needs bounds, and the policy declares none", c.Name)
		}
		col, err := exprSQL(n)
		if err != nil {
			return "", interval{}, err
		}
		num := &policy.Column{Type: "numeric"}
		// The cast comes first: clampSQL casts only non-numeric columns, and
		// int4 arithmetic on clamped values (income * income) could overflow.
		return clampSQL(col+"::numeric", num, c.Bounds.Lower, c.Bounds.Upper), interval{c.Bounds.Lower, c.Bounds.Upper, c.IsInteger()}, nil
	case *pg_query.Node_AConst:
		f, ok := numConst(n)
		if !ok || math.Abs(f) > maxConstMagnitude {
			return "", interval{}, pgerror.RefuseUnsupported.New("constants in aggregated expressions must be numbers of magnitude at most 1e12")
		}
		_, isInt := v.AConst.Val.(*pg_query.A_Const_Ival)
		return numLiteral(f, nil), interval{f, f, isInt}, nil
	case *pg_query.Node_TypeCast:
		names := v.TypeCast.TypeName.GetNames()
		t := names[len(names)-1].GetString_().GetSval()
		if t != "numeric" && t != "float8" && t != "int4" && t != "int8" {
			return "", interval{}, pgerror.RefuseUnsupported.New("cast to %s is not supported in an aggregated expression", t)
		}
		// Values are computed in numeric already; an integer cast would
		// round, a float cast changes nothing the bounds depend on.
		return b.boundedExpr(v.TypeCast.Arg)
	case *pg_query.Node_AExpr:
		a := v.AExpr
		op := operatorName(a.Name)
		if a.Kind != pg_query.A_Expr_Kind_AEXPR_OP || !(op == "+" || op == "-" || op == "*" || op == "/") {
			return "", interval{}, pgerror.RefuseUnsupported.New("operator %s is not supported in an aggregated expression", op)
		}
		if a.Lexpr == nil { // unary minus or plus
			r, ri, err := b.boundedExpr(a.Rexpr)
			switch op {
			case "-":
				return "(- " + r + ")", interval{-ri.hi, -ri.lo, ri.isInt}, err
			case "+":
				return r, ri, err
			}
			return "", interval{}, pgerror.RefuseUnsupported.New("prefix operator %s is not supported in an aggregated expression", op).
				WithHint("use + - * and division by a constant, e.g. sum(-x) or sum(x * 2)")
		}
		l, li, err := b.boundedExpr(a.Lexpr)
		if err != nil {
			return "", interval{}, err
		}
		if op == "/" {
			d, ok := numConst(a.Rexpr)
			if !ok || d == 0 || math.Abs(d) > maxConstMagnitude || math.Abs(d) < 1/maxConstMagnitude {
				return "", interval{}, pgerror.RefuseUnsupported.New("aggregated expressions may divide only by a non-zero constant").
					WithHint("divide the aggregates instead, e.g. sum(a) / sum(b)")
			}
			return fmt.Sprintf("(%s / %s)", l, numLiteral(d, nil)), li.mul(interval{1 / d, 1 / d, false}), nil
		}
		r, ri, err := b.boundedExpr(a.Rexpr)
		if err != nil {
			return "", interval{}, err
		}
		var out interval
		switch op {
		case "+":
			out = li.add(ri)
		case "-":
			out = li.sub(ri)
		default:
			out = li.mul(ri)
		}
		return fmt.Sprintf("(%s %s %s)", l, op, r), out, nil
	case *pg_query.Node_CaseExpr:
		ce := v.CaseExpr
		if ce.Arg != nil {
			return "", interval{}, pgerror.RefuseUnsupported.New("use the searched form CASE WHEN <condition> THEN ... in aggregated expressions")
		}
		var sb strings.Builder
		sb.WriteString("CASE")
		var span *interval
		for _, w := range ce.Args {
			cw := w.GetCaseWhen()
			if err := checkPredicate(cw.Expr, b.sc); err != nil {
				return "", interval{}, err
			}
			cond, err := exprSQL(cw.Expr)
			if err != nil {
				return "", interval{}, err
			}
			res, ri, err := b.boundedExpr(cw.Result)
			if err != nil {
				return "", interval{}, err
			}
			fmt.Fprintf(&sb, " WHEN %s THEN %s", cond, res)
			if span == nil {
				span = &ri
			} else {
				u := span.union(ri)
				span = &u
			}
		}
		if ce.Defresult != nil && ce.Defresult.GetAConst().GetIsnull() == false {
			res, ri, err := b.boundedExpr(ce.Defresult)
			if err != nil {
				return "", interval{}, err
			}
			fmt.Fprintf(&sb, " ELSE %s", res)
			u := span.union(ri)
			span = &u
		}
		sb.WriteString(" END")
		return sb.String(), *span, nil
	case *pg_query.Node_CoalesceExpr:
		parts := make([]string, 0, len(v.CoalesceExpr.Args))
		var span *interval
		for _, a := range v.CoalesceExpr.Args {
			s, ai, err := b.boundedExpr(a)
			if err != nil {
				return "", interval{}, err
			}
			parts = append(parts, s)
			if span == nil {
				span = &ai
			} else {
				u := span.union(ai)
				span = &u
			}
		}
		return "COALESCE(" + strings.Join(parts, ", ") + ")", *span, nil
	}
	return "", interval{}, pgerror.RefuseUnsupported.New("unsupported aggregated expression").
		WithHint("aggregate columns, constants, + - * and / by a constant, CASE WHEN ... THEN ... ELSE ... END and COALESCE")
}

// expressionColumn plans an aggregate's argument that is an expression: it
// becomes a pseudo-column with the derived bounds, whose SQL is already
// clamped column by column.
func (b *planBuilder) expressionColumn(n *pg_query.Node, name string) (*policy.Column, string, error) {
	sql, iv, err := b.boundedExpr(n)
	if err != nil {
		return nil, "", err
	}
	if math.IsInf(iv.lo, 0) || math.IsInf(iv.hi, 0) || math.Abs(iv.lo) > 1e15 || math.Abs(iv.hi) > 1e15 {
		return nil, "", pgerror.RefuseUnsupported.New("the bounds of this expression are too wide to add useful noise")
	}
	text, _ := exprSQL(n)
	c := &policy.Column{Name: text, Type: "numeric", Bounds: &policy.Bounds{Lower: iv.lo, Upper: iv.hi}, Granularity: 0.01}
	if iv.isInt {
		// Integral, like count-style CASE sums: sum() reports bigint, as
		// Postgres does for integer expressions, on a grid of 1.
		c.Type, c.Granularity = "integer", 1
	}
	return c, "(" + sql + ")", nil
}
