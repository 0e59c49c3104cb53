package rewrite

import (
	"fmt"
	"strconv"
	"strings"
)

// RenderPlan describes a plan in text, for `dpproxy explain` and the golden
// tests: the rewritten SQL, the keys, the quantities with their sensitivity
// and share of ε, and the post-processing.
func RenderPlan(p *Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dp\nsql: %s\n", p.SQL)
	if p.UnitLevel {
		fmt.Fprintf(&b, "bounding: per privacy unit, max groups %d\n", p.MaxGroups)
	}
	if p.UniqueUnit != nil {
		fmt.Fprintf(&b, "bounding: none, %s is unique in %s (checked upstream with the query)\n", p.UniqueUnit.Column, p.UniqueUnit.Table)
	}
	for _, pb := range p.ProvenBounds {
		fmt.Fprintf(&b, "unclamped: %s.%s, within bounds by CHECK %s (checked upstream with the query)\n", pb.Table, pb.Column, strings.Join(pb.Exprs, " AND "))
	}
	if p.Sampled > 0 {
		fmt.Fprintf(&b, "bounding: per privacy unit, at most %d rows sampled at random\n", p.Sampled)
	}
	for _, s := range p.Settings {
		fmt.Fprintf(&b, "planner: SET LOCAL %s\n", s)
	}
	if p.Shadow {
		b.WriteString("bounding: pre-bounded shadow copy (at most max_rows_per_unit rows per unit)\n")
	}
	for _, k := range p.Keys {
		domain := "partition selection"
		if k.Domain != nil {
			domain = fmt.Sprintf("public domain of %d", len(k.Domain))
		}
		fmt.Fprintf(&b, "key %s %s: %s\n", k.Name, k.Type.Name, domain)
	}
	for i, q := range p.Quantities {
		role := ""
		if p.Selection != nil && p.Selection.Units == i {
			role = " (partition selection)"
		}
		if c := q.Centre; c != nil {
			role = fmt.Sprintf(" (centred after the query: q%d - %s × q%d)", i, c.Mid, c.Count)
		}
		fmt.Fprintf(&b, "q%d %s: sensitivity %s, granularity %s, weight %s%s\n", i, q.Expr, g(q.L1Sensitivity), g(q.Granularity), strconv.FormatFloat(q.Weight, 'g', 4, 64), role)
	}
	for _, o := range p.Outputs {
		fmt.Fprintf(&b, "output %s %s = %s\n", o.Name, o.Type.Name, renderExpr(p, o.Expr))
	}
	if p.Having != nil {
		fmt.Fprintf(&b, "having %s\n", renderExpr(p, p.Having))
	}
	for _, o := range p.Order {
		dir := "asc"
		if o.Desc {
			dir = "desc"
		}
		fmt.Fprintf(&b, "order %s %s\n", renderExpr(p, o.Expr), dir)
	}
	if p.Limit >= 0 || p.Offset > 0 {
		fmt.Fprintf(&b, "limit %d offset %d\n", p.Limit, p.Offset)
	}
	return strings.TrimRight(b.String(), "\n")
}

func renderExpr(p *Plan, e *Expr) string {
	switch e.Kind {
	case ExprAgg:
		return p.Aggs[e.Index].Text
	case ExprKey:
		return "key:" + p.Keys[e.Index].Name
	case ExprConst:
		switch {
		case e.Null:
			return "NULL"
		case e.IsStr:
			return quoteLiteral(e.Str)
		}
		return g(e.Num)
	case ExprCast:
		return renderExpr(p, e.Args[0]) + "::" + e.Type.Name
	case ExprIsNull:
		if e.Op == "not" {
			return renderExpr(p, e.Args[0]) + " IS NOT NULL"
		}
		return renderExpr(p, e.Args[0]) + " IS NULL"
	case ExprFunc:
		args := make([]string, len(e.Args))
		for i, a := range e.Args {
			args[i] = renderExpr(p, a)
		}
		return e.Op + "(" + strings.Join(args, ", ") + ")"
	case ExprOp:
		if e.Op == "NOT" {
			return "NOT " + renderExpr(p, e.Args[0])
		}
		parts := make([]string, len(e.Args))
		for i, a := range e.Args {
			parts[i] = renderExpr(p, a)
		}
		return "(" + strings.Join(parts, " "+e.Op+" ") + ")"
	}
	return "?"
}

func g(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
