package rewrite

import (
	"fmt"
	"math"
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// isAggregateName reports whether a function is an aggregate dpproxy knows
// (or knows to refuse with a specific message).
func isAggregateName(name string) bool {
	switch name {
	case "count", "sum", "avg", "min", "max", "stddev", "variance", "var_pop", "var_samp", "stddev_pop", "stddev_samp",
		"percentile_cont", "percentile_disc", "mode", "array_agg", "string_agg", "json_agg", "jsonb_agg", "bool_and", "bool_or", "every":
		return true
	}
	return false
}

// aggregate plans one aggregate call and returns its index in plan.Aggs.
func (b *planBuilder) aggregate(f *pg_query.FuncCall) (int, error) {
	text, err := exprSQL(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: f}})
	if err != nil {
		return 0, err
	}
	if i, ok := b.aggByText[text]; ok {
		return i, nil
	}
	name := funcName(f)
	switch {
	case f.Over != nil:
		return 0, pgerror.RefuseUnsupported.New("window functions are not supported")
	case f.AggWithinGroup && (name == "percentile_cont" || name == "percentile_disc" || name == "mode"):
		agg, err := b.orderedSetAggregate(f, name, text)
		if err != nil {
			return 0, err
		}
		b.plan.Aggs = append(b.plan.Aggs, agg)
		b.aggByText[text] = len(b.plan.Aggs) - 1
		return len(b.plan.Aggs) - 1, nil
	case len(f.AggOrder) > 0 || f.AggWithinGroup:
		return 0, pgerror.RefuseUnsupported.New("ordered-set aggregates such as %s are not supported", name)
	case f.FuncVariadic:
		return 0, pgerror.RefuseUnsupported.New("VARIADIC calls are not supported")
	}
	var filterSQL string
	if f.AggFilter != nil {
		if err := checkPredicate(f.AggFilter, b.sc); err != nil {
			return 0, err
		}
		if filterSQL, err = exprSQL(f.AggFilter); err != nil {
			return 0, err
		}
	}
	filter := func(agg string) string {
		if filterSQL == "" {
			return agg
		}
		return fmt.Sprintf("%s FILTER (WHERE %s)", agg, filterSQL)
	}
	m := float64(b.maxRows())
	agg := Agg{Kind: name, Text: text}
	switch name {
	case AggCount:
		agg.Type = TypeInt8
		switch {
		case f.AggDistinct:
			c, colSQL, err := b.columnArg(f, name)
			if err != nil {
				return 0, err
			}
			if b.plan.UniqueUnit != nil && c.Name == b.sc.table.Unit {
				// One row per unit: the distinct units are the rows with a unit.
				cnt := filter(fmt.Sprintf("count(%s)", colSQL))
				agg.Value = b.addQuantity(Quantity{Expr: text, L1Sensitivity: 1, Granularity: 1, NonNegative: true},
					quantitySQL{Row: cnt, Inner: cnt, Outer: "sum(LEAST(%s, 1))"})
				break
			}
			if !b.plan.UnitLevel || c.Name != b.sc.table.Unit {
				return 0, pgerror.RefuseUnsupported.New("count(DISTINCT %s) is not supported: only count(DISTINCT <privacy unit>) is", c.Name).
					WithHint("count distinct privacy units with count(DISTINCT %s)", orDefault(b.sc.table.Unit, "<unit column>"))
			}
			agg.Value = b.addQuantity(Quantity{Expr: text, L1Sensitivity: 1, Granularity: 1, NonNegative: true},
				quantitySQL{Inner: filter("count(*)"), Outer: "sum(LEAST(%s, 1))"})
		case f.AggStar || b.isConstArg(f):
			agg.Value = b.addQuantity(Quantity{Expr: text, L1Sensitivity: m, Granularity: 1, NonNegative: true},
				quantitySQL{Row: filter("count(*)"), Inner: filter("count(*)"), Outer: fmt.Sprintf("sum(LEAST(%%s, %d))", int64(m))})
		default:
			_, colSQL, err := b.columnArg(f, name)
			if err != nil {
				return 0, err
			}
			cnt := filter(fmt.Sprintf("count(%s)", colSQL))
			agg.Value = b.addQuantity(Quantity{Expr: text, L1Sensitivity: m, Granularity: 1, NonNegative: true},
				quantitySQL{Row: cnt, Inner: cnt, Outer: fmt.Sprintf("sum(LEAST(%%s, %d))", int64(m))})
		}
	case AggSum, AggAvg:
		if f.AggDistinct {
			return 0, pgerror.RefuseUnsupported.New("%s(DISTINCT ...) is not supported", name)
		}
		c, colSQL, err := b.columnArg(f, name)
		if err != nil {
			return 0, err
		}
		if !c.IsNumeric() {
			return 0, pgerror.RefuseUnsupported.New("%s(%s) needs a numeric column; %s is %s", name, c.Name, c.Name, c.Type).
				WithHint("use count(%s) for non-numeric columns", c.Name)
		}
		if c.Bounds == nil {
			return 0, pgerror.RefuseNoBounds.New("%s(%s) needs bounds for column %q, and the policy declares none", name, c.Name, c.Name)
		}
		lo, hi := c.Bounds.Lower, c.Bounds.Upper
		gran := c.EffectiveGranularity()
		clamped := b.clamp(colSQL, c, lo, hi)
		plain := f.Args[0].GetColumnRef() != nil // not an expression or a cast
		skipsNull := clamped == clampSQL(colSQL, c, lo, hi)
		values := valueFilter(filterSQL, colSQL, skipsNull)
		if name == AggSum {
			agg.Type, agg.Decimals = sumType(c), decimalsOf(gran)
			plo, phi := m*math.Min(lo, 0), m*math.Max(hi, 0)
			s := filter(fmt.Sprintf("sum(%s)", clamped))
			if lo != 0 { // a NULL clamped to 0 adds nothing
				s = values(fmt.Sprintf("sum(%s)", clamped))
			}
			agg.Value = b.addQuantity(Quantity{Expr: text, L1Sensitivity: m * math.Max(math.Abs(lo), math.Abs(hi)), Granularity: gran},
				quantitySQL{Row: s, Inner: perUnitSum(s), Outer: fmt.Sprintf("sum(LEAST(GREATEST(%%s, %s), %s))", numLiteral(plo, nil), numLiteral(phi, nil))})
			break
		}
		// avg = mid + noisy Σ(x - mid) / noisy count: centring halves the
		// sum's sensitivity (Google's differential-privacy BoundedMean).
		mid := lo + (hi-lo)/2
		half := (hi - lo) / 2
		agg.Type, agg.Decimals = avgType(c), decimalsOf(gran)+2
		agg.Lower, agg.Upper, agg.Mid = lo, hi, mid
		var midLit string
		if intArithmetic(c, lo, hi) && mid == math.Trunc(mid) {
			midLit = numLiteral(mid, c)
		} else {
			midLit = numLiteral(mid, nil)
		}
		s := values(fmt.Sprintf("sum(%s - %s)", clamped, midLit))
		// Row-level, the centring is done after the query (Quantity.Centre):
		// clamped values are int4 or numeric, so Σx and the subtraction are
		// exact either way. The plain sum skips exactly the rows count(x)
		// skips (valueFilter): a NULL clamped to lo would add lo to Σx, not
		// the -half Σ(x - mid) adds, past the sensitivity. An expression or
		// a cast keeps its centring in SQL (the verifier ties a centred sum
		// to its count by column).
		rowSum := values(fmt.Sprintf("sum(%s)", clamped))
		var centre *Centre
		if plain {
			centre = &Centre{Mid: strconv.FormatFloat(mid, 'f', -1, 64), Count: -1}
		}
		agg.Value = b.addQuantity(Quantity{Expr: text + " centred sum", L1Sensitivity: m * half, Granularity: gran},
			quantitySQL{Row: s, Inner: perUnitSum(s), Outer: fmt.Sprintf("sum(LEAST(GREATEST(%%s, %s), %s))", numLiteral(-m*half, nil), numLiteral(m*half, nil)),
				centre: centre, rowSum: rowSum})
		cnt := filter(fmt.Sprintf("count(%s)", colSQL))
		agg.Count = b.addQuantity(Quantity{Expr: text + " count", L1Sensitivity: m, Granularity: 1, NonNegative: true},
			quantitySQL{Row: cnt, Inner: cnt, Outer: fmt.Sprintf("sum(LEAST(%%s, %d))", int64(m))})
		if c := b.qs[agg.Value].centre; c != nil {
			c.Count = agg.Count // the same count whichever avg planned the sum first
		}
	case "variance", "var_samp", "var_pop", "stddev", "stddev_samp", "stddev_pop":
		if err := b.varianceAggregate(f, name, text, filter, filterSQL, &agg); err != nil {
			return 0, err
		}
	case "min", "max":
		q := "0.01"
		if name == "max" {
			q = "0.99"
		}
		return 0, pgerror.RefuseUnsupported.New("%s is not answered: an extreme value is one row's value, and a DP estimate of it is mostly noise", name).
			WithHint("ask for a DP quantile near the extreme instead: percentile_disc(%s) WITHIN GROUP (ORDER BY col)", q)
	default:
		return 0, pgerror.RefuseFunction.New("aggregate %s is not supported", name).
			WithHint("supported aggregates are count(*), count(col), count(DISTINCT <unit>), sum(col) and avg(col), with FILTER (WHERE ...)")
	}
	b.plan.Aggs = append(b.plan.Aggs, agg)
	b.aggByText[text] = len(b.plan.Aggs) - 1
	return len(b.plan.Aggs) - 1, nil
}

// varianceAggregate plans variance and standard deviation as Google's
// BoundedVariance does: noisy count, noisy sum of (x - mid) and noisy sum of
// (x - mid)², each with its own sensitivity; the variance is computed from
// them after noise and clamped to [0, ((hi - lo)/2)²].
func (b *planBuilder) varianceAggregate(f *pg_query.FuncCall, name, text string, filter func(string) string, filterSQL string, agg *Agg) error {
	if f.AggDistinct {
		return pgerror.RefuseUnsupported.New("%s(DISTINCT ...) is not supported", name)
	}
	c, colSQL, err := b.columnArg(f, name)
	if err != nil {
		return err
	}
	if !c.IsNumeric() {
		return pgerror.RefuseUnsupported.New("%s(%s) needs a numeric column; %s is %s", name, c.Name, c.Name, c.Type)
	}
	if c.Bounds == nil {
		return pgerror.RefuseNoBounds.New("%s(%s) needs bounds for column %q, and the policy declares none", name, c.Name, c.Name)
	}
	m := float64(b.maxRows())
	lo, hi := c.Bounds.Lower, c.Bounds.Upper
	mid, half := lo+(hi-lo)/2, (hi-lo)/2
	clamped := b.clamp(colSQL, c, lo, hi)
	midLit := numLiteral(mid, nil)
	centred := fmt.Sprintf("(%s - %s)", clamped, midLit)
	// Squares in int8 (or numeric) so they cannot overflow whatever a row holds.
	cast := "::numeric"
	if intArithmetic(c, lo, hi) && mid == math.Trunc(mid) {
		midLit = numLiteral(mid, c)
		centred = fmt.Sprintf("(%s - %s)", clamped, midLit)
		cast = "::int8"
	}
	gran := c.EffectiveGranularity()
	agg.Kind, agg.Lower, agg.Upper, agg.Mid = name, lo, hi, mid
	agg.Type, agg.Decimals = avgType(c), decimalsOf(gran)+2
	skipsNull := clamped == clampSQL(colSQL, c, lo, hi)
	values := valueFilter(filterSQL, colSQL, skipsNull)
	s := values(fmt.Sprintf("sum(%s)", centred))
	agg.Value = b.addQuantity(Quantity{Expr: text + " centred sum", L1Sensitivity: m * half, Granularity: gran},
		quantitySQL{Row: s, Inner: perUnitSum(s), Outer: fmt.Sprintf("sum(LEAST(GREATEST(%%s, %s), %s))", numLiteral(-m*half, nil), numLiteral(m*half, nil))})
	sq := values(fmt.Sprintf("sum(%s%s * %s%s)", centred, cast, centred, cast))
	agg.Square = b.addQuantity(Quantity{Expr: text + " centred sum of squares", L1Sensitivity: m * half * half, Granularity: gran * gran, NonNegative: true},
		quantitySQL{Row: sq, Inner: sq, Outer: fmt.Sprintf("sum(LEAST(GREATEST(%%s, 0), %s))", numLiteral(m*half*half, nil))})
	cnt := filter(fmt.Sprintf("count(%s)", colSQL))
	agg.Count = b.addQuantity(Quantity{Expr: text + " count", L1Sensitivity: m, Granularity: 1, NonNegative: true},
		quantitySQL{Row: cnt, Inner: cnt, Outer: fmt.Sprintf("sum(LEAST(%%s, %d))", int64(m))})
	return nil
}

// perUnitSum is the per-unit form of a sum: a unit with no row to sum (its
// values all NULL, or none passing the aggregate's FILTER) has a NULL sum,
// which the outer clamp (LEAST(GREATEST(NULL, lo), hi) is lo) would count as
// its lower bound; it adds nothing.
func perUnitSum(sum string) string { return "COALESCE(" + sum + ", 0)" }

// valueFilter is the FILTER of a sum over a column's clamped values: the
// aggregate's own (filterSQL), and, when the column (or aggregated
// expression) is clamped, colSQL IS NOT NULL, since the clamp turns NULL
// into the lower bound (GREATEST ignores NULL) where Postgres's sum and avg
// skip the row, and where count(col) does not count it: avg(CASE WHEN sex =
// 'F' THEN age END) would otherwise average every other row in as 0. A bare
// column (proven bounds) needs no more: sum skips NULL.
func valueFilter(filterSQL, colSQL string, clampedColumn bool) func(string) string {
	cond := filterSQL
	if clampedColumn {
		cond = colSQL + " IS NOT NULL"
		if filterSQL != "" {
			cond = fmt.Sprintf("(%s) AND %s", filterSQL, cond)
		}
	}
	return func(agg string) string {
		if cond == "" {
			return agg
		}
		return fmt.Sprintf("%s FILTER (WHERE %s)", agg, cond)
	}
}

// maxRows is the most rows one privacy unit contributes.
func (b *planBuilder) maxRows() int {
	if b.plan.UnitLevel {
		return b.maxRowsPerUnit()
	}
	return 1
}

func (b *planBuilder) maxRowsPerUnit() int { return max(1, b.sc.table.MaxRowsPerUnit) }

func (b *planBuilder) isConstArg(f *pg_query.FuncCall) bool {
	if len(f.Args) != 1 {
		return false
	}
	c := f.Args[0].GetAConst()
	return c != nil && !c.Isnull
}

func (b *planBuilder) columnArg(f *pg_query.FuncCall, name string) (*policy.Column, string, error) {
	if len(f.Args) != 1 {
		return nil, "", pgerror.RefuseUnsupported.New("%s takes exactly one column", name)
	}
	cr := f.Args[0].GetColumnRef()
	if cr == nil {
		if name == AggSum || name == AggAvg || name == AggCount {
			return b.expressionColumn(f.Args[0], name)
		}
		return nil, "", pgerror.RefuseUnsupported.New("%s of an expression is not supported; aggregate a column", name)
	}
	c, err := b.sc.column(cr)
	if err != nil {
		return nil, "", err
	}
	s, err := exprSQL(f.Args[0])
	return c, s, err
}

func sumType(c *policy.Column) ResultType {
	switch c.Type {
	case "smallint", "integer":
		return TypeInt8
	case "real":
		return TypeFloat4
	case "double precision":
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

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
