package rewrite

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// maxDomainGroups bounds the groups a query over public domains may produce.
const maxDomainGroups = 10000

// planBuilder accumulates a plan for one SELECT.
type planBuilder struct {
	sc   *scope
	plan *Plan
	// keyNodes are the GROUP BY expressions as written; keySQL their SQL.
	keyNodes []*pg_query.Node
	keySQL   []string
	keyGen   []string         // the SQL generated for each key (usually keySQL)
	keyCol   []*policy.Column // the column a key reads, nil for none
	// aggByText dedups aggregates written more than once.
	aggByText map[string]int
	// qs are the quantities' SQL, parallel to plan.Quantities.
	qs []quantitySQL
	// where is the query's condition, as checkPredicate left it.
	where *pg_query.Node
	// A row-sampled plan splits where's conjuncts: those reading the
	// private table (or no table) are applied before the sampling, those
	// reading one public table (by its alias) inside its joinFilters and
	// again after the join.
	sampledWhere []*pg_query.Node
	publicWhere  map[string][]*pg_query.Node
}

// quantitySQL is how one quantity is computed. Row-level tables use Row;
// unit-level tables compute Inner per (unit, group) and Outer over those.
type quantitySQL struct {
	Row   string
	Inner string
	// centre, with rowSum, computes a row-level centred sum (Row) as a
	// plain sum, centred after the query (Quantity.Centre): subtracting the
	// midpoint from every row costs numeric columns up to a fifth of the
	// query's time.
	centre *Centre
	rowSum string
	Outer  string   // with %s for the inner column
	Multi  []string // a Choice's columns
	Total  string   // a Choice's per-unit total, for scaling (privacy-unit tables)
}

func planAggregate(sel *pg_query.SelectStmt, pol *policy.Policy, ctes map[string]*pg_query.SelectStmt) (*Plan, error) {
	// A table with a shadow copy is planned reading the copy from the start,
	// so that the copy's proven bounds decide the clamps; whether the copy
	// can answer is known only once the aggregates are planned (useShadow),
	// and if it cannot, the query is planned again reading the table.
	p, readCopy, err := buildPlan(sel, pol, ctes, true)
	if !readCopy || (err == nil && p.Shadow) {
		return p, err
	}
	p, _, err = buildPlan(sel, pol, ctes, false)
	return p, err
}

// buildPlan plans an aggregate query; with shadow, a privacy-unit table
// marked `shadow: true` is read through its copy from the start (readCopy).
func buildPlan(sel *pg_query.SelectStmt, pol *policy.Policy, ctes map[string]*pg_query.SelectStmt, shadow bool) (plan *Plan, readCopy bool, err error) {
	for _, sampling := range []bool{true, false} {
		sc, err := resolveFrom(sel.FromClause, pol, ctes)
		if err != nil {
			return nil, false, err
		}
		sc.shadow = shadow && sc.table.Shadow && sc.table.Privacy == policy.PrivacyUnit
		sc.noSampling = !sampling
		p, err := sc.plan(sel, pol)
		if errors.Is(err, errSampledParamOrder) {
			continue
		}
		return p, sc.shadow, err
	}
	panic("unreachable: a plan without sampling cannot reorder parameters")
}

// errSampledParamOrder: row sampling moved a use of a parameter that gives
// it no type (untypedParam) ahead of the one that does, by applying the
// private table's conditions first; the statement is planned again with
// pre-aggregation, which keeps the analyst's order.
var errSampledParamOrder = errors.New("sampling reorders a parameter's uses")

// plan plans the aggregate query sel over the tables sc reads.
func (sc *scope) plan(sel *pg_query.SelectStmt, pol *policy.Policy) (*Plan, error) {
	b := &planBuilder{
		sc:        sc,
		plan:      &Plan{Limit: -1, MaxGroups: 1},
		aggByText: map[string]int{},
	}
	for _, r := range sc.relations() {
		b.plan.Tables = append(b.plan.Tables, r.table.QualifiedName())
	}
	b.plan.UnitLevel = sc.table.Privacy == policy.PrivacyUnit
	b.useUniqueUnit(pol)
	sc.shortenNames(sel.TargetList...)
	sc.shortenNames(sel.WhereClause, sel.HavingClause)
	sc.shortenNames(sel.GroupClause...)
	sc.shortenNames(sel.SortClause...)
	if sel.WhereClause != nil {
		if err := checkPredicate(sel.WhereClause, sc); err != nil {
			return nil, err
		}
	}
	if err := b.addKeys(sel); err != nil {
		return nil, err
	}
	if err := b.addOutputs(sel); err != nil {
		return nil, err
	}
	if sel.HavingClause != nil {
		e, err := b.postExpr(sel.HavingClause, "HAVING")
		if err != nil {
			return nil, err
		}
		b.plan.Having = e
	}
	if err := b.addOrder(sel); err != nil {
		return nil, err
	}
	if err := b.addLimit(sel); err != nil {
		return nil, err
	}
	if len(b.plan.Aggs) == 0 {
		return nil, pgerror.RefusePrivateColumn.New("a query over private table %s must aggregate", sc.table.QualifiedName()).
			WithHint("add an aggregate such as count(*) to the select list")
	}
	if err := sc.checkParamReuse(sel); err != nil {
		return nil, err
	}
	b.where = sel.WhereClause
	b.finishSensitivities()
	sql, err := b.generateSQL(sel.WhereClause)
	if err != nil {
		return nil, err
	}
	if n := untypedParam(sql, sc.params); n != 0 {
		if b.plan.Sampled > 0 {
			return nil, errSampledParamOrder
		}
		return nil, pgerror.RefuseUnsupported.New("could not determine a data type for parameter $%d: the statement tests it for NULL, or compares it with untyped values only, before anything gives it its type", n).
			WithHint("compare it with a column of the private table first, e.g. WHERE (amount > $%d OR $%d IS NULL)", n, n)
	}
	if err := verifyRewritten(sql, b.sc, b.plan); err != nil {
		return nil, fmt.Errorf("rewritten query failed verification: %w", err)
	}
	b.plan.SQL = sql
	b.plan.ParamTypes = sc.params.types()
	b.plan.Guard = b.plan.guardSQL()
	b.plan.sc = sc
	b.plan.Canonical = RenderPlan(b.plan)
	return b.plan, nil
}

// finishSensitivities scales sensitivities by the groups one unit may touch,
// adds the partition-selection count when some key has no public domain, and
// splits ε evenly over the quantities.
func (b *planBuilder) finishSensitivities() {
	t := b.sc.table
	b.useShadow()
	if b.plan.UnitLevel && len(b.plan.Keys) > 0 {
		b.plan.MaxGroups = max(1, t.MaxGroupsPerUnit)
		// When every key is a column the SQL filters to its public domain,
		// a unit has rows in at most that many groups: with fewer of those
		// than max_groups_per_unit, the domain is the tighter bound (GROUP
		// BY sex with max_groups_per_unit 3 scales noise by 2). Derived
		// keys are not filtered in SQL, so their NULL or out-of-range
		// groups could take a unit's slots; they keep the policy's bound.
		if d := domainProduct(b.plan.Keys); b.keysFilteredInSQL() && d < b.plan.MaxGroups {
			b.plan.MaxGroups = d
		}
	}
	if b.useSampling() {
		b.plan.MaxGroups = 1
	}
	for i := range b.plan.Quantities {
		b.plan.Quantities[i].L1Sensitivity *= float64(b.plan.MaxGroups)
	}
	for _, k := range b.plan.Keys {
		if k.Domain == nil {
			units := quantitySQL{Row: "count(*)", Inner: "1", Outer: "count(%s)"}
			idx := b.addQuantity(Quantity{Expr: "privacy units in group", L1Sensitivity: 1, Granularity: 1, NonNegative: true}, units)
			b.plan.Selection = &Selection{Units: idx, MaxGroups: b.plan.MaxGroups}
			break
		}
	}
	for i := range b.plan.Quantities {
		b.plan.Quantities[i].Weight = 1 / float64(len(b.plan.Quantities))
	}
}

// keysFilteredInSQL reports whether the unit-level SQL restricts every
// group key to its public domain (generateSQL adds col IN (...) for keys
// that are plain columns with a domain).
func (b *planBuilder) keysFilteredInSQL() bool {
	for i, k := range b.plan.Keys {
		if !b.filteredInSQL(i, k) {
			return false
		}
	}
	return len(b.plan.Keys) > 0
}

func (b *planBuilder) filteredInSQL(i int, k Key) bool {
	return (b.plan.UnitLevel || b.plan.Sampled > 0) && k.Domain != nil && b.keyCol[i] != nil && b.keyNodes[i].GetColumnRef() != nil
}

// domainProduct is the number of groups the keys' public domains allow,
// or 0 when some key has none (partition selection). It stops counting
// past a million, far above any max_groups_per_unit.
func domainProduct(keys []Key) int {
	n := 1
	for _, k := range keys {
		if k.Domain == nil {
			return 0
		}
		n *= max(1, len(k.Domain))
		if n > 1_000_000 {
			return 1_000_000
		}
	}
	return n
}

// useShadow switches a privacy-unit query to the table's pre-bounded shadow
// copy (policy `shadow: true`; filled by `dpproxy shadow refresh` with at
// most max_rows_per_unit rows per unit, chosen at random independently of
// the values) when the query needs nothing the copy cannot give: no
// partition selection and no count(DISTINCT unit), both of which count
// units rather than rows, and no other private table. On the copy a unit
// has at most m rows, so it touches at most m groups and moves the whole
// vector of per-group counts by at most m in L1: the row-level rewrite with
// every sensitivity at m (as planned) is sound, with no group bounding.
func (b *planBuilder) useShadow() {
	// Only a scope that reads the copy from the start (planAggregate) may:
	// the clamps were chosen by the copy's proven bounds.
	if !b.plan.UnitLevel || !b.sc.shadow {
		return
	}
	for _, r := range b.sc.public {
		if r.table.IsPrivate() {
			return
		}
	}
	for _, k := range b.plan.Keys {
		if k.Domain == nil {
			return
		}
	}
	for _, q := range b.qs {
		if q.Row == "" && q.Multi == nil {
			return
		}
	}
	b.plan.UnitLevel, b.plan.Shadow, b.plan.ShadowBound = false, true, b.sc.table.ShadowComment()
	b.plan.shadowCopy = quoteIdent(policy.ShadowSchema) + "." + quoteIdent(b.sc.table.ShadowName())
}

// useUniqueUnit plans a privacy-unit table as a row-level one when the
// upstream catalog declares its unit column unique (a unique, immediate,
// non-partial index on exactly that column; policy.UnitUnique) and the
// query joins it to public tables only: each unit then has at most one
// row, which is exactly the row-level guarantee, so no bounding is needed
// and every sensitivity is that of one row. A view of the table (a
// projection with a filter) keeps rows unique; a public table cannot
// multiply a row (it is joined through DISTINCT ON its join columns).
// Plan.UniqueUnit asks wire to check the index again in the snapshot that
// runs the query, so a constraint dropped since is caught.
func (b *planBuilder) useUniqueUnit(pol *policy.Policy) {
	t := b.sc.table
	if !b.plan.UnitLevel || !pol.UnitUnique(t) {
		return
	}
	for _, r := range b.sc.public {
		if r.table.IsPrivate() {
			return
		}
	}
	b.plan.UnitLevel = false
	b.plan.UniqueUnit = &UniqueUnit{Table: t.QualifiedName(), Schema: t.Schema, Name: t.Name, Column: t.Unit}
}

// GuardSQL is a statement returning one boolean, true when the table has a
// unique index whose only key is the unit column, immediate, valid, not
// partial and not on an expression, and the column is NOT NULL (a unique
// index admits many NULLs, and rows without a unit would be one unbounded
// unit). The table must be a plain table without inheritance children (a
// query reads the children too, and the parent's index does not cover
// them; relhassubclass may stay true after the children are gone, which
// only errs on the safe side) or a partitioned table (whose unique index
// covers every partition). The caller runs it at start-up to mark the
// policy, and before each query that relies on it, in the query's own
// REPEATABLE READ snapshot.
func (u *UniqueUnit) GuardSQL() string { return "SELECT " + u.guardExpr() }

func (u *UniqueUnit) guardExpr() string {
	return fmt.Sprintf(`EXISTS (
  SELECT 1 FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
  WHERE i.indrelid = pg_catalog.to_regclass(%s) AND i.indisunique AND i.indimmediate
    AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND i.indexprs IS NULL
    AND i.indnkeyatts = 1 AND a.attname = %s AND a.attnotnull
    AND (c.relkind = 'p' OR (c.relkind = 'r' AND NOT c.relhassubclass)))`,
		escapeLiteral(quoteIdent(u.Schema)+"."+quoteIdent(u.Name)), escapeLiteral(u.Column))
}

// escapeLiteral writes s as an escape string constant, which reads the
// same whatever the session's standard_conforming_strings says.
func escapeLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, "'", "''").Replace(s) + "'"
}

// addQuantity adds a quantity, or returns an identical one already planned:
// avg(x) and stddev(x) share their count, and a quantity asked for twice is
// paid for once.
func (b *planBuilder) addQuantity(q Quantity, s quantitySQL) int {
	if q.L1Sensitivity <= 0 {
		// A constant (sum(0), avg over a zero-width range): no row changes
		// it, but mechanisms need a positive sensitivity; one grid step is
		// always sound.
		q.L1Sensitivity = q.Granularity
	}
	if q.Choice == nil {
		for i, prev := range b.qs {
			p := b.plan.Quantities[i]
			if prev.Row == s.Row && prev.Inner == s.Inner && prev.Outer == s.Outer && prev.Multi == nil && prev.rowSum == s.rowSum &&
				p.Choice == nil && p.L1Sensitivity == q.L1Sensitivity && p.Granularity == q.Granularity {
				return i
			}
		}
	}
	b.plan.Quantities = append(b.plan.Quantities, q)
	b.qs = append(b.qs, s)
	return len(b.plan.Quantities) - 1
}

func (b *planBuilder) addLimit(sel *pg_query.SelectStmt) error {
	get := func(n *pg_query.Node, what string) (int64, error) {
		c := n.GetAConst()
		if c == nil {
			return 0, pgerror.RefuseUnsupported.New("%s must be an integer constant", what)
		}
		iv, ok := c.Val.(*pg_query.A_Const_Ival)
		if c.Isnull {
			return -1, nil
		}
		if !ok || iv.Ival.Ival < 0 {
			return 0, pgerror.RefuseUnsupported.New("%s must be a non-negative integer constant", what)
		}
		return int64(iv.Ival.Ival), nil
	}
	if sel.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return pgerror.RefuseUnsupported.New("FETCH ... WITH TIES is not supported")
	}
	if sel.LimitCount != nil {
		n, err := get(sel.LimitCount, "LIMIT")
		if err != nil {
			return err
		}
		b.plan.Limit = n
	}
	if sel.LimitOffset != nil {
		n, err := get(sel.LimitOffset, "OFFSET")
		if err != nil {
			return err
		}
		b.plan.Offset = max(0, n)
	}
	return nil
}

// clampSQL clamps a column to [lo, hi]. Integer columns with int4-sized
// bounds stay int4, so sum() uses its fast int8 accumulator without overflow;
// anything else is clamped as numeric, which cannot overflow either.
func clampSQL(colSQL string, c *policy.Column, lo, hi float64) string {
	if !intArithmetic(c, lo, hi) && c.Type != "numeric" {
		colSQL += "::numeric"
	}
	return fmt.Sprintf("LEAST(GREATEST(%s, %s), %s)", colSQL, numLiteral(lo, c), numLiteral(hi, c))
}

// intArithmetic reports whether clamping can stay in int4: an int4-sized
// integer column. Expression pseudo-columns (see expressionColumn; their
// name is SQL text) are always computed in numeric.
func intArithmetic(c *policy.Column, lo, hi float64) bool {
	return c != nil && c.IsInteger() && c.Type != "bigint" && isInt32(lo) && isInt32(hi) && !isExpressionColumn(c)
}

func isExpressionColumn(c *policy.Column) bool { return strings.ContainsAny(c.Name, "( ") }

func isInt32(f float64) bool { return f == math.Trunc(f) && f >= math.MinInt32 && f <= math.MaxInt32 }

func numLiteral(f float64, c *policy.Column) string {
	var s string
	if c != nil && c.IsInteger() && c.Type != "bigint" && isInt32(f) {
		s = strconv.FormatInt(int64(f), 10)
	} else {
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if f < 0 {
		return "(" + s + ")"
	}
	return s
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// exprSQL renders a validated expression node as SQL with the real deparser.
func exprSQL(n *pg_query.Node) (string, error) {
	sel := &pg_query.SelectStmt{
		TargetList:  []*pg_query.Node{{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: n}}}},
		LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg_query.SetOperation_SETOP_NONE,
	}
	s, err := deparse(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}})
	if err != nil {
		return "", err
	}
	s, ok := strings.CutPrefix(s, "SELECT ")
	if !ok {
		return "", fmt.Errorf("unexpected deparse %q", s)
	}
	return s, nil
}

// decimalsOf is how many digits after the point a granularity needs.
func decimalsOf(g float64) int {
	d := 0
	for d < 12 && math.Abs(g-math.Round(g)) > 1e-9*math.Max(1, math.Abs(g)) {
		g *= 10
		d++
	}
	return d
}
