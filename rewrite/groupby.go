package rewrite

import (
	"fmt"
	"strconv"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// dateTruncUnits are the date_trunc units allowed in group keys.
var dateTruncUnits = map[string]bool{"year": true, "quarter": true, "month": true, "week": true, "day": true, "hour": true}

// extractFields are the EXTRACT fields allowed in group keys.
var extractFields = map[string]bool{"year": true, "quarter": true, "month": true, "dow": true, "isodow": true, "day": true, "hour": true, "week": true}

// addKeys resolves GROUP BY items: positions and output aliases refer to the
// select list; anything else is an expression over the table.
func (b *planBuilder) addKeys(sel *pg_query.SelectStmt) error {
	if sel.GroupDistinct {
		return pgerror.RefuseUnsupported.New("GROUP BY DISTINCT is not supported")
	}
	for _, item := range sel.GroupClause {
		n, err := resolveGroupItem(item, sel.TargetList, b.sc)
		if err != nil {
			return err
		}
		if err := b.addKey(n); err != nil {
			return err
		}
	}
	size := 1
	for _, k := range b.plan.Keys {
		if k.Domain != nil {
			size *= max(1, len(k.Domain))
			if size > maxDomainGroups {
				return pgerror.RefuseUnsupported.New("the public domains of the group keys make more than %d groups", maxDomainGroups).
					WithHint("group by fewer keys, or filter with WHERE")
			}
		}
	}
	return nil
}

func resolveGroupItem(item *pg_query.Node, targets []*pg_query.Node, sc *scope) (*pg_query.Node, error) {
	switch v := item.Node.(type) {
	case *pg_query.Node_AConst:
		iv, ok := v.AConst.Val.(*pg_query.A_Const_Ival)
		if !ok || iv.Ival.Ival < 1 || int(iv.Ival.Ival) > len(targets) {
			return nil, pgerror.Newf("42P10", "GROUP BY position is not in select list").
				WithHint("GROUP BY positions count select list items from 1")
		}
		return targets[iv.Ival.Ival-1].GetResTarget().Val, nil
	case *pg_query.Node_ColumnRef:
		// A bare name is an input column first, then an output alias, as in
		// Postgres.
		if len(v.ColumnRef.Fields) == 1 {
			name := v.ColumnRef.Fields[0].GetString_().GetSval()
			if sc.table.Column(name) == nil {
				for _, t := range targets {
					if rt := t.GetResTarget(); rt.Name == name {
						return rt.Val, nil
					}
				}
			}
		}
	case *pg_query.Node_GroupingSet:
		return nil, pgerror.RefuseUnsupported.New("GROUPING SETS, ROLLUP and CUBE are not supported")
	}
	return item, nil
}

func (b *planBuilder) addKey(n *pg_query.Node) error {
	text, err := exprSQL(n)
	if err != nil {
		return err
	}
	for _, s := range b.keySQL {
		if s == text {
			return nil // GROUP BY a, a
		}
	}
	key, col, err := b.keyOf(n)
	if err != nil {
		return err
	}
	gen := text
	if key.gen != "" {
		gen = key.gen
		key.gen = ""
	}
	key.Name = defaultName(n)
	b.plan.Keys = append(b.plan.Keys, key)
	b.keyNodes = append(b.keyNodes, n)
	b.keySQL = append(b.keySQL, text)
	b.keyGen = append(b.keyGen, gen)
	b.keyCol = append(b.keyCol, col)
	return nil
}

// keyOf validates a group key and finds its type and public domain.
func (b *planBuilder) keyOf(n *pg_query.Node) (Key, *policy.Column, error) {
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		c, rel, err := b.sc.resolve(v.ColumnRef)
		if err != nil {
			return Key{}, nil, err
		}
		k := Key{Type: columnType(c.Type)}
		if b.sc.pol != nil {
			k.Padded = b.sc.pol.BlankPadded(rel.table, c.Name)
		}
		switch {
		case len(c.Domain) > 0:
			// One value spelled twice (1.5 and 1.50) would be released
			// twice, each with its own noise, charged once.
			seen := map[string]bool{}
			for _, d := range c.Domain {
				if m := k.Match(d); !seen[m] {
					seen[m] = true
					k.Domain = append(k.Domain, d)
				}
			}
		case c.Type == "boolean":
			k.Domain = []string{"f", "t"}
		}
		return k, c, nil
	case *pg_query.Node_FuncCall:
		return b.derivedKey(v.FuncCall)
	}
	return Key{}, nil, pgerror.RefuseUnsupported.New("unsupported GROUP BY expression").
		WithHint("group by columns, date_trunc('month', col), extract(year from col) or width_bucket(col, lo, hi, n)")
}

func (b *planBuilder) derivedKey(f *pg_query.FuncCall) (Key, *policy.Column, error) {
	name := funcName(f)
	if f.AggStar || f.AggDistinct || f.Over != nil || f.AggFilter != nil || len(f.AggOrder) > 0 {
		return Key{}, nil, pgerror.RefuseUnsupported.New("unsupported GROUP BY expression %s", name)
	}
	colArg := func(i int) (*policy.Column, error) {
		arg := f.Args[i]
		if tc := arg.GetTypeCast(); tc != nil && name == "date_trunc" {
			// The rewriter's own date_trunc(unit, col::timestamp).
			if names := tc.TypeName.GetNames(); len(names) > 0 && names[len(names)-1].GetString_().GetSval() == "timestamp" {
				arg = tc.Arg
			}
		}
		cr := arg.GetColumnRef()
		if cr == nil {
			return nil, pgerror.RefuseUnsupported.New("%s in GROUP BY must apply to a column", name)
		}
		return b.sc.column(cr)
	}
	switch name {
	case "date_trunc", "extract", "date_part":
		if len(f.Args) != 2 {
			return Key{}, nil, pgerror.RefuseUnsupported.New("%s takes two arguments", name)
		}
		unit, ok := stringConst(f.Args[0])
		allowed := dateTruncUnits
		if name != "date_trunc" {
			allowed = extractFields
		}
		if !ok || !allowed[unit] {
			return Key{}, nil, pgerror.RefuseUnsupported.New("%s unit %q is not supported in GROUP BY", name, unit)
		}
		c, err := colArg(1)
		if err != nil {
			return Key{}, nil, err
		}
		if c.Type != "date" && c.Type != "timestamp" && c.Type != "timestamptz" {
			return Key{}, nil, pgerror.RefuseUnsupported.New("%s needs a date or timestamp column; %s is %s", name, c.Name, c.Type)
		}
		if name == "extract" && c.Type == "date" && unit == "hour" {
			// PostgreSQL's extract(hour FROM <date>) fails on every row:
			// an error only when some row reaches it.
			return Key{}, nil, pgerror.RefuseUnsupported.New("extract(hour FROM %s): %s is a date, which has no hour", c.Name, c.Name).
				WithHint("group a date by year, quarter, month, week, day or dow")
		}
		colSQL, err := exprSQL(f.Args[1])
		if err != nil {
			return Key{}, nil, err
		}
		text, err := exprSQL(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: f}})
		if err != nil {
			return Key{}, nil, err
		}
		if name != "date_trunc" {
			t := TypeNumeric
			if name == "date_part" {
				t = TypeFloat8
			}
			return Key{Type: t, Domain: fieldDomain(unit, c), gen: dateKeyGuard(c, colSQL, text)}, c, nil
		}
		if c.Range != nil && c.Type != "timestamptz" {
			// Truncate in timestamp without time zone, so that the keys, and
			// their text, do not depend on the upstream session's TimeZone;
			// then the policy's public range gives every group, empty ones
			// included, without spending delta.
			if dom := truncDomain(unit, c.Range.Lower, c.Range.Upper); dom != nil {
				return Key{Type: TypeTimestamp, Domain: dom,
					gen: dateKeyGuard(c, colSQL, fmt.Sprintf("date_trunc(%s, %s::timestamp)", quoteLiteral(unit), colSQL))}, c, nil
			}
		}
		if c.Type == "timestamp" {
			return Key{Type: TypeTimestamp, gen: dateKeyGuard(c, colSQL, text)}, c, nil
		}
		return Key{Type: TypeTimestamptz, gen: dateKeyGuard(c, colSQL, text)}, c, nil
	case "width_bucket":
		if len(f.Args) != 4 {
			return Key{}, nil, pgerror.RefuseUnsupported.New("width_bucket in GROUP BY takes (column, low, high, count)")
		}
		c, err := colArg(0)
		if err != nil {
			return Key{}, nil, err
		}
		if !c.IsInteger() {
			// numeric and float columns can hold NaN, for which width_bucket
			// raises an error: a data-dependent error.
			return Key{}, nil, pgerror.RefuseUnsupported.New("width_bucket needs an integer column; %s is %s", c.Name, c.Type)
		}
		lo, ok1 := intConst(f.Args[1])
		hi, ok2 := intConst(f.Args[2])
		count, ok3 := intConst(f.Args[3])
		if !ok1 || !ok2 || !ok3 || lo == hi || count < 1 || count > 1000 {
			return Key{}, nil, pgerror.RefuseUnsupported.New("width_bucket needs integer constants with low <> high and 1 <= count <= 1000")
		}
		domain := make([]string, count+2)
		for i := range domain {
			domain[i] = strconv.Itoa(i)
		}
		return Key{Type: TypeInt4, Domain: domain}, c, nil
	}
	return Key{}, nil, pgerror.RefuseFunction.New("function %s is not allowed in GROUP BY", name).
		WithHint("group by columns, date_trunc('month', col), extract(year from col) or width_bucket(col, lo, hi, n)")
}

// dateKeyGuard makes a date/time group key NULL for values outside years
// 1 to 99999. PostgreSQL converts the column on the way to the key (a date
// to timestamp in date_trunc and date_part, which fails beyond 294276 AD;
// to timestamptz, or timestamptz to local time, which fails near either
// end of the range in a zone away from UTC; truncating to a year or week
// can step below the range's start), so a far-off value would otherwise
// fail the query: an error that depends on one row. The bounds are
// constants of the column's own type, compared without a conversion; a
// NULL key is in no public domain, so such rows are never released as a
// group of their own without partition selection.
func dateKeyGuard(c *policy.Column, colSQL, key string) string {
	lo, hi := "'0001-01-01'", "'100000-01-01'"
	switch c.Type {
	case "timestamp":
		lo, hi = "'0001-01-02 00:00:00'", "'100000-01-01 00:00:00'"
	case "timestamptz":
		lo, hi = "'0001-01-02 00:00:00+00'", "'100000-01-01 00:00:00+00'"
	}
	typ := c.Type
	return fmt.Sprintf("CASE WHEN %s >= %s::%s AND %s < %s::%s THEN %s END", colSQL, lo, typ, colSQL, hi, typ, key)
}

func stringConst(n *pg_query.Node) (string, bool) {
	if c := n.GetAConst(); c != nil {
		if s, ok := c.Val.(*pg_query.A_Const_Sval); ok {
			return s.Sval.Sval, true
		}
	}
	return "", false
}

func intConst(n *pg_query.Node) (int64, bool) {
	if c := n.GetAConst(); c != nil {
		if iv, ok := c.Val.(*pg_query.A_Const_Ival); ok {
			return int64(iv.Ival.Ival), true
		}
	}
	return 0, false
}

// defaultName is the column name Postgres gives an unnamed output.
func defaultName(n *pg_query.Node) string {
	switch v := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		f := v.ColumnRef.Fields
		return f[len(f)-1].GetString_().GetSval()
	case *pg_query.Node_FuncCall:
		return funcName(v.FuncCall)
	case *pg_query.Node_TypeCast:
		if v.TypeCast.Arg.GetAConst() == nil {
			return defaultName(v.TypeCast.Arg)
		}
		names := v.TypeCast.TypeName.Names
		// Postgres names a cast constant after the type: SELECT 1::int4.
		return names[len(names)-1].GetString_().GetSval()
	}
	return "?column?"
}

// fieldDomain is the public domain of EXTRACT(field FROM col): fixed for
// calendar fields, from the policy's range for years; nil when unknown.
func fieldDomain(field string, c *policy.Column) []string {
	span := func(lo, hi int) []string {
		out := make([]string, 0, hi-lo+1)
		for i := lo; i <= hi; i++ {
			out = append(out, strconv.Itoa(i))
		}
		return out
	}
	switch field {
	case "month":
		return span(1, 12)
	case "quarter":
		return span(1, 4)
	case "dow":
		return span(0, 6)
	case "isodow":
		return span(1, 7)
	case "day":
		return span(1, 31)
	case "hour":
		return span(0, 23)
	case "week":
		return span(1, 53)
	case "year":
		if c.Range != nil {
			return span(c.Range.Lower.Year(), c.Range.Upper.Add(-time.Nanosecond).Year())
		}
	}
	return nil
}

// truncDomain lists date_trunc(unit, t) for every t in [lo, hi), as
// Postgres prints a timestamp; nil when there would be too many.
func truncDomain(unit string, lo, hi time.Time) []string {
	trunc := func(t time.Time) time.Time {
		switch unit {
		case "year":
			return time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		case "quarter":
			return time.Date(t.Year(), time.Month((int(t.Month())-1)/3*3+1), 1, 0, 0, 0, 0, time.UTC)
		case "month":
			return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		case "week":
			d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
		case "day":
			return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		}
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, time.UTC)
	}
	next := func(t time.Time) time.Time {
		switch unit {
		case "year":
			return t.AddDate(1, 0, 0)
		case "quarter":
			return t.AddDate(0, 3, 0)
		case "month":
			return t.AddDate(0, 1, 0)
		case "week":
			return t.AddDate(0, 0, 7)
		case "day":
			return t.AddDate(0, 0, 1)
		}
		return t.Add(time.Hour)
	}
	var out []string
	for t := trunc(lo.UTC()); t.Before(hi.UTC()); t = next(t) {
		if len(out) >= maxDomainGroups {
			return nil
		}
		out = append(out, t.Format("2006-01-02 15:04:05"))
	}
	return out
}
