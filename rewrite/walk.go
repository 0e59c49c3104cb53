package rewrite

import (
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
		if r.table != nil && sc.namesBySchema(i, r, names[0]+"."+names[1]) {
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
