package pgerror

import "fmt"

// Refusal is one entry of dpproxy's numbered catalogue of refusals. IDs are
// stable: never renumber or reuse one; retire it instead.
type Refusal struct {
	ID      string // "DP001"
	Code    string // SQLSTATE sent to the client
	Summary string // what was refused, for the README table
	Hint    string // default HINT: what would work instead
}

// Catalogue lists every refusal in ID order. It is the source of the README's
// error table.
var Catalogue []Refusal

func register(r Refusal) Refusal {
	Catalogue = append(Catalogue, r)
	return r
}

// New returns an error for this refusal with a specific message and the
// refusal's default hint.
func (r Refusal) New(format string, args ...any) *Error {
	return &Error{Code: r.Code, ID: r.ID, Message: fmt.Sprintf(format, args...), Hint: r.Hint}
}

// Wrap is New with a cause kept for logs (never shown to the analyst).
func (r Refusal) Wrap(err error, format string, args ...any) *Error {
	e := r.New(format, args...)
	e.cause = err
	return e
}

// The catalogue. Hints say what would work.
var (
	RefusePrivateColumn = register(Refusal{"DP001", CodeInsufficientPrivilege,
		"a private column is selected outside an aggregate",
		"use an aggregate such as count(*), sum(col) or avg(col) over private columns"})
	RefuseWrite = register(Refusal{"DP002", CodeReadOnlySQLTransaction,
		"the statement would write or change the schema",
		"dpproxy answers read-only aggregate queries; run changes directly against the database as its owner"})
	RefuseUnsupported = register(Refusal{"DP003", CodeFeatureNotSupported,
		"the statement uses SQL that dpproxy does not recognise as safe",
		"rewrite the query as SELECT <aggregates> FROM <table> [WHERE ...]; see the analyst guide for what is supported"})
	RefuseUnknownTable = register(Refusal{"DP004", CodeUndefinedTable,
		"the table is not declared in the policy",
		"ask the DBA to add the table to the dpproxy policy, or query a table listed by \\dt"})
	RefuseUnknownColumn = register(Refusal{"DP005", CodeUndefinedColumn,
		"the column is not declared in the policy",
		"use a column declared in the policy for this table"})
	RefuseBudgetExhausted = register(Refusal{"DP006", CodeConfigurationLimitExceeded,
		"the analyst's privacy budget cannot pay for the query",
		"lower the cost with SET dp.epsilon = <smaller value>, or ask the DBA for more budget"})
	RefuseLedgerUnavailable = register(Refusal{"DP007", CodeSystemError,
		"the privacy ledger cannot be reached, so nothing can be charged",
		"retry later; the DBA should check the ledger (file or Redis) named in the policy"})
	RefuseUpstreamFailed = register(Refusal{"DP008", CodeSystemError,
		"the rewritten query failed in the database; its error text is withheld because it could depend on private rows",
		"the charge stands; simplify the query or ask the DBA to check the upstream database"})
	RefuseSyntax = register(Refusal{"DP009", CodeSyntaxError,
		"the statement does not parse as PostgreSQL",
		"fix the syntax error at the position shown"})
	RefuseTooLarge = register(Refusal{"DP010", CodeStatementTooComplex,
		"the statement is too large or too deeply nested to parse safely",
		"split the statement or reduce the nesting of expressions"})
	RefuseAuth = register(Refusal{"DP011", CodeInvalidPassword,
		"password authentication failed",
		""})
	RefuseFunction = register(Refusal{"DP012", CodeInsufficientPrivilege,
		"a function or operator is not on dpproxy's allowlist",
		"use plain comparisons, arithmetic and the documented functions; see the analyst guide"})
	RefuseSetting = register(Refusal{"DP013", CodeInvalidParameterValue,
		"a dp.* setting has an invalid value or exceeds the policy's cap",
		"SET dp.epsilon to a positive number no larger than the per-query cap shown by SHOW dp.max_epsilon"})
	RefuseCatalog = register(Refusal{"DP014", CodeInsufficientPrivilege,
		"the query reads statistics or catalog data that could reveal private rows",
		"schema metadata (pg_class names, pg_attribute, information_schema.columns) is allowed; statistics are not"})
	RefuseHiddenColumn = register(Refusal{"DP015", CodeInsufficientPrivilege,
		"the column is hidden by the policy",
		"hidden columns cannot be used at all, not even inside aggregates or WHERE"})
	RefuseNoBounds = register(Refusal{"DP016", CodeFeatureNotSupported,
		"the aggregate needs bounds the policy does not declare for this column",
		"ask the DBA to declare bounds for the column, or use count(*)"})
	RefuseTransaction = register(Refusal{"DP017", CodeInFailedSQLTransaction,
		"current transaction is aborted, commands ignored until end of transaction block",
		"ROLLBACK to leave the failed transaction"})
	RefuseProtocol = register(Refusal{"DP018", CodeProtocolViolation,
		"the client sent a protocol message dpproxy does not accept",
		"use the simple or extended query protocol as a standard Postgres driver does"})
	RefuseTooManyConnections = register(Refusal{"DP019", CodeTooManyConnections,
		"the proxy or the analyst has too many connections",
		"close idle connections or ask the DBA to raise the limit"})
	RefuseShutdown = register(Refusal{"DP020", CodeAdminShutdown,
		"the proxy is shutting down",
		"reconnect; another proxy node or the restarted proxy will answer"})
	RefuseNoDelta = register(Refusal{"DP021", CodeInsufficientPrivilege,
		"a GROUP BY key has no public domain, so releasing its groups needs a delta budget the analyst does not have",
		"group by columns with a public domain in the policy, or ask the DBA for a delta budget"})
	RefuseTypeMismatch = register(Refusal{"DP022", CodeDatatypeMismatch,
		"a table or column is not in the database as the policy declares it (another type, a nondeterministic collation, missing, or unreadable), so dpproxy cannot tell which conditions are safe",
		"the DBA should correct the column's type in the policy (dpproxy policy init prints the database's types) and reload it"})
	RefuseInvalidLiteral = register(Refusal{"DP023", CodeInvalidTextRepresentation,
		"a quoted constant compared with a column is not a valid value of the column's type, which PostgreSQL would report only after the statement was charged",
		"write the constant as a valid value of the column's type, e.g. 42, 1.5, true or '2025-01-31'"})
)
