package rewrite

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/policy"
)

// Proven bounds.
//
// Clamping every value to its column's bounds is what makes a sum's
// sensitivity a policy fact instead of a data fact, and it costs about a
// tenth of a simple aggregate's time in PostgreSQL. When validated CHECK
// constraints upstream already keep every value of the column within the
// bounds, the clamp changes nothing and is left out. NULL passes a CHECK,
// but aggregates skip it, and a conjunction fails as soon as one of its
// comparisons fails, so any AND of comparisons that includes
// col >= lo and col <= hi proves the bounds (NaN fails col <= hi). wire
// reads the constraints from the catalog (ProveBounds decides), and each
// query that relies on them checks again, in its own snapshot, that they
// are still there (ProvenBound.guardExpr, Plan.Guard).

// ProvenBound names a column left unclamped and the CHECK constraint
// expressions that keep it within bounds.
type ProvenBound struct {
	Table  string // schema.name
	Schema string
	Name   string
	Column string
	Exprs  []string
}

// ProveBounds returns the expressions among exprs (validated, inherited
// CHECK constraints of one table, as pg_get_expr prints them) that prove
// lo <= column <= hi, or nil if they do not.
func ProveBounds(exprs []string, column string, lo, hi float64) []string {
	// The bounds as the clamp would write them (numLiteral), exactly.
	loR, _ := new(big.Rat).SetString(strconv.FormatFloat(lo, 'f', -1, 64))
	hiR, _ := new(big.Rat).SetString(strconv.FormatFloat(hi, 'f', -1, 64))
	if loR == nil || hiR == nil {
		return nil
	}
	lower, upper := -1, -1
	for i, e := range exprs {
		l, u := constraintBounds(e, column)
		if lower < 0 && l != nil && l.Cmp(loR) >= 0 {
			lower = i
		}
		if upper < 0 && u != nil && u.Cmp(hiR) <= 0 {
			upper = i
		}
	}
	switch {
	case lower < 0 || upper < 0:
		return nil
	case lower == upper:
		return []string{exprs[lower]}
	}
	return []string{exprs[lower], exprs[upper]}
}

// constraintBounds returns the bounds one CHECK expression puts on column:
// the largest lower and smallest upper bound among the comparisons of
// column with a constant that the expression is an AND of (nil when it has
// none, or is not such a conjunction). Bounds are exact: a rounded
// constant could move a bound past a value the constraint admits.
func constraintBounds(expr, column string) (lower, upper *big.Rat) {
	raws, err := parse("SELECT WHERE " + expr)
	if err != nil || len(raws) != 1 || raws[0].Stmt.GetSelectStmt() == nil {
		return nil, nil
	}
	var walk func(n *pg_query.Node)
	walk = func(n *pg_query.Node) {
		if b := n.GetBoolExpr(); b != nil {
			if b.Boolop == pg_query.BoolExprType_AND_EXPR {
				for _, a := range b.Args {
					walk(a)
				}
			}
			return
		}
		a := n.GetAExpr()
		if a == nil || a.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
			return
		}
		op := operatorName(a.Name)
		v, ok := constValue(a.Rexpr)
		if !isColumn(a.Lexpr, column) || !ok {
			// c OP col reads as col OP' c.
			if v, ok = constValue(a.Lexpr); !ok || !isColumn(a.Rexpr, column) {
				return
			}
			op = map[string]string{">=": "<=", ">": "<", "<=": ">=", "<": ">"}[op]
		}
		switch op {
		case ">=", ">":
			if lower == nil || v.Cmp(lower) > 0 {
				lower = v
			}
		case "<=", "<":
			if upper == nil || v.Cmp(upper) < 0 {
				upper = v
			}
		}
	}
	walk(raws[0].Stmt.GetSelectStmt().WhereClause)
	return lower, upper
}

// isColumn reports whether n is the bare column (no cast: a cast to a
// narrower type could round a value into the range).
func isColumn(n *pg_query.Node, column string) bool {
	cr := n.GetColumnRef()
	return cr != nil && len(cr.Fields) == 1 && cr.Fields[0].GetString_().GetSval() == column
}

// constValue reads a numeric constant exactly, possibly cast to an integer
// type or numeric, as pg_get_expr prints them: 0, (0)::numeric,
// ('-50'::integer)::numeric. A fraction cast to an integer type (which
// rounds) or a cast to a floating-point or any other type (the comparison
// would then round the column's values too) makes it unreadable.
func constValue(n *pg_query.Node) (*big.Rat, bool) {
	var casts []string
	for n.GetTypeCast() != nil {
		names := n.GetTypeCast().TypeName.GetNames()
		if len(names) == 0 {
			return nil, false
		}
		casts = append(casts, names[len(names)-1].GetString_().GetSval())
		n = n.GetTypeCast().Arg
	}
	c := n.GetAConst()
	if c == nil {
		return nil, false
	}
	var s string
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		s = strconv.FormatInt(int64(v.Ival.Ival), 10)
	case *pg_query.A_Const_Fval:
		s = v.Fval.Fval
	case *pg_query.A_Const_Sval:
		s = strings.TrimSpace(v.Sval.Sval)
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, false // NaN, Infinity, text
	}
	for _, typ := range casts {
		switch typ {
		case "int2", "int4", "int8":
			if !r.IsInt() {
				return nil, false
			}
		case "numeric":
		default:
			return nil, false
		}
	}
	return r, true
}

// guardExpr is a boolean SQL expression, true when every constraint of the
// proof is still a validated, inherited CHECK constraint of the table.
func (p *ProvenBound) guardExpr() string {
	lits := make([]string, len(p.Exprs))
	for i, e := range p.Exprs {
		lits[i] = escapeLiteral(e)
	}
	name := escapeLiteral(QuoteQualified(p.Schema, p.Name))
	return fmt.Sprintf(`(SELECT count(DISTINCT pg_catalog.pg_get_expr(con.conbin, con.conrelid)) = %d
  FROM pg_catalog.pg_constraint con
  WHERE con.conrelid = pg_catalog.to_regclass(%s) AND %s
    AND pg_catalog.pg_get_expr(con.conbin, con.conrelid) = ANY (ARRAY[%s]))
  AND %s`,
		len(p.Exprs), name, enforcedCheck, strings.Join(lits, ", "), enforcedTreeSQL(name))
}

// enforcedCheck selects, in pg_constraint con, the CHECK constraints every
// row of the table and its descendants satisfies: validated, and inherited.
const enforcedCheck = `con.contype = 'c' AND con.convalidated AND NOT con.connoinherit`

// enforcedTreeSQL is true when the table (a quoted literal of its name) and
// every table it reads through inheritance or partitioning are tables that
// enforce CHECK constraints: PostgreSQL copies a parent's CHECK to a
// foreign-table partition or child, marked valid, but never enforces it.
func enforcedTreeSQL(nameLit string) string {
	return fmt.Sprintf(`(SELECT c.relkind IN ('r', 'p') FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s))
  AND NOT EXISTS (WITH RECURSIVE tree(oid) AS (
      SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = pg_catalog.to_regclass(%s)
      UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.oid)
    SELECT 1 FROM tree JOIN pg_catalog.pg_class c ON c.oid = tree.oid WHERE c.relkind NOT IN ('r', 'p'))`, nameLit, nameLit)
}

// ProvableTableSQL tells ($1: the table's quoted qualified name) whether
// proven bounds may apply to a table: one that enforces CHECK constraints
// through all its inheritance and partitions (enforcedTreeSQL), and large
// enough to pay (wire/bounds.go).
func ProvableTableSQL(minBytes int64) string {
	return fmt.Sprintf(`SELECT (c.relkind = 'p' OR pg_catalog.pg_relation_size(c.oid) >= %d) AND %s
  FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`, minBytes, enforcedTreeSQL("$1"))
}

// CheckConstraintsSQL lists a table's validated, inherited CHECK
// constraints ($1: the table's quoted qualified name), for ProveBounds.
const CheckConstraintsSQL = `SELECT pg_catalog.pg_get_expr(con.conbin, con.conrelid)
  FROM pg_catalog.pg_constraint con
  WHERE con.conrelid = pg_catalog.to_regclass($1) AND ` + enforcedCheck

// guardSQL is the statement that checks, in the query's own snapshot, the
// catalog facts a plan relies on (a unique unit, proven bounds); it returns
// one boolean. "" when the plan relies on none. The builder stores it in
// Plan.Guard once, so that running a cached plan formats nothing.
func (p *Plan) guardSQL() string {
	var parts []string
	if p.UniqueUnit != nil {
		parts = append(parts, p.UniqueUnit.guardExpr())
	}
	for i := range p.ProvenBounds {
		parts = append(parts, p.ProvenBounds[i].guardExpr())
	}
	if p.Shadow {
		// The copy this transaction read, locked by it: a refresh that
		// swapped in a copy of another bound after the check before the
		// charge is caught here.
		parts = append(parts, fmt.Sprintf("pg_catalog.obj_description(pg_catalog.to_regclass(%s), 'pg_class') IS NOT DISTINCT FROM %s",
			quoteLiteral(p.shadowCopy), quoteLiteral(p.ShadowBound)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "SELECT " + strings.Join(parts, "\n  AND ")
}

// unclamped returns colSQL unclamped when the catalog proves column c of
// the private table lies within [lo, hi] (the bounds clampSQL would clamp
// to), recording the proof for the query's guard; otherwise "".
func (b *planBuilder) unclamped(colSQL string, c *policy.Column, lo, hi float64) string {
	t := b.sc.table
	if isExpressionColumn(c) || t.Column(c.Name) != c || c.Bounds == nil || lo != c.Bounds.Lower || hi != c.Bounds.Upper {
		return ""
	}
	if !c.IsInteger() && c.Type != "numeric" {
		// real and double precision are summed as numeric, and that cast
		// rounds (to 6 or 15 digits), possibly past a bound; the clamp
		// after the cast is what keeps them in.
		return ""
	}
	pb := b.sc.provenBound(c.Name)
	if pb == nil {
		return ""
	}
	found := false
	for _, p := range b.plan.ProvenBounds {
		found = found || p.Column == c.Name
	}
	if !found {
		b.plan.ProvenBounds = append(b.plan.ProvenBounds, *pb)
	}
	if !intArithmetic(c, lo, hi) && c.Type != "numeric" {
		colSQL += "::numeric"
	}
	return colSQL
}

// CopyClamp is how `dpproxy shadow refresh` stores column c of a
// pre-bounded copy so that unclamped (above) can leave it bare: ref (the
// column as the copy's SELECT reads it) clamped to c's bounds, NULL kept
// and NaN (above every number in PostgreSQL's order) made the upper bound,
// and the CHECK condition on the stored column (name, quoted) that
// ProveBounds reads back. ok is false for a column a proof would not
// unclamp: unbounded, floating-point, or integer with fractional bounds.
func CopyClamp(c *policy.Column, ref, name string) (expr, check string, ok bool) {
	if c.Bounds == nil || isExpressionColumn(c) {
		return "", "", false
	}
	lo, hi := c.Bounds.Lower, c.Bounds.Upper
	if !(c.Type == "numeric" || c.IsInteger() && lo == math.Trunc(lo) && hi == math.Trunc(hi)) {
		return "", "", false
	}
	l, h := numLiteral(lo, nil), numLiteral(hi, nil)
	return fmt.Sprintf("CASE WHEN %s < %s THEN %s WHEN %s > %s THEN %s ELSE %s END", ref, l, l, ref, h, h, ref),
		fmt.Sprintf("%s >= %s AND %s <= %s", name, l, name, h), true
}

// clamp is clampSQL, or the bare column when its bounds are proven.
func (b *planBuilder) clamp(colSQL string, c *policy.Column, lo, hi float64) string {
	if s := b.unclamped(colSQL, c, lo, hi); s != "" {
		return s
	}
	return clampSQL(colSQL, c, lo, hi)
}

// provenColumn reports whether n is (a cast of) a private column whose
// bounds the plan's guard checks, which the verifier then accepts in place
// of a clamp.
func provenColumn(n *pg_query.Node, sc *scope) bool {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	cr := n.GetColumnRef()
	if cr == nil {
		return false
	}
	c, rel, err := sc.resolve(cr)
	return err == nil && rel != nil && rel.table == sc.table && sc.proven[c.Name]
}

// provenBound is the proof the policy holds that column of the table the
// scope reads (the private table, or its shadow copy) lies within its
// bounds, naming the upstream table the guard must check; nil if none.
func (sc *scope) provenBound(column string) *ProvenBound {
	t := sc.table
	if sc.shadow {
		if proof := sc.pol.ShadowBoundsProof(t, column); proof != nil {
			return &ProvenBound{Table: policy.ShadowSchema + "." + t.ShadowName(), Schema: policy.ShadowSchema, Name: t.ShadowName(), Column: column, Exprs: proof}
		}
		return nil
	}
	if proof := sc.pol.BoundsProof(t, column); proof != nil {
		return &ProvenBound{Table: t.QualifiedName(), Schema: t.Schema, Name: t.Name, Column: column, Exprs: proof}
	}
	return nil
}

// provenColumns are the columns whose bounds plan's guard checks, on the
// table the scope reads, with the proof the policy holds.
func provenColumns(plan *Plan, sc *scope) map[string]bool {
	m := map[string]bool{}
	for _, p := range plan.ProvenBounds {
		want := sc.provenBound(p.Column)
		if want != nil && p.Table == want.Table && p.Schema == want.Schema && p.Name == want.Name && slices.Equal(p.Exprs, want.Exprs) {
			m[p.Column] = true
		}
	}
	return m
}

// QuoteQualified is schema.name with both parts quoted, as to_regclass
// reads it.
func QuoteQualified(schema, name string) string { return quoteIdent(schema) + "." + quoteIdent(name) }
