package rewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

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
			if err != nil {
				return
			}
			var name, cc string
			if f := m.GetSqlvalueFunction(); f != nil && nameValueFunctions[f.Op] != "" {
				// current_user and the like are of type name, whose
				// collation is "C".
				name, cc = nameValueFunctions[f.Op], collationC
			} else if cr := m.GetColumnRef(); cr != nil {
				c, rel, rerr := sc.resolve(cr)
				if rerr != nil {
					return
				}
				name, cc = "column "+c.Name, sc.pol.ColumnCollation(rel.table, c.Name)
			}
			switch {
			case cc == "":
			case coll == "":
				coll = cc
			case cc != coll:
				err = pgerror.RefuseUnsupported.New("%s has another collation than the value it is compared with: PostgreSQL cannot choose one, and would fail on the rows it compares", name).
					WithHint("compare values of the same collation, or compare with constants")
			}
		})
	}
	return err
}

// collationC is the OID of the "C" collation, as policy.ColumnCollation
// names collations.
const collationC = "950"

// nameValueFunctions return the type name, collated "C".
var nameValueFunctions = map[pg_query.SQLValueFunctionOp]string{
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE: "current_role", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER: "current_user",
	pg_query.SQLValueFunctionOp_SVFOP_USER: "user", pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER: "session_user",
	pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG: "current_catalog", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA: "current_schema",
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
	if err := checkLiterals(leaves, "", sc); err != nil {
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
// it; or a numeric constant beyond double precision's range, which a
// coalesce yields only on the rows where its columns are NULL
// (coalesce(a, 1e400) = f fails exactly there); "" otherwise.
func numericOperand(n *pg_query.Node, sc *scope) string {
	return firstBelow(n, func(m *pg_query.Node) string {
		switch c := columnOf(m, sc); {
		case isArithmetic(m) || (m.GetFuncCall() != nil && funcName(m.GetFuncCall()) == "trunc"):
			// numeric however deep: trunc(age * 1e12 * ...) is as large
			return "arithmetic on columns"
		case c != nil && c.Type == "numeric":
			return "numeric column " + c.Name
		case m.GetAConst().GetFval() != nil && floatLiteralFails(m.GetAConst().GetFval().Fval, "double precision") != "":
			return "constant " + m.GetAConst().GetFval().Fval + ", beyond double precision's range,"
		}
		return ""
	})
}

// floatIn describes a floating-point column or cast within n, or "".
func floatIn(n *pg_query.Node, sc *scope) string {
	return firstBelow(n, func(m *pg_query.Node) string {
		switch c := columnOf(m, sc); {
		case c != nil && isFloat(c.Type):
			return c.Type + " column " + c.Name
		case m.GetTypeCast() != nil && isFloatType(m.GetTypeCast().TypeName):
			return "a double precision value"
		}
		return ""
	})
}

// firstBelow is the first non-empty describe(m) over n and the expressions
// below it (walkNodes), or "".
func firstBelow(n *pg_query.Node, describe func(*pg_query.Node) string) string {
	found := ""
	walkNodes(n, func(m *pg_query.Node) {
		if found == "" {
			found = describe(m)
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
