package rewrite

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
)

// quantileBuckets is how many equal buckets a quantile's bounds are cut
// into: the answer is a bucket's midpoint, so its resolution is
// (upper - lower) / quantileBuckets.
const quantileBuckets = 64

// orderedSetAggregate plans percentile_cont, percentile_disc and mode
// WITHIN GROUP (ORDER BY col). Quantiles follow Smith 2011: the exponential
// mechanism picks a bucket of the clamped range whose rank is close to q·n;
// the SQL returns only the count in each bucket. Mode picks a value of the
// column's public domain by report noisy max over the counts of every
// domain value, zeros included. On tables with a privacy unit, each unit's
// bucket counts are scaled down to total at most max_rows_per_unit
// (a · min(1, m / total)), which keeps the shape of its values and bounds
// what it can move any utility by.
func (b *planBuilder) orderedSetAggregate(f *pg_query.FuncCall, name, text string) (Agg, error) {
	if len(f.AggOrder) != 1 || f.AggFilter != nil || f.AggDistinct {
		return Agg{}, pgerror.RefuseUnsupported.New("%s needs WITHIN GROUP (ORDER BY <one column>) and no FILTER", name)
	}
	sb := f.AggOrder[0].GetSortBy()
	cr := sb.GetNode().GetColumnRef()
	if cr == nil {
		return Agg{}, pgerror.RefuseUnsupported.New("%s must order by a column", name)
	}
	c, err := b.sc.column(cr)
	if err != nil {
		return Agg{}, err
	}
	colSQL, err := exprSQL(sb.Node)
	if err != nil {
		return Agg{}, err
	}
	sens := float64(b.maxRows())
	if name == "mode" {
		if len(f.Args) != 0 {
			return Agg{}, pgerror.RefuseUnsupported.New("mode() takes no arguments")
		}
		if len(c.Domain) == 0 {
			return Agg{}, pgerror.RefuseNoBounds.New("mode() WITHIN GROUP (ORDER BY %s) needs a public domain for %s, and the policy declares none", c.Name, c.Name).
				WithHint("ask the DBA to declare the column's domain, or GROUP BY it with count(*)")
		}
		cols := make([]string, len(c.Domain))
		for i, v := range c.Domain {
			cols[i] = fmt.Sprintf("count(*) FILTER (WHERE %s = %s)", colSQL, quoteLiteral(v))
		}
		lits := make([]string, len(c.Domain))
		for i, v := range c.Domain {
			lits[i] = quoteLiteral(v)
		}
		total := fmt.Sprintf("count(*) FILTER (WHERE %s IN (%s))", colSQL, strings.Join(lits, ", "))
		q := Quantity{Expr: text, L1Sensitivity: sens, Granularity: 1, Choice: &Choice{Kind: ChoiceMode, Domain: append([]string(nil), c.Domain...)}}
		return Agg{Kind: AggMode, Text: text, Type: columnType(c.Type), Value: b.addQuantity(q, quantitySQL{Multi: cols, Total: total})}, nil
	}
	if len(f.Args) != 1 {
		return Agg{}, pgerror.RefuseUnsupported.New("%s takes one fraction", name)
	}
	frac, ok := numConst(f.Args[0])
	if !ok || frac < 0 || frac > 1 {
		return Agg{}, pgerror.RefuseUnsupported.New("%s needs a constant fraction between 0 and 1", name)
	}
	if !c.IsNumeric() {
		return Agg{}, pgerror.RefuseUnsupported.New("%s needs a numeric column; %s is %s", name, c.Name, c.Type)
	}
	if c.Bounds == nil {
		return Agg{}, pgerror.RefuseNoBounds.New("%s of %s needs bounds for the column, and the policy declares none", name, c.Name)
	}
	lo, hi := c.Bounds.Lower, c.Bounds.Upper
	if lo == hi {
		return Agg{}, pgerror.RefuseNoBounds.New("%s of %s needs bounds with lower < upper", name, c.Name)
	}
	edges := make([]float64, quantileBuckets+1)
	for i := range edges {
		edges[i] = lo + (hi-lo)*float64(i)/quantileBuckets
	}
	// Values outside the bounds fall in the first or last bucket, which is
	// what clamping them would do; NULLs are in none.
	cols := make([]string, quantileBuckets)
	for i := range cols {
		switch i {
		case 0:
			cols[i] = fmt.Sprintf("count(*) FILTER (WHERE %s < %s)", colSQL, numLiteral(edges[1], nil))
		case quantileBuckets - 1:
			cols[i] = fmt.Sprintf("count(*) FILTER (WHERE %s >= %s)", colSQL, numLiteral(edges[i], nil))
		default:
			cols[i] = fmt.Sprintf("count(*) FILTER (WHERE %s >= %s AND %s < %s)", colSQL, numLiteral(edges[i], nil), colSQL, numLiteral(edges[i+1], nil))
		}
	}
	typ := TypeFloat8
	if name == "percentile_disc" {
		typ = columnType(c.Type)
	}
	q := Quantity{Expr: text, L1Sensitivity: sens, Granularity: c.EffectiveGranularity(), Choice: &Choice{Kind: ChoiceQuantile, Q: frac, Edges: edges}}
	total := fmt.Sprintf("count(%s)", colSQL)
	return Agg{Kind: AggQuantile, Text: text, Type: typ, Decimals: decimalsOf(c.EffectiveGranularity()), Value: b.addQuantity(q, quantitySQL{Multi: cols, Total: total})}, nil
}

func numConst(n *pg_query.Node) (float64, bool) {
	c := n.GetAConst()
	if c == nil {
		if tc := n.GetTypeCast(); tc != nil {
			return numConst(tc.Arg)
		}
		return 0, false
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return float64(v.Ival.Ival), true
	case *pg_query.A_Const_Fval:
		var f float64
		_, err := fmt.Sscanf(v.Fval.Fval, "%g", &f)
		return f, err == nil
	}
	return 0, false
}
