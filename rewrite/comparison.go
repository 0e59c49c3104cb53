package rewrite

import (
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// Comparisons in conditions are made in the types of the private columns
// they read. PostgreSQL compares values of two types by converting one of
// them, and some conversions fail on extreme values (numeric to double
// precision beyond ~1e308, date to timestamp beyond 294276 AD, timestamp to
// timestamptz near the range's ends); collations it cannot choose between
// fail on the first row compared. Either way a query would fail exactly
// when some row reached the comparison, which would reveal the row. The
// rules below keep every such conversion off the rows: checkAExpr and
// checkExpr apply them to comparisons, IN lists and coalesce.

// sameCollation refuses comparing columns of two different collations
// (other than the database's default, which yields to any other):
// PostgreSQL cannot choose one, and says so only when it compares a row's
// values, that is only when some row reaches the comparison. coll is a
// collation already in play ("" for none).
func sameCollation(coll string, leaves []*pg_query.Node, sc *scope) error {
	if sc.pol == nil {
		return nil
	}
	var err error
	for _, n := range leaves {
		walkNodes(n, func(m *pg_query.Node) {
			cr := m.GetColumnRef()
			if cr == nil || err != nil {
				return
			}
			c, rel, rerr := sc.resolve(cr)
			if rerr != nil {
				return
			}
			switch cc := sc.pol.ColumnCollation(rel.table, c.Name); {
			case cc == "":
			case coll == "":
				coll = cc
			case cc != coll:
				err = pgerror.RefuseUnsupported.New("column %s has another collation than the value it is compared with: PostgreSQL cannot choose one, and would fail on the rows it compares", c.Name).
					WithHint("compare columns of the same collation, or compare %s with constants", c.Name)
			}
		})
	}
	return err
}

// inListDateTimes refuses an IN list whose values are of more than one
// date/time type. PostgreSQL converts the list's values to a common type
// (x IN (date, timestamptz) compares x with an array of timestamptz); the
// conversion of a date to timestamptz depends on the TimeZone, so it is
// not folded into a constant: it runs on each row the condition reaches
// (and when the planner estimates the condition over a table), and it
// fails beyond 294276 AD, so the query's failure could depend on whether
// some row reached it.
func inListDateTimes(leaves []*pg_query.Node, sc *scope) error {
	first := ""
	for _, n := range leaves {
		t := dateTimeType(n, sc)
		switch {
		case t == "":
		case first == "":
			first = t
		case t != first:
			return pgerror.RefuseUnsupported.New("IN lists may not mix %s and %s values: PostgreSQL would convert them on each row, which can fail", first, t).
				WithHint("give the values one type, e.g. d IN ('2025-01-01', '2025-02-01'), or use OR: d = x OR d = y")
		}
	}
	return nil
}

// compareNumericExactly keeps PostgreSQL from converting a numeric value
// of a private row to double precision in a comparison (=, <, IN, BETWEEN,
// IS DISTINCT FROM...) or a coalesce, which it does when the other side is
// floating-point: the conversion fails beyond ~1.8e308 (and below
// ~1e-308), which numeric holds, so whether the query fails would depend
// on a private row. Beside a numeric column, or integer arithmetic (which
// checkExpr promotes to numeric), a constant cast to real or double
// precision becomes numeric ((0.5::float8)::numeric, folded when the
// statement is planned); any other floating-point operand (a float column,
// such a cast under a minus sign or a function) is refused. Bound
// parameters are the wire layer's: a DP statement's parameters go upstream
// untyped (wire/dpparams.go), so PostgreSQL gives them the type of what
// they are compared with and converts the analyst's value when binding.
// Applying it again changes nothing, as the verifier requires.
func compareNumericExactly(a *pg_query.A_Expr, sc *scope) error {
	return numericLeaves(comparisonLeaves(a.Lexpr, a.Rexpr), sc)
}

// checkCoalesce: a coalesce's arguments are converted to one common type,
// as a comparison's operands are, and unlike a comparison there is no
// cross-type operator to spare the column a conversion.
func checkCoalesce(n *pg_query.Node, sc *scope) error {
	leaves := comparisonLeaves(n)
	if err := numericLeaves(leaves, sc); err != nil {
		return err
	}
	if err := sc.noteParams(leaves, "", false); err != nil {
		return err
	}
	if err := sameCollation("", leaves, sc); err != nil {
		return err
	}
	return sameDateTimeType(leaves, sc)
}

// sameDateTimeType refuses a coalesce that mixes a date or timestamp
// column with a value of another date/time type: PostgreSQL would convert
// the column (date to timestamp fails beyond 294276 AD, which a date
// holds; timestamp to timestamptz near the range's ends in a zone behind
// UTC), so whether the query fails would depend on a private row. Untyped
// literals and NULL take the column's type, and so do bound parameters,
// which the wire layer sends untyped (wire/dpparams.go).
func sameDateTimeType(leaves []*pg_query.Node, sc *scope) error {
	column := ""
	var col *policy.Column
	for _, n := range leaves {
		if c := columnOf(n, sc); c != nil && dateTimeType(n, sc) != "" {
			column, col = c.Type, c
			break
		}
	}
	if column == "" {
		return nil
	}
	for _, n := range leaves {
		if t := dateTimeType(n, sc); t != "" && t != column {
			return pgerror.RefuseUnsupported.New("coalesce of %s column %s with a %s value is not supported: PostgreSQL would convert the column, which fails on some values", column, col.Name, t).
				WithHint("give the other arguments the column's type, e.g. coalesce(%s, '2025-01-01'), or test for NULL: (%s IS NULL OR %s > ...)", col.Name, col.Name, col.Name)
		}
	}
	return nil
}

// dateTimeType is the date/time type of a column, cast or SQL value
// function, or "".
func dateTimeType(n *pg_query.Node, sc *scope) string {
	switch e := n.GetNode().(type) {
	case *pg_query.Node_ColumnRef:
		if c := columnOf(n, sc); c != nil && (c.Type == "date" || c.Type == "timestamp" || c.Type == "timestamptz") {
			return c.Type
		}
	case *pg_query.Node_TypeCast:
		if names := e.TypeCast.TypeName.GetNames(); len(names) > 0 {
			switch t := names[len(names)-1].GetString_().GetSval(); t {
			case "date", "timestamp", "timestamptz", "time", "timetz", "interval":
				return t
			}
		}
	case *pg_query.Node_SqlvalueFunction:
		switch e.SqlvalueFunction.Op {
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
			return "date"
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
			return "timetz"
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
			return "timestamptz"
		case pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME, pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
			return "time"
		case pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
			return "timestamp"
		}
	}
	return ""
}

func numericLeaves(leaves []*pg_query.Node, sc *scope) error {
	numeric := ""
	for _, n := range leaves {
		if numeric = numericOperand(n, sc); numeric != "" {
			break
		}
	}
	if numeric == "" {
		return nil
	}
	for _, n := range leaves {
		switch {
		case floatConstToNumeric(n):
		case isFloatConst(n):
			*n = *castNode(&pg_query.Node{Node: n.Node}, "numeric")
		default:
			if what := floatIn(n, sc); what != "" {
				return pgerror.RefuseUnsupported.New("comparing %s with %s is not supported: PostgreSQL would convert the former to double precision, which fails on some values",
					numeric, what).
					WithHint("compare with numeric constants, e.g. 0.5 rather than 0.5::float8")
			}
		}
	}
	return nil
}

// comparisonLeaves are the values a comparison's operands compare: IN and
// BETWEEN lists flattened, and coalesce's arguments, whose common type
// PostgreSQL resolves as the comparison's.
func comparisonLeaves(operands ...*pg_query.Node) []*pg_query.Node {
	var leaves []*pg_query.Node
	var collect func(n *pg_query.Node)
	collect = func(n *pg_query.Node) {
		switch e := n.GetNode().(type) {
		case nil:
		case *pg_query.Node_List:
			for _, item := range e.List.Items {
				collect(item)
			}
		case *pg_query.Node_CoalesceExpr:
			for _, arg := range e.CoalesceExpr.Args {
				collect(arg)
			}
		case *pg_query.Node_FuncCall:
			if funcName(e.FuncCall) != "coalesce" {
				leaves = append(leaves, n)
				return
			}
			for _, arg := range e.FuncCall.Args {
				collect(arg)
			}
		default:
			leaves = append(leaves, n)
		}
	}
	for _, n := range operands {
		collect(n)
	}
	return leaves
}

// numericOperand describes n when it may be a numeric value of a private
// row: arithmetic (promoted to numeric), or a numeric column anywhere in
// it; "" otherwise.
func numericOperand(n *pg_query.Node, sc *scope) string {
	found := ""
	walkNodes(n, func(m *pg_query.Node) {
		switch c := columnOf(m, sc); {
		case found != "":
		case isArithmetic(m) || (m.GetFuncCall() != nil && funcName(m.GetFuncCall()) == "trunc"):
			// numeric however deep: trunc(age * 1e12 * ...) is as large
			found = "arithmetic on columns"
		case c != nil && c.Type == "numeric":
			found = "numeric column " + c.Name
		}
	})
	return found
}

// floatIn describes a floating-point column or cast within n, or "".
func floatIn(n *pg_query.Node, sc *scope) string {
	found := ""
	walkNodes(n, func(m *pg_query.Node) {
		switch c := columnOf(m, sc); {
		case found != "":
		case c != nil && isFloat(c.Type):
			found = c.Type + " column " + c.Name
		case m.GetTypeCast() != nil && isFloatType(m.GetTypeCast().TypeName):
			found = "a double precision value"
		}
	})
	return found
}

// walkNodes calls f on n and every expression below it that the WHERE
// checker admits (operators, lists, function arguments, casts, coalesce).
func walkNodes(n *pg_query.Node, f func(*pg_query.Node)) {
	if n == nil {
		return
	}
	f(n)
	switch e := n.Node.(type) {
	case *pg_query.Node_AExpr:
		walkNodes(e.AExpr.Lexpr, f)
		walkNodes(e.AExpr.Rexpr, f)
	case *pg_query.Node_List:
		for _, item := range e.List.Items {
			walkNodes(item, f)
		}
	case *pg_query.Node_FuncCall:
		for _, arg := range e.FuncCall.Args {
			walkNodes(arg, f)
		}
	case *pg_query.Node_CoalesceExpr:
		for _, arg := range e.CoalesceExpr.Args {
			walkNodes(arg, f)
		}
	case *pg_query.Node_TypeCast:
		walkNodes(e.TypeCast.Arg, f)
	}
}

func isFloatType(tn *pg_query.TypeName) bool {
	return typeNameIs(tn, "float8") || typeNameIs(tn, "float4") || typeNameIs(tn, "real") || typeNameIs(tn, "double precision")
}

// isFloatConst: a constant cast to real or double precision.
func isFloatConst(n *pg_query.Node) bool {
	tc := n.GetTypeCast()
	return tc != nil && tc.Arg.GetAConst() != nil && isFloatType(tc.TypeName)
}

// floatConstToNumeric: isFloatConst cast on to numeric.
func floatConstToNumeric(n *pg_query.Node) bool {
	tc := n.GetTypeCast()
	return tc != nil && typeNameIs(tc.TypeName, "numeric") && isFloatConst(tc.Arg)
}

func columnOf(n *pg_query.Node, sc *scope) *policy.Column {
	if cr := n.GetColumnRef(); cr != nil {
		if c, err := sc.column(cr); err == nil {
			return c
		}
	}
	return nil
}

func isFloat(typ string) bool { return typ == "real" || typ == "double precision" }

// paramUses are, per bound parameter, the comparisons it takes part in
// (keyed by the parameter's node in the statement) and what it is
// compared with there. A DP statement's parameters go upstream untyped
// (wire/dpparams.go), and PostgreSQL gives each one type: that of the
// first comparison it analyses. In any other comparison the parameter then
// has that type, and a column there may be converted to it on each row
// the condition reaches: a numeric column to double precision when a
// float column typed the parameter, a date to timestamp when a timestamp
// column did. Those conversions fail on some values, so whether the query
// failed would depend on a private row (reproduced: WHERE discount > $1
// AND amount > $1, discount double precision, a row with amount 1e400).
// Parameters compared with one another ($1 = $2, IN ($1, $2),
// coalesce($1, $2)) share their type, so they are checked as one group
// (linked, a union-find).
type paramUses struct {
	uses   map[int32]map[*pg_query.Node]paramUse
	linked map[int32]int32
}

func newParamUses() *paramUses {
	return &paramUses{uses: map[int32]map[*pg_query.Node]paramUse{}, linked: map[int32]int32{}}
}

// group is the representative of n's group.
func (pu *paramUses) group(n int32) int32 {
	for {
		up, ok := pu.linked[n]
		if !ok || up == n {
			return n
		}
		n = up
	}
}

func (pu *paramUses) link(a, b int32) {
	if ra, rb := pu.group(a), pu.group(b); ra != rb {
		pu.linked[ra] = rb
	}
}

// paramUse is what one occurrence of a parameter is compared with: the
// types of the columns and constants beside it, and whether anything else
// (an expression, a typed cast) takes part, whose type dpproxy does not
// work out. Other parameters and string literals beside it are untyped
// and take the same type, so they add nothing. plain is set when every
// comparison the occurrence was seen in is a binary operator with one
// column: there a date and a timestamp compare through PostgreSQL's
// cross-type operators, which convert neither side.
type paramUse struct {
	types []string
	other bool
	plain bool
}

// noteParams records the parameters among leaves, the values one
// comparison compares (comparisonLeaves); also, when not "", the type of a
// column they are compared with outside leaves (an IN subquery's column).
// plain says the comparison is a binary operator (=, <, ...). A parameter
// used in several comparisons is accepted only when every one compares it
// with columns and constants alone, of types that any of them may type it
// by without converting the others on their rows (paramTypesAgree). An
// occurrence seen again (a coalesce inside a comparison) adds to what it
// was seen with before.
func (sc *scope) noteParams(leaves []*pg_query.Node, also string, plain bool) error {
	pu := sc.params
	if pu == nil {
		return nil
	}
	var params []*pg_query.ParamRef
	for _, n := range leaves {
		if p := n.GetParamRef(); p != nil {
			params = append(params, p)
			pu.link(params[0].Number, p.Number)
		}
	}
	for _, n := range leaves {
		p := n.GetParamRef()
		if p == nil {
			continue
		}
		uses := pu.uses[p.Number]
		if uses == nil {
			uses = map[*pg_query.Node]paramUse{}
			pu.uses[p.Number] = uses
		}
		use, seen := uses[n]
		use.plain = (use.plain || !seen) && plain && also == "" && len(leaves) == 2
		if also != "" {
			use.types = append(use.types, also)
		}
		for _, m := range leaves {
			if m == n {
				continue
			}
			switch t := partnerType(m, sc); t {
			case "":
			case "?":
				use.other = true
			default:
				use.types = append(use.types, t)
			}
		}
		uses[n] = use
	}
	for _, p := range params {
		if err := pu.check(p.Number); err != nil {
			return err
		}
	}
	return nil
}

// check refuses n's group of parameters when its occurrences, together,
// do not agree (noteParams).
func (pu *paramUses) check(n int32) error {
	g := pu.group(n)
	var types, names []string
	count, other, plainOnly := 0, false, true
	for num, uses := range pu.uses {
		if pu.group(num) != g {
			continue
		}
		names = append(names, fmt.Sprintf("$%d", num))
		for _, u := range uses {
			count++
			types = append(types, u.types...)
			other = other || u.other
			plainOnly = plainOnly && u.plain
		}
	}
	if count < 2 {
		return nil
	}
	slices.Sort(names)
	what, it := "parameter "+names[0]+" is", "it"
	if len(names) > 1 {
		what, it = "parameters "+strings.Join(names, " and ")+" (compared with one another) are", "them"
	}
	if other {
		return pgerror.RefuseUnsupported.New("%s used in several comparisons, not all of them with columns and constants alone: PostgreSQL gives %s one type, which could make it convert a column on each row, which fails on some values", what, it).
			WithHint("bind a separate parameter for each comparison, e.g. WHERE a > $1 AND b > $2")
	}
	if !paramTypesAgree(types, plainOnly) {
		return pgerror.RefuseUnsupported.New("%s compared with values of different types (%s): PostgreSQL gives %s the type of one of them and would convert the others' columns on each row, which fails on some values",
			what, strings.Join(slices.Compact(slices.Sorted(slices.Values(types))), ", "), it).
			WithHint("bind a separate parameter for each comparison, e.g. WHERE a > $1 AND b > $2")
	}
	return nil
}

// partnerType is the type a value beside a parameter gives it: a column's
// type, "integer" or "numeric" for a number, "boolean"; "" for what takes
// the parameter's type itself (another parameter, a string literal, NULL);
// "?" for anything else.
func partnerType(n *pg_query.Node, sc *scope) string {
	if c := columnOf(n, sc); c != nil {
		return c.Type
	}
	switch e := n.GetNode().(type) {
	case *pg_query.Node_ParamRef:
		return ""
	case *pg_query.Node_AConst:
		switch {
		case e.AConst.Isnull, e.AConst.GetSval() != nil:
			return ""
		case e.AConst.GetIval() != nil:
			return "integer"
		case e.AConst.GetFval() != nil:
			return "numeric"
		case e.AConst.GetBoolval() != nil:
			return "boolean"
		}
	}
	return "?"
}

// paramTypesAgree reports whether columns of these types can all be
// compared with one parameter, whichever of them types it: all of one
// type, or integers beside numeric (an integer widens to numeric exactly)
// or beside real and double precision (integers and the two floats
// compare without a conversion that can fail); with plain, dates and
// timestamps of any kind too (binary comparisons of two date/time types
// use cross-type operators that do not convert; in IN lists and coalesce
// PostgreSQL would convert the column).
func paramTypesAgree(types []string, plain bool) bool {
	if len(slices.Compact(slices.Sorted(slices.Values(types)))) <= 1 {
		return true
	}
	var numeric, float, datetime, other bool
	for _, t := range types {
		switch {
		case t == "smallint", t == "integer", t == "bigint":
		case t == "numeric":
			numeric = true
		case isFloat(t):
			float = true
		case t == "date", t == "timestamp", t == "timestamptz":
			datetime = true
		default:
			other = true
		}
	}
	if datetime {
		return plain && !numeric && !float && !other && slices.IndexFunc(types, func(t string) bool {
			return t != "date" && t != "timestamp" && t != "timestamptz"
		}) < 0
	}
	return !other && !(numeric && float)
}

// checkParamReuse refuses a parameter that occurs more than once in the
// statement unless noteParams saw every occurrence, each in a comparison
// with columns: anywhere else (a cast, a function's argument, HAVING) it
// could take a type of its own first.
func (sc *scope) checkParamReuse(sel *pg_query.SelectStmt) error {
	counts := map[int32]int{}
	walkMessages(sel.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.ParamRef:
			counts[x.Number]++
			return false
		case *pg_query.NullTest:
			// $1 IS NULL gives $1 no type (untypedParam checks the order
			// of the rewritten statement).
			return x.Arg.GetParamRef() == nil
		}
		return true
	})
	for num, n := range counts {
		if n > 1 && len(sc.params.uses[num]) != n {
			return pgerror.RefuseUnsupported.New("parameter $%d is used %d times, not only in comparisons with columns: PostgreSQL gives it one type, which could make it convert a column on each row, which fails on some values", num, n).
				WithHint("bind a separate parameter for each use, e.g. WHERE a > $1 AND b > $2")
		}
	}
	return nil
}
