package rewrite

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// safePredicateFuncs cannot raise an error or take time that depends on the
// values they are given.
var safePredicateFuncs = map[string]bool{"lower": true, "upper": true, "length": true, "coalesce": true, "trunc": true, "left": true}

// caseMapLimit is the most characters lower, upper and ILIKE see of a
// value (caseMapped): PostgreSQL's case mapping allocates four bytes per
// byte of its input, and fails beyond 1 GB, that is on a text of some
// 256 MB, so lower(col) would fail on such a row and no other.
const caseMapLimit = 16 << 20

// likePatternLimit is the longest LIKE pattern accepted, in characters.
const likePatternLimit = 256

// checkPredicate validates a WHERE clause over one table. The allowlist admits
// only expressions that cannot raise a data-dependent error or take
// data-dependent time: comparisons, boolean logic, IN lists and LIKE with
// constant patterns, NULL tests, and arithmetic on integer columns, which
// checkExpr rewrites in place so that it cannot fail: operands are promoted
// to numeric (no overflow), divisors become NULLIF(d, 0) (no division by
// zero: the comparison is NULL and the row does not match), and integer
// division keeps Postgres's truncation as trunc(a / b).
func checkPredicate(n *pg_query.Node, sc *scope) error {
	return checkExpr(n, sc, false)
}

// checkExpr walks an expression; inArith is true below an arithmetic operator.
func checkExpr(n *pg_query.Node, sc *scope, inArith bool) error {
	if n == nil {
		return nil
	}
	switch e := n.Node.(type) {
	case *pg_query.Node_AConst:
		if inArith && isNumberConst(e.AConst) {
			// Promoted as columns are: arithmetic on constants alone would
			// be integer, and trunc of an integer is double precision,
			// which a numeric column beside it would be converted to.
			*n = *castNode(&pg_query.Node{Node: e}, "numeric")
		}
		return nil
	case *pg_query.Node_ParamRef:
		if e.ParamRef.Number < 1 {
			// As PostgreSQL says it (the deparser cannot even print $0).
			return pgerror.Newf(pgerror.CodeUndefinedParameter, "there is no parameter $%d", e.ParamRef.Number).
				WithHint("parameters are numbered from $1")
		}
		if inArith {
			// A parameter is a constant of unbounded size: times a column it
			// could overflow numeric for some rows and not others.
			return pgerror.RefuseUnsupported.New("bound parameters cannot take part in arithmetic in conditions").
				WithHint("compare a column with the parameter directly, e.g. WHERE income > $1")
		}
		return nil
	case *pg_query.Node_ColumnRef:
		c, err := sc.column(e.ColumnRef)
		if err != nil || !inArith {
			return err
		}
		if !c.IsInteger() {
			return pgerror.RefuseUnsupported.New("arithmetic on %s column %s in a condition is not supported: its values are unbounded", c.Type, c.Name).
				WithHint("compare the column with a constant directly, e.g. WHERE %s > 100", c.Name)
		}
		*n = *castNode(&pg_query.Node{Node: e}, "numeric")
		return nil
	case *pg_query.Node_BoolExpr:
		for _, a := range e.BoolExpr.Args {
			if err := checkExpr(a, sc, false); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_NullTest:
		return checkExpr(e.NullTest.Arg, sc, false)
	case *pg_query.Node_BooleanTest:
		return checkExpr(e.BooleanTest.Arg, sc, false)
	case *pg_query.Node_TypeCast:
		if cr := e.TypeCast.Arg.GetColumnRef(); cr != nil && typeNameIs(e.TypeCast.TypeName, "numeric") {
			// An integer column promoted to numeric cannot fail.
			c, err := sc.column(cr)
			if err != nil {
				return err
			}
			if !c.IsInteger() && (c.Type != "numeric" || inArith) {
				// a numeric column in arithmetic is unbounded: it could
				// overflow numeric on some rows and not others
				return pgerror.RefuseUnsupported.New("casts of %s columns are not supported here", c.Type).
					WithHint("arithmetic in conditions takes integer columns; compare %s with a constant directly", c.Name)
			}
			return nil
		}
		if floatConstToNumeric(n) {
			// The form compareNumericExactly writes: an immutable cast of a
			// constant, folded when PostgreSQL plans the statement.
			return nil
		}
		if e.TypeCast.Arg.GetAConst() == nil {
			return pgerror.RefuseUnsupported.New("casts of columns are not supported: a cast can fail on some rows and not others").
				WithHint("cast the constant instead, e.g. WHERE visit_date >= '2025-01-01'::date")
		}
		return checkTypeName(e.TypeCast.TypeName)
	case *pg_query.Node_List:
		for _, item := range e.List.Items {
			if err := checkExpr(item, sc, inArith); err != nil {
				return err
			}
		}
		return nil
	case *pg_query.Node_AExpr:
		if !inArith && isArithmetic(n) {
			ops := 0
			walkNodes(n, func(m *pg_query.Node) {
				if isArithmetic(m) {
					ops++
				}
			})
			if ops > maxArithmeticOps {
				return pgerror.RefuseUnsupported.New("arithmetic in conditions may use at most %d operators; this uses %d", maxArithmeticOps, ops).
					WithHint("simplify the expression, e.g. compute constant factors yourself")
			}
		}
		op := operatorName(e.AExpr.Name)
		intDiv := e.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_OP && op == "/" &&
			isIntegerExpr(e.AExpr.Lexpr, sc) && isIntegerExpr(e.AExpr.Rexpr, sc)
		if err := checkAExpr(e.AExpr, sc, inArith); err != nil {
			return err
		}
		if intDiv {
			// Promoted to numeric, integer division would keep fractions;
			// trunc restores Postgres's truncation toward zero.
			*n = pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: &pg_query.FuncCall{
				Funcname:   []*pg_query.Node{pg_query.MakeStrNode("trunc")},
				Args:       []*pg_query.Node{{Node: e}},
				Funcformat: pg_query.CoercionForm_COERCE_EXPLICIT_CALL,
			}}}
		}
		return nil
	case *pg_query.Node_FuncCall:
		name := funcName(e.FuncCall)
		if !safePredicateFuncs[name] || e.FuncCall.AggStar || e.FuncCall.Over != nil || e.FuncCall.AggFilter != nil {
			return pgerror.RefuseFunction.New("function %s is not allowed in WHERE", name).
				WithHint("allowed functions in WHERE are lower, upper, length, left, trunc and coalesce")
		}
		for _, a := range e.FuncCall.Args {
			if err := checkExpr(a, sc, inArith); err != nil {
				return err
			}
		}
		if name == "coalesce" {
			return checkCoalesce(n, sc)
		}
		if name == "trunc" && len(e.FuncCall.Args) > 0 {
			return truncNumeric(e.FuncCall.Args[0], sc)
		}
		if (name == "lower" || name == "upper") && len(e.FuncCall.Args) == 1 {
			caseMapped(e.FuncCall.Args[0])
		}
		return nil
	case *pg_query.Node_CoalesceExpr:
		for _, a := range e.CoalesceExpr.Args {
			if err := checkExpr(a, sc, inArith); err != nil {
				return err
			}
		}
		return checkCoalesce(n, sc)
	case *pg_query.Node_SubLink:
		return checkPublicSubLink(e.SubLink, sc, inArith)
	case *pg_query.Node_SqlvalueFunction:
		return nil
	}
	return pgerror.RefuseUnsupported.New("unsupported expression in WHERE")
}

func checkAExpr(a *pg_query.A_Expr, sc *scope, inArith bool) error {
	op := operatorName(a.Name)
	switch a.Kind {
	case pg_query.A_Expr_Kind_AEXPR_NULLIF:
		// Only the rewriter's own NULLIF(divisor, 0).
		if c, ok := intConst(a.Rexpr); !ok || c != 0 || !inArith {
			return pgerror.RefuseUnsupported.New("NULLIF is not supported in conditions")
		}
		return checkExpr(a.Lexpr, sc, true)
	case pg_query.A_Expr_Kind_AEXPR_OP:
		switch {
		case comparisonOps[op]:
			inArith = false
		case arithmeticOps[op]:
			inArith = true
		case op == "/" || op == "%":
			if err := checkArithConst(a.Lexpr); err != nil {
				return err
			}
			if err := checkArithConst(a.Rexpr); err != nil {
				return err
			}
			if err := checkExpr(a.Lexpr, sc, true); err != nil {
				return err
			}
			if d := a.Rexpr.GetAExpr(); d == nil || d.Kind != pg_query.A_Expr_Kind_AEXPR_NULLIF {
				a.Rexpr = &pg_query.Node{Node: &pg_query.Node_AExpr{AExpr: &pg_query.A_Expr{
					Kind: pg_query.A_Expr_Kind_AEXPR_NULLIF, Name: []*pg_query.Node{pg_query.MakeStrNode("=")},
					Lexpr: a.Rexpr, Rexpr: pg_query.MakeAConstIntNode(0, -1),
				}}}
			}
			return checkExpr(a.Rexpr, sc, true)
		default:
			return pgerror.RefuseFunction.New("operator %s is not allowed in WHERE", op).
				WithHint("use comparisons (=, <>, <, <=, >, >=), AND, OR, NOT, IN, BETWEEN, LIKE and IS NULL")
		}
	case pg_query.A_Expr_Kind_AEXPR_IN, pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
	case pg_query.A_Expr_Kind_AEXPR_LIKE, pg_query.A_Expr_Kind_AEXPR_ILIKE:
		if a.Rexpr.GetAConst() == nil {
			return pgerror.RefuseUnsupported.New("LIKE patterns must be constants")
		}
		if t := partnerType(a.Lexpr, sc); t != "" && t != "?" && t != "text" {
			// PostgreSQL has no LIKE for it, and says so after the charge.
			return pgerror.RefuseUnsupported.New("LIKE compares text; the value before it is %s", t).
				WithHint("compare numbers and dates with =, <, > or BETWEEN")
		}
		if a.Kind == pg_query.A_Expr_Kind_AEXPR_ILIKE {
			caseMapped(a.Lexpr)
		}
		// PostgreSQL rejects a pattern ending in its escape character only
		// when a value reaches that point of the pattern: a prefix oracle.
		pat := a.Rexpr.GetAConst().GetSval().GetSval()
		if utf8.RuneCountInString(pat) > likePatternLimit {
			// Matching costs up to a value's length times the pattern's
			// ('%e' and thousands of '_'): a long pattern would make one
			// long private value take seconds, up to the statement timeout.
			return pgerror.RefuseUnsupported.New("LIKE pattern is %d characters long; at most %d are supported", utf8.RuneCountInString(pat), likePatternLimit).
				WithHint("use a shorter pattern, or IN (...) for a list of values")
		}
		if n := len(pat) - len(strings.TrimRight(pat, `\`)); n%2 == 1 {
			return pgerror.RefuseUnsupported.New("LIKE pattern must not end with escape character").
				WithHint(`escape the final backslash: '...\\'`)
		}
	default:
		return pgerror.RefuseFunction.New("this operator is not allowed in WHERE").
			WithHint("regular expressions, SIMILAR TO and ANY/ALL are refused; use LIKE with a constant pattern or IN (...)")
	}
	if inArith {
		if err := checkArithConst(a.Lexpr); err != nil {
			return err
		}
		if err := checkArithConst(a.Rexpr); err != nil {
			return err
		}
	}
	if err := checkExpr(a.Lexpr, sc, inArith); err != nil {
		return err
	}
	if err := checkExpr(a.Rexpr, sc, inArith); err != nil {
		return err
	}
	if inArith {
		return nil
	}
	leaves := comparisonLeaves(a.Lexpr, a.Rexpr)
	if a.Kind == pg_query.A_Expr_Kind_AEXPR_IN {
		if err := inListDateTimes(leaves, sc); err != nil {
			return err
		}
	}
	if err := sameCollation("", leaves, sc); err != nil {
		return err
	}
	if err := sc.noteParams(leaves, "", a.Kind == pg_query.A_Expr_Kind_AEXPR_OP); err != nil {
		return err
	}
	if a.Kind != pg_query.A_Expr_Kind_AEXPR_LIKE && a.Kind != pg_query.A_Expr_Kind_AEXPR_ILIKE {
		if err := checkLiterals(leaves, "", sc); err != nil {
			return err
		}
	}
	return compareNumericExactly(a, sc)
}

// caseMapped makes n, the argument of a case mapping, left(n, caseMapLimit)
// unless it is already no longer: the mapping of a longer text could fail
// on its size alone (caseMapLimit).
func caseMapped(n *pg_query.Node) {
	if f := n.GetFuncCall(); f != nil && funcName(f) == "left" && len(f.Args) == 2 {
		if c, ok := intConst(f.Args[1]); ok && c <= caseMapLimit {
			return
		}
	}
	*n = pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: &pg_query.FuncCall{
		Funcname:   []*pg_query.Node{pg_query.MakeStrNode("left")},
		Args:       []*pg_query.Node{{Node: n.Node}, pg_query.MakeAConstIntNode(caseMapLimit, -1)},
		Funcformat: pg_query.CoercionForm_COERCE_EXPLICIT_CALL,
	}}}
}

// truncNumeric keeps trunc in numeric: PostgreSQL resolves trunc of an
// integer to trunc(double precision), and a numeric column compared with
// that double would be converted to double precision, which fails beyond
// ~1e308. Integer columns and number constants are cast to numeric;
// arithmetic is numeric already (checkExpr promotes its operands); a
// numeric or floating-point column stays as it is (a float beside a
// numeric column is refused by numericLeaves). Anything else, a bound
// parameter included (declared int8 it would be a double too), is refused.
func truncNumeric(arg *pg_query.Node, sc *scope) error {
	switch e := arg.Node.(type) {
	case *pg_query.Node_ColumnRef:
		c, err := sc.column(e.ColumnRef)
		if err != nil {
			return err
		}
		if c.IsInteger() {
			*arg = *castNode(&pg_query.Node{Node: e}, "numeric")
		}
		if c.IsNumeric() {
			return nil
		}
	case *pg_query.Node_AConst:
		if isNumberConst(e.AConst) {
			*arg = *castNode(&pg_query.Node{Node: e}, "numeric")
			return nil
		}
	case *pg_query.Node_TypeCast:
		if typeNameIs(e.TypeCast.TypeName, "numeric") && (e.TypeCast.Arg.GetColumnRef() != nil || e.TypeCast.Arg.GetAConst() != nil) {
			return nil // the form this function writes
		}
	case *pg_query.Node_AExpr:
		if isArithmetic(arg) {
			return nil
		}
	case *pg_query.Node_FuncCall:
		if funcName(e.FuncCall) == "trunc" {
			return nil // integer division, as checkExpr writes it: numeric
		}
	}
	return pgerror.RefuseUnsupported.New("trunc in conditions takes a numeric column, a number or arithmetic").
		WithHint("e.g. WHERE trunc(cost) > 10 or trunc(age / 10) = 3")
}

// isNumberConst: an integer or decimal constant (not a string or NULL).
func isNumberConst(c *pg_query.A_Const) bool {
	switch c.Val.(type) {
	case *pg_query.A_Const_Ival, *pg_query.A_Const_Fval:
		return !c.Isnull
	}
	return false
}

// isArithmetic: an arithmetic operator (+ - * / %).
func isArithmetic(n *pg_query.Node) bool {
	a := n.GetAExpr()
	if a == nil || a.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
		return false
	}
	op := operatorName(a.Name)
	return arithmeticOps[op] || op == "/" || op == "%"
}

// maxArithmeticOps bounds the operators of one arithmetic expression in a
// condition: with constants within [1e-12, 1e12] and int8 columns, 16 of
// them stay far below numeric's limits (~1e131072, and 16383 decimal
// places), which an unbounded chain (age * 1e12 * 1e12 * ...) would reach
// on some rows and not others.
const maxArithmeticOps = 16

// checkArithConst bounds the constants of arithmetic, so that no product of
// them and int8-sized columns within the nesting limit overflows numeric.
func checkArithConst(n *pg_query.Node) error {
	if c := n.GetAConst(); c != nil && !c.Isnull {
		f, ok := numConst(n)
		switch c.Val.(type) {
		case *pg_query.A_Const_Ival, *pg_query.A_Const_Fval:
		default:
			ok = false
		}
		if fv, isF := c.Val.(*pg_query.A_Const_Fval); isF && len(fv.Fval.GetFval()) > 32 {
			ok = false // its scale would add up across products
		}
		if !ok || math.IsInf(f, 0) || math.Abs(f) > maxConstMagnitude || (f != 0 && math.Abs(f) < 1/maxConstMagnitude) {
			return pgerror.RefuseUnsupported.New("constants in arithmetic must be 0 or numbers of magnitude between 1e-12 and 1e12, written in at most 32 characters").
				WithHint("write integer or decimal constants, e.g. WHERE age * 12 > 600")
		}
	}
	if tc := n.GetTypeCast(); tc != nil && tc.Arg.GetAConst() != nil && typeNameIs(tc.TypeName, "numeric") {
		return checkArithConst(tc.Arg) // a constant checkExpr promoted
	}
	if tc := n.GetTypeCast(); tc != nil && (tc.Arg.GetColumnRef() == nil || !typeNameIs(tc.TypeName, "numeric")) {
		return pgerror.RefuseUnsupported.New("casts in arithmetic in conditions are not supported").
			WithHint("write the constant as a number, e.g. age * 2 > 100")
	}
	return nil
}

func castNode(n *pg_query.Node, typ string) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg:      n,
		TypeName: &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(typ)}, Typemod: -1},
	}}}
}

func typeNameIs(tn *pg_query.TypeName, typ string) bool {
	names := tn.GetNames()
	return len(names) > 0 && names[len(names)-1].GetString_().GetSval() == typ && len(tn.ArrayBounds) == 0 && len(tn.Typmods) == 0
}

// isIntegerExpr reports whether an expression has an integer type before
// promotion: integer columns and constants, and arithmetic over them.
func isIntegerExpr(n *pg_query.Node, sc *scope) bool {
	switch e := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		c, err := sc.column(e.ColumnRef)
		return err == nil && c.IsInteger()
	case *pg_query.Node_AConst:
		_, ok := e.AConst.Val.(*pg_query.A_Const_Ival)
		return ok
	case *pg_query.Node_AExpr:
		op := operatorName(e.AExpr.Name)
		return e.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_OP && (arithmeticOps[op] || op == "/" || op == "%") &&
			(e.AExpr.Lexpr == nil || isIntegerExpr(e.AExpr.Lexpr, sc)) && isIntegerExpr(e.AExpr.Rexpr, sc)
	}
	return false
}

// checkPublicSubLink accepts `expr IN (SELECT col FROM <public table>
// [WHERE ...])`, and `(expr, ..) IN (SELECT col, .. FROM ..)`, which a
// sampled join on several columns writes (joinFilters): the subquery reads
// only public data, so its result is public; the outer condition is then
// an IN list like any other, and a row's pairs compare as that many
// single IN conditions would, each checked as one.
func checkPublicSubLink(sl *pg_query.SubLink, sc *scope, inArith bool) error {
	refuse := func() error {
		return pgerror.RefuseUnsupported.New("subqueries in conditions are supported only as IN (SELECT <column> FROM <public table> [WHERE ...]), or (a, b) IN (SELECT <columns> ...) with as many columns").
			WithHint("join the public table instead, or list the values: IN ('a', 'b')")
	}
	if sl.SubLinkType != pg_query.SubLinkType_ANY_SUBLINK || len(sl.OperName) > 0 || inArith || sc.pol == nil {
		return refuse()
	}
	sub := sl.Subselect.GetSelectStmt()
	if sub == nil || checkSelectShape(sub) != nil || sub.WithClause != nil || len(sub.FromClause) != 1 || len(sub.TargetList) == 0 ||
		len(sub.GroupClause) > 0 || sub.HavingClause != nil || len(sub.SortClause) > 0 || sub.LimitCount != nil ||
		sub.LimitOffset != nil || len(sub.DistinctClause) > 0 {
		return refuse()
	}
	tested := []*pg_query.Node{sl.Testexpr}
	if len(sub.TargetList) > 1 {
		row := sl.Testexpr.GetRowExpr()
		if row == nil || len(row.Args) != len(sub.TargetList) {
			return refuse()
		}
		tested = row.Args
	}
	rv := sub.FromClause[0].GetRangeVar()
	if rv == nil || rv.Catalogname != "" || !rv.Inh || renamesColumns(rv.Alias) {
		// Column aliases (departments AS d(floor, name)) would make the
		// policy's types, which the rules here rest on, those of other columns.
		return refuse()
	}
	t := sc.pol.Table(rv.Schemaname, rv.Relname)
	if t == nil || t.IsPrivate() {
		return pgerror.RefuseUnsupported.New("the subquery must read a public table; %s is not one", rv.Relname).
			WithHint("only public lookup tables may appear in subqueries")
	}
	if why := sc.pol.TypeProblem(t); why != "" {
		return pgerror.RefuseTypeMismatch.New("table %s cannot be queried: %s", t.QualifiedName(), why)
	}
	alias := t.Name
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	// Name the table as the policy does, not as the upstream search_path
	// would resolve it.
	rv.Schemaname = t.Schema
	inner := &scope{table: t, alias: alias, pol: sc.pol, params: sc.params}
	// PostgreSQL types each of a row's untyped parameters by its pair
	// alone, and refuses one typed two ways ("inconsistent types deduced")
	// only after the charge.
	paramPair := map[int32]string{}
	for i, target := range sub.TargetList {
		cr := target.GetResTarget().GetVal().GetColumnRef()
		if cr == nil {
			return refuse()
		}
		ic, err := inner.column(cr)
		if err != nil {
			return err
		}
		if err := checkInPair(tested[i], t, ic, sc); err != nil {
			return err
		}
		for _, n := range comparisonLeaves(tested[i]) {
			if p := n.GetParamRef(); p != nil && len(tested) > 1 {
				if typ, seen := paramPair[p.Number]; seen && typ != ic.Type {
					return pgerror.RefuseUnsupported.New("parameter $%d is compared with columns of types %s and %s in one row", p.Number, typ, ic.Type).
						WithHint("use a parameter for each column")
				}
				paramPair[p.Number] = ic.Type
			}
		}
	}
	if sub.WhereClause != nil {
		if err := checkExpr(sub.WhereClause, inner, false); err != nil {
			return err
		}
	}
	for _, n := range tested {
		if err := checkExpr(n, sc, false); err != nil {
			return err
		}
	}
	return nil
}

// checkInPair checks `tested IN (SELECT col ..)` of public table t's column
// ic for conversions that fail on some values and for collations.
func checkInPair(tested *pg_query.Node, t *policy.Table, ic *policy.Column, sc *scope) error {
	leaves := comparisonLeaves(tested)
	for _, n := range leaves {
		if typ := partnerType(n, sc); typ != "" && typ != "?" && typeFamily(typ) != typeFamily(ic.Type) {
			what := "a constant of type " + typ
			if c := columnOf(n, sc); c != nil {
				what = fmt.Sprintf("column %s (%s)", c.Name, c.Type)
			}
			return pgerror.RefuseUnsupported.New("%s cannot be compared with column %s (%s) of %s", what, ic.Name, ic.Type, t.QualifiedName()).
				WithHint("compare values of the same kind: numbers, text, booleans, or dates and timestamps")
		}
	}
	if err := sc.noteParams(leaves, ic.Type, false); err != nil {
		return err
	}
	if err := checkLiterals(leaves, ic.Type, sc); err != nil {
		return err
	}
	if isFloat(ic.Type) {
		for _, n := range leaves {
			if numeric := numericOperand(n, sc); numeric != "" {
				return pgerror.RefuseUnsupported.New("comparing %s with %s column %s is not supported: PostgreSQL would convert the former to double precision, which fails on some values",
					numeric, ic.Type, ic.Name).
					WithHint("compare with numeric constants instead")
			}
		}
	}
	if err := sameCollation(sc.pol.ColumnCollation(t, ic.Name), leaves, sc); err != nil {
		return err
	}
	if ic.Type == "numeric" {
		// The subquery's values would be converted to double precision
		// beside a float, once a private row reaches the subquery.
		for _, n := range leaves {
			if what := floatIn(n, sc); what != "" {
				return pgerror.RefuseUnsupported.New("comparing %s with numeric column %s is not supported: PostgreSQL would convert the latter to double precision, which fails on some values",
					what, ic.Name).
					WithHint("compare the float column with constants instead")
			}
		}
	}
	return nil
}

// typeFamily groups the policy's types whose values PostgreSQL compares
// with one another: numbers, dates and timestamps, and each other type
// alone.
func typeFamily(typ string) string {
	switch {
	case policy.IsNumberType(typ):
		return "number"
	case policy.IsDateTimeType(typ):
		return "datetime"
	}
	return typ
}
