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

// Bound parameters of DP statements go upstream untyped (wire/dpparams.go),
// so PostgreSQL types each one by its first use. The rules here keep that
// type from converting a column on the rows a condition reaches
// (noteParams, checkParamReuse) and from being missing or wrong where the
// rewritten statement first uses the parameter (untypedParam).

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
	// members are each group's parameters, by representative: checks read
	// a group without scanning every parameter (a = $1 OR a = $2 OR …).
	members map[int32][]int32
}

func newParamUses() *paramUses {
	return &paramUses{uses: map[int32]map[*pg_query.Node]paramUse{}, linked: map[int32]int32{}, members: map[int32][]int32{}}
}

// group is the representative of n's group. The path is shortened as it
// is followed: IN ($1, …, $1000) links a thousand parameters.
func (pu *paramUses) group(n int32) int32 {
	root := n
	for {
		up, ok := pu.linked[root]
		if !ok || up == root {
			break
		}
		root = up
	}
	for n != root {
		up := pu.linked[n]
		pu.linked[n] = root
		n = up
	}
	return root
}

func (pu *paramUses) link(a, b int32) {
	for _, n := range []int32{a, b} {
		if _, known := pu.linked[n]; !known {
			pu.linked[n] = n
			pu.members[n] = []int32{n}
		}
	}
	if ra, rb := pu.group(a), pu.group(b); ra != rb {
		if len(pu.members[ra]) > len(pu.members[rb]) {
			ra, rb = rb, ra
		}
		pu.linked[ra] = rb
		pu.members[rb] = append(pu.members[rb], pu.members[ra]...)
		delete(pu.members, ra)
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
	// One group: they were linked above.
	if len(params) > 0 {
		return pu.check(params[0].Number)
	}
	return nil
}

// check refuses n's group of parameters when its occurrences, together,
// do not agree (noteParams).
func (pu *paramUses) check(n int32) error {
	var types, names []string
	count, other, plainOnly := 0, false, true
	for _, num := range pu.members[pu.group(n)] {
		uses := pu.uses[num]
		if uses == nil {
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
		case policy.IsIntegerType(t):
		case t == "numeric":
			numeric = true
		case isFloat(t):
			float = true
		case policy.IsDateTimeType(t):
			datetime = true
		default:
			other = true
		}
	}
	if datetime {
		// Only dates and timestamps, and only in binary comparisons.
		return plain && !numeric && !float && !other && !slices.ContainsFunc(types, policy.IsIntegerType)
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

// untypedParam finds a parameter whose first use in sql, in the order
// PostgreSQL analyses it, gives it no type fit for its other uses: a test
// for NULL ($1 IS NULL, $1 IS DISTINCT FROM NULL), which leaves it untyped
// and makes PostgreSQL refuse the statement, or a comparison with
// untyped values alone ($1 = $2, $1 = 'x'), which makes it text, when
// params records a comparison of it (or of a parameter compared with it)
// with something else. The rewriter's reordering of conditions (sampled
// plans) can bring such a use first even when the analyst's order was
// fine, and the statement would fail upstream after its charge. It
// returns 0 for none.
func untypedParam(sql string, params *paramUses) int32 {
	raws, err := parse(sql)
	if err != nil || len(raws) != 1 {
		return 0
	}
	seen := map[int32]bool{}
	var untyped int32
	first := func(n int32, typed bool) {
		if !seen[n] && untyped == 0 && (!typed || params.typedOtherThanText(n)) {
			untyped = n
		}
	}
	inAnalysisOrder(raws[0].Stmt.ProtoReflect(), func(m protoreflect.Message) bool {
		switch x := m.Interface().(type) {
		case *pg_query.ParamRef:
			seen[x.Number] = true
			return false
		case *pg_query.NullTest:
			if p := x.Arg.GetParamRef(); p != nil {
				first(p.Number, false)
				return false
			}
		case *pg_query.A_Expr:
			leaves := comparisonLeaves(x.Lexpr, x.Rexpr)
			isNull := x.Kind == pg_query.A_Expr_Kind_AEXPR_DISTINCT || x.Kind == pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT
			untypedOnly := true
			for _, l := range leaves {
				c := l.GetAConst()
				switch p := l.GetParamRef(); {
				case p != nil && seen[p.Number]:
					// Typed already: it types the others.
					isNull, untypedOnly = false, false
				case p != nil:
				case c != nil && c.Isnull:
				case c != nil && c.GetSval() != nil:
					isNull = false
				default:
					isNull, untypedOnly = false, false
				}
			}
			if untypedOnly {
				for _, l := range leaves {
					if p := l.GetParamRef(); p != nil {
						first(p.Number, !isNull)
					}
				}
			}
		}
		return true
	})
	return untyped
}

// typedOtherThanText reports whether n, or a parameter compared with it,
// is compared with a column or constant of a type other than text.
func (pu *paramUses) typedOtherThanText(n int32) bool {
	if pu == nil {
		return true
	}
	for _, num := range pu.members[pu.group(n)] {
		for _, u := range pu.uses[num] {
			if u.other {
				return true
			}
			for _, t := range u.types {
				if t != "text" && !strings.HasPrefix(t, "character") && t != "varchar" {
					return true
				}
			}
		}
	}
	return false
}

// types are, by parameter number, the one type each parameter is
// compared with (Plan.ParamTypes); a parameter compared with several, or
// with something else than columns and constants, or with nothing noted,
// is left out.
func (pu *paramUses) types() map[int32]string {
	if pu == nil || len(pu.uses) == 0 {
		return nil
	}
	type verdict struct {
		typ string
		one bool
	}
	groups := map[int32]*verdict{}
	for n, uses := range pu.uses {
		g := pu.group(n)
		v := groups[g]
		if v == nil {
			v = &verdict{one: true}
			groups[g] = v
		}
		for _, u := range uses {
			v.one = v.one && !u.other
			for _, t := range u.types {
				if v.typ != "" && t != v.typ {
					v.one = false
				}
				v.typ = t
			}
		}
	}
	out := map[int32]string{}
	for n := range pu.uses {
		if v := groups[pu.group(n)]; v.one && v.typ != "" {
			out[n] = v.typ
		}
	}
	return out
}

// InvalidParamValue says why PostgreSQL would refuse the text of a bound
// value for parameter n (1-based) of the plan, or "": the same judgement
// as for quoted constants (literalFails), made before the charge.
func (p *Plan) InvalidParamValue(n int, text string) string {
	typ := p.ParamTypes[int32(n)]
	if typ == "" {
		return ""
	}
	if why := literalFails(typ, text); why != "" {
		return fmt.Sprintf("%q is not a valid %s: %s", text, typ, why)
	}
	return ""
}
