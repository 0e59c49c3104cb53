package wire

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dpproxy/dpproxy/policy"
)

// Declared column types.
//
// The rewriter's rules against errors that depend on a row (a numeric
// column compared in numeric, a date never converted to a timestamp,
// arithmetic only on integers) rest on the types the policy declares. A
// policy that calls a double precision column numeric would let through
// the very comparisons those rules refuse. So the server reads every
// policy table's column types when it starts, on each reload and every
// catalogRefreshInterval (WatchCatalog), and the rewriter refuses
// statements that use a column whose declared type differs or whose
// collation is nondeterministic, or that read a table missing upstream
// (DP022); it also keeps columns of two different non-default collations
// from being compared (rewrite/comparison.go). When the catalog cannot be
// read, the last verdicts stand for tables declared as they were; any
// other table is refused until a read succeeds.

// columnTypesSQL lists the columns of the given tables with their types as
// policies name them: a domain as its base type, an enum as text.
const columnTypesSQL = `SELECT n.nspname, c.relname, a.attname,
       CASE WHEN t.typtype = 'e' THEN 'text'
            ELSE pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, a.atttypmod) END,
       COALESCE((SELECT NOT co.collisdeterministic FROM pg_catalog.pg_collation co WHERE co.oid = a.attcollation), false),
       CASE WHEN a.attcollation IN (0, 100) THEN '' ELSE a.attcollation::text END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN unnest($1::text[], $2::text[]) AS p(schema, name) ON p.schema = n.nspname AND p.name = c.relname
WHERE a.attnum > 0 AND NOT a.attisdropped`

// withColumnTypes returns pol with the tables and columns whose declared
// types differ upstream marked, and the columns' non-default collations;
// prev is the policy in force (nil at start), whose verdicts stand if the
// catalog cannot be read.
func (s *Server) withColumnTypes(ctx context.Context, pol, prev *policy.Policy) *policy.Policy {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	actual, err := s.readColumnTypes(ctx, pol)
	if err != nil {
		s.log.Warn("cannot read column types upstream; the last verdicts stand, tables never checked are refused until they are read", "err", err)
		return pol.CarryColumnTypes(prev, "its column types could not be read from the upstream database; dpproxy retries every "+catalogRefreshInterval.String())
	}
	tables, columns, collations := columnTypeProblems(pol, actual)
	for _, t := range pol.Tables {
		if why := tables[t.QualifiedName()]; why != "" && (prev == nil || why != prev.TypeProblem(t)) {
			s.log.Error("a policy table is not in the database as declared; statements over it are refused", "table", t.QualifiedName(), "problem", why)
		}
		for _, c := range t.Columns {
			if why := columns[policy.ProvenKey(t, c.Name)]; why != "" && (prev == nil || why != prev.ColumnTypeProblem(t, c.Name)) {
				s.log.Error("policy declares a column type the database does not have; statements using the column are refused",
					"table", t.QualifiedName(), "column", c.Name, "problem", why)
			}
		}
	}
	return pol.WithColumnTypes(tables, columns, collations).WithUpstreamColumns(upstreamColumnTypes(actual))
}

// upstreamColumnTypes lists each table's upstream columns with their types
// (policy.WithUpstreamColumns).
func upstreamColumnTypes(actual map[string]map[string]upstreamColumn) map[string]map[string]string {
	out := map[string]map[string]string{}
	for table, cols := range actual {
		out[table] = map[string]string{}
		for c, up := range cols {
			out[table][c] = up.typ
		}
	}
	return out
}

// upstreamColumn is what the catalog says of a column.
type upstreamColumn struct {
	typ string // format_type's text
	// nondeterministic: its collation compares some different strings as
	// equal (case-insensitive ICU collations).
	nondeterministic bool
	collation        string // its OID when not the database default, or ""
}

// readColumnTypes maps schema.table to column to what the catalog says.
func (s *Server) readColumnTypes(ctx context.Context, pol *policy.Policy) (map[string]map[string]upstreamColumn, error) {
	if len(pol.Tables) == 0 {
		return nil, nil
	}
	conn, err := s.cfg.Upstream.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	schemas := make([]string, len(pol.Tables))
	names := make([]string, len(pol.Tables))
	for i, t := range pol.Tables {
		schemas[i], names[i] = t.Schema, t.Name
	}
	rows, _ := conn.Query(ctx, columnTypesSQL, schemas, names)
	actual := map[string]map[string]upstreamColumn{}
	var schema, table, column string
	var up upstreamColumn
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &column, &up.typ, &up.nondeterministic, &up.collation}, func() error {
		key := schema + "." + table
		if actual[key] == nil {
			actual[key] = map[string]upstreamColumn{}
		}
		actual[key][column] = up
		return nil
	})
	return actual, err
}

// columnTypeProblems compares each declared column with its upstream type
// (format_type's text): problems of whole tables by QualifiedName, of
// columns by policy.ProvenKey, and non-default collations by ProvenKey.
func columnTypeProblems(pol *policy.Policy, actual map[string]map[string]upstreamColumn) (tables, columns, collations map[string]string) {
	tables, columns, collations = map[string]string{}, map[string]string{}, map[string]string{}
	for _, t := range pol.Tables {
		cols, ok := actual[t.QualifiedName()]
		if !ok {
			tables[t.QualifiedName()] = "it does not exist upstream, or the proxy's database role cannot see it"
			continue
		}
		for _, c := range t.Columns {
			up, ok := cols[c.Name]
			switch canon, known := policy.CanonicalType(up.typ); {
			case !ok:
				columns[policy.ProvenKey(t, c.Name)] = "it does not exist upstream"
			case !known || canon != c.Type:
				columns[policy.ProvenKey(t, c.Name)] = fmt.Sprintf("it is %s in the policy but %s upstream", c.Type, up.typ)
			case up.nondeterministic:
				// DISTINCT ON a public column and a join on a private one
				// would compare by different rules, so a join could match
				// one private row to several public ones.
				columns[policy.ProvenKey(t, c.Name)] = "its collation is nondeterministic (e.g. case-insensitive), which dpproxy does not support"
			case up.collation != "":
				collations[policy.ProvenKey(t, c.Name)] = up.collation
			}
		}
	}
	return tables, columns, collations
}
