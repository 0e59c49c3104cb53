package wire

import (
	"context"
	"fmt"
	"strings"
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
// catalogRefreshInterval, and the rewriter refuses statements over a table
// whose declared types differ (DP022). A table that does not exist
// upstream is left alone: statements over it fail upstream whatever its
// rows.

// columnTypesSQL lists the columns of the given tables with their types as
// policies name them: a domain as its base type, an enum as text.
const columnTypesSQL = `SELECT n.nspname, c.relname, a.attname,
       CASE WHEN t.typtype = 'e' THEN 'text'
            ELSE pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, a.atttypmod) END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN unnest($1::text[], $2::text[]) AS p(schema, name) ON p.schema = n.nspname AND p.name = c.relname
WHERE a.attnum > 0 AND NOT a.attisdropped`

// withColumnTypes returns pol with the tables whose declared column types
// differ upstream marked. If the catalog cannot be read, every table is
// marked: the declared types are then unverified.
func (s *Server) withColumnTypes(ctx context.Context, pol *policy.Policy) *policy.Policy {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	actual, err := s.readColumnTypes(ctx, pol)
	if err != nil {
		s.log.Error("cannot read column types upstream; statements over policy tables are refused until they are read", "err", err)
		problems := map[string]string{}
		for _, t := range pol.Tables {
			problems[t.QualifiedName()] = "its column types could not be read from the upstream database; dpproxy retries every " + catalogRefreshInterval.String()
		}
		return pol.WithColumnTypes(problems)
	}
	problems := columnTypeProblems(pol, actual)
	for _, t := range pol.Tables {
		if why := problems[t.QualifiedName()]; why != "" && why != pol.TypeProblem(t) { // each problem logged once
			s.log.Error("policy declares a column type the database does not have; statements over the table are refused", "table", t.QualifiedName(), "problem", why)
		}
	}
	return pol.WithColumnTypes(problems)
}

// readColumnTypes maps schema.table to column to upstream type.
func (s *Server) readColumnTypes(ctx context.Context, pol *policy.Policy) (map[string]map[string]string, error) {
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
	actual := map[string]map[string]string{}
	var schema, table, column, typ string
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &column, &typ}, func() error {
		key := schema + "." + table
		if actual[key] == nil {
			actual[key] = map[string]string{}
		}
		actual[key][column] = typ
		return nil
	})
	return actual, err
}

// columnTypeProblems compares each declared column with its upstream type
// (format_type's text); tables missing upstream are skipped.
func columnTypeProblems(pol *policy.Policy, actual map[string]map[string]string) map[string]string {
	problems := map[string]string{}
	for _, t := range pol.Tables {
		cols, ok := actual[t.QualifiedName()]
		if !ok {
			continue
		}
		var wrong []string
		for _, c := range t.Columns {
			up, ok := cols[c.Name]
			switch canon, known := policy.CanonicalType(up); {
			case !ok:
				wrong = append(wrong, fmt.Sprintf("column %s does not exist upstream", c.Name))
			case !known || canon != c.Type:
				wrong = append(wrong, fmt.Sprintf("column %s is %s in the policy but %s upstream", c.Name, c.Type, up))
			}
		}
		if len(wrong) > 0 {
			problems[t.QualifiedName()] = strings.Join(wrong, "; ")
		}
	}
	return problems
}
