package rewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// readsCatalog reports whether a SELECT's FROM names a system catalog
// relation (pg_catalog.*, information_schema.*, or an unqualified pg_*).
func readsCatalog(sel *pg_query.SelectStmt) bool {
	for _, n := range sel.FromClause {
		if rv := n.GetRangeVar(); rv != nil && isCatalogRelation(rv) {
			return true
		}
	}
	return false
}

func isCatalogRelation(rv *pg_query.RangeVar) bool {
	return rv.Schemaname == "pg_catalog" || rv.Schemaname == "information_schema" ||
		(rv.Schemaname == "" && strings.HasPrefix(rv.Relname, "pg_"))
}

// classifyCatalog decides whether an introspection query may run upstream
// as it is. Until the allowlist of schema-metadata relations and columns is
// written, every catalog query is refused.
func classifyCatalog(sel *pg_query.SelectStmt, text string, pol *policy.Policy) (*Statement, error) {
	return nil, pgerror.RefuseCatalog.New("catalog queries are not supported yet")
}
