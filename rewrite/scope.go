package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// scope is what column references in a query can resolve to: one private
// table under the name the query uses for it.
type scope struct {
	table *policy.Table
	alias string
}

func resolveFrom(from []*pg_query.Node, pol *policy.Policy) (*scope, error) {
	if len(from) != 1 {
		return nil, pgerror.RefuseUnsupported.New("joins are not supported yet: query one table at a time")
	}
	rv := from[0].GetRangeVar()
	if rv == nil {
		switch from[0].Node.(type) {
		case *pg_query.Node_JoinExpr:
			return nil, pgerror.RefuseUnsupported.New("joins are not supported yet: query one table at a time")
		case *pg_query.Node_RangeSubselect:
			return nil, pgerror.RefuseUnsupported.New("subqueries in FROM are not supported yet")
		case *pg_query.Node_RangeFunction:
			return nil, pgerror.RefuseFunction.New("set-returning functions in FROM are not allowed")
		}
		return nil, pgerror.RefuseUnsupported.New("unsupported FROM item")
	}
	if rv.Catalogname != "" {
		return nil, pgerror.RefuseUnsupported.New("cross-database references are not supported")
	}
	if !rv.Inh {
		return nil, pgerror.RefuseUnsupported.New("FROM ONLY is not supported")
	}
	t := pol.Table(rv.Schemaname, rv.Relname)
	if t == nil {
		name := rv.Relname
		if rv.Schemaname != "" {
			name = rv.Schemaname + "." + name
		}
		if strings.HasPrefix(rv.Schemaname, "pg_") || rv.Schemaname == "information_schema" || strings.HasPrefix(rv.Relname, "pg_") {
			return nil, pgerror.RefuseCatalog.New("catalog relation %s is not allowed in this query", name)
		}
		return nil, pgerror.RefuseUnknownTable.New("relation %q is not declared in the dpproxy policy", name)
	}
	if t.Privacy == policy.PrivacyPublic {
		return nil, pgerror.RefuseUnsupported.New("queries over public table %s alone are not supported yet", t.QualifiedName())
	}
	alias := t.Name
	if rv.Alias != nil {
		if len(rv.Alias.Colnames) > 0 {
			return nil, pgerror.RefuseUnsupported.New("column aliases in FROM are not supported")
		}
		alias = rv.Alias.Aliasname
	}
	return &scope{table: t, alias: alias}, nil
}

// column resolves a column reference against the scope.
func (sc *scope) column(cr *pg_query.ColumnRef) (*policy.Column, error) {
	var names []string
	for _, f := range cr.Fields {
		if _, star := f.Node.(*pg_query.Node_AStar); star {
			return nil, pgerror.RefusePrivateColumn.New("SELECT * would return the private rows of table %s", sc.table.QualifiedName())
		}
		names = append(names, f.GetString_().GetSval())
	}
	var col string
	switch len(names) {
	case 1:
		col = names[0]
	case 2:
		if names[0] != sc.alias {
			return nil, pgerror.RefuseUnknownColumn.New("missing FROM-clause entry for table %q", names[0])
		}
		col = names[1]
	case 3:
		if names[0] != sc.table.Schema || names[1] != sc.table.Name {
			return nil, pgerror.RefuseUnknownColumn.New("missing FROM-clause entry for table %q", names[0]+"."+names[1])
		}
		col = names[2]
	default:
		return nil, pgerror.RefuseUnknownColumn.New("improper qualified name %q", strings.Join(names, "."))
	}
	c := sc.table.Column(col)
	if c == nil {
		return nil, pgerror.RefuseUnknownColumn.New("column %q of table %s is not declared in the dpproxy policy", col, sc.table.QualifiedName())
	}
	if c.Hidden {
		return nil, pgerror.RefuseHiddenColumn.New("column %q of table %s is hidden by the policy", col, sc.table.QualifiedName())
	}
	return c, nil
}
