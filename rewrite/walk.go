package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walkMessages calls visit on m and, while visit returns true, on every
// message below it, in the order of the parse tree's fields.
func walkMessages(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !visit(m) {
		return
	}
	eachChild(m, func(c protoreflect.Message) { walkMessages(c, visit) })
}

// eachChild calls f on each message directly below m, in the order of
// m's fields.
func eachChild(m protoreflect.Message, f func(protoreflect.Message)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap() || fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				f(v.List().Get(i).Message())
			}
		default:
			f(v.Message())
		}
		return true
	})
}

// shortenNames rewrites schema-qualified column references below nodes
// (public.visits.cost, as BI tools write them for a table without an
// alias) to the table's own name (visits.cost): the rewritten SQL gives
// every table an alias, beside which PostgreSQL refuses the longer form,
// so the statement would fail upstream after its charge. Subqueries keep
// their names: their tables are written as the analyst wrote them (a view
// in FROM, whose table is aliased, shortens its own: addView).
func (sc *scope) shortenNames(nodes ...*pg_query.Node) {
	for _, n := range nodes {
		if n == nil {
			continue
		}
		walkMessages(n.ProtoReflect(), func(m protoreflect.Message) bool {
			switch x := m.Interface().(type) {
			case *pg_query.SubLink:
				sc.shortenNames(x.Testexpr) // its subquery names its own table
				return false
			case *pg_query.RangeSubselect, *pg_query.WithClause:
				return false
			case *pg_query.ColumnRef:
				sc.shortenName(x)
				return false
			}
			return true
		})
	}
}

func (sc *scope) shortenName(cr *pg_query.ColumnRef) {
	if len(cr.Fields) != 3 {
		return
	}
	var names [3]string
	for i, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return
		}
		names[i] = s.Sval
	}
	for i, r := range sc.relations() {
		if r.table != nil && !(i == 0 && sc.view) && r.alias == r.table.Name && names[0]+"."+names[1] == r.table.QualifiedName() {
			cr.Fields = []*pg_query.Node{pg_query.MakeStrNode(r.alias), cr.Fields[2]}
			return
		}
	}
}

// inAnalysisOrder calls visit on m and, while visit returns true, on the
// messages below it in about the order PostgreSQL's parse analysis meets
// them: a SELECT's WITH, FROM, select list, WHERE, GROUP BY, HAVING, ORDER
// BY and LIMIT; a sublink's subquery before its left side; anything else
// in the order of its fields, operands left to right.
func inAnalysisOrder(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !m.IsValid() || !visit(m) {
		return
	}
	nodes := func(ns ...*pg_query.Node) {
		for _, n := range ns {
			if n != nil {
				inAnalysisOrder(n.ProtoReflect(), visit)
			}
		}
	}
	switch x := m.Interface().(type) {
	case *pg_query.SelectStmt:
		if x.WithClause != nil {
			inAnalysisOrder(x.WithClause.ProtoReflect(), visit)
		}
		nodes(x.FromClause...)
		nodes(x.TargetList...)
		nodes(x.WhereClause)
		nodes(x.GroupClause...)
		nodes(x.HavingClause)
		nodes(x.SortClause...)
		nodes(x.LimitOffset, x.LimitCount)
		for _, arm := range []*pg_query.SelectStmt{x.Larg, x.Rarg} {
			if arm != nil {
				inAnalysisOrder(arm.ProtoReflect(), visit)
			}
		}
		return
	case *pg_query.SubLink:
		nodes(x.Subselect, x.Testexpr)
		return
	}
	eachChild(m, func(c protoreflect.Message) { inAnalysisOrder(c, visit) })
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
	g := pu.group(n)
	for num, uses := range pu.uses {
		if pu.group(num) != g {
			continue
		}
		for _, u := range uses {
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
