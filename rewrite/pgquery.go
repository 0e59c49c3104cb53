package rewrite

import (
	"errors"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/dpproxy/dpproxy/pgerror"
)

// Limits checked before the parser sees a statement.
const (
	MaxStatementBytes = 64 << 10
	MaxNestingDepth   = 64
)

// parse parses sql into raw statements after checking the limits.
func parse(sql string) ([]*pg_query.RawStmt, error) {
	if len(sql) > MaxStatementBytes {
		return nil, pgerror.RefuseTooLarge.New("statement is %d bytes, more than the limit of %d", len(sql), MaxStatementBytes)
	}
	if d := nestingDepth(sql); d > MaxNestingDepth {
		return nil, pgerror.RefuseTooLarge.New("statement nests parentheses %d deep, more than the limit of %d", d, MaxNestingDepth)
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		var pe *pgparser.Error
		if errors.As(err, &pe) {
			return nil, pgerror.RefuseSyntax.New("%s", pe.Message).WithPosition(int32(pe.Cursorpos))
		}
		return nil, pgerror.RefuseSyntax.New("%s", err.Error())
	}
	parseTreeVersion.Store(tree.Version)
	return tree.Stmts, nil
}

// parseTreeVersion is the protobuf tree version libpg_query stamps on its
// parse results; Deparse insists on getting it back.
var parseTreeVersion atomic.Int32

// deparse turns one statement back into SQL.
func deparse(stmt *pg_query.Node) (string, error) {
	return pg_query.Deparse(&pg_query.ParseResult{Version: parseTreeVersion.Load(), Stmts: []*pg_query.RawStmt{{Stmt: stmt}}})
}

// nestingDepth returns the deepest parenthesis nesting outside string
// literals, quoted identifiers and comments. It over-approximates for
// dollar-quoted strings, which only makes the limit stricter.
func nestingDepth(sql string) int {
	depth, maxDepth := 0, 0
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; c {
		case '(', '[':
			depth++
			maxDepth = max(maxDepth, depth)
		case ')', ']':
			if depth > 0 {
				depth--
			}
		case '\'', '"':
			for i++; i < len(sql) && sql[i] != c; i++ {
			}
		case '-':
			if i+1 < len(sql) && sql[i+1] == '-' {
				for i < len(sql) && sql[i] != '\n' {
					i++
				}
			}
		case '/':
			if i+1 < len(sql) && sql[i+1] == '*' {
				// Postgres block comments nest.
				level := 0
				for ; i+1 < len(sql); i++ {
					if sql[i] == '/' && sql[i+1] == '*' {
						level++
						i++
					} else if sql[i] == '*' && sql[i+1] == '/' {
						level--
						i++
						if level == 0 {
							break
						}
					}
				}
			}
		}
	}
	return maxDepth
}
