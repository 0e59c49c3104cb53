package rewrite

// Kind is what a statement is, as far as dpproxy is concerned.
type Kind int

const (
	KindEmpty       Kind = iota // an empty query string
	KindSession                 // SET, SHOW, RESET, BEGIN, COMMIT, ... handled by the proxy
	KindPassthrough             // reads no private data (SELECT 1, allowed catalog queries): run upstream as is
	KindDP                      // an aggregate over private tables: charge, run the plan, add noise
	KindExplain                 // EXPLAIN of a DP query: describe the plan; no upstream contact, no charge
)

// Statement is one classified statement.
type Statement struct {
	Kind    Kind
	SQL     string   // the statement's own text
	Session *Session // for KindSession
	Plan    *Plan    // for KindDP
}

// Session is a session command the proxy answers itself.
type Session struct {
	Op    SessionOp
	Name  string // setting name, lower-case (SET/SHOW/RESET); savepoint name
	Value string // SET value as text
	Local bool   // SET LOCAL
	Tag   string // CommandComplete tag
}

// SessionOp is a kind of session command.
type SessionOp int

const (
	OpSet SessionOp = iota
	OpShow
	OpReset
	OpResetAll
	OpBegin
	OpCommit
	OpRollback
	OpSavepoint
	OpRelease
	OpRollbackTo
	OpDiscard
	OpDeallocate
)

// Plan is how a DP query is answered. The rewritten SQL returns one row per
// group: first the group keys, then the exact quantities. Noise is added to
// each quantity; everything after that (aggregates from quantities, output
// expressions, HAVING, ORDER BY, LIMIT) is post-processing.
type Plan struct {
	SQL        string
	Tables     []string   // schema.name of every table read
	Keys       []Key      // group keys; none without GROUP BY (then SQL returns exactly one row)
	Quantities []Quantity // noisy quantities, after the keys in SQL's columns
	Aggs       []Agg      // aggregates computed from quantities
	Outputs    []Output   // columns the analyst sees
	// Selection is set when some group key has no public domain: a group is
	// released only if its noisy count of privacy units passes a threshold,
	// which costs delta.
	Selection *Selection
	Having    *Expr
	Order     []Order
	Limit     int64 // -1: no LIMIT
	Offset    int64
	// UnitLevel is true when the table has a privacy unit; MaxGroups is the
	// most groups one unit contributes to (1 without GROUP BY or for
	// row-level tables).
	UnitLevel bool
	MaxGroups int
	// Shadow is set when a privacy-unit table is read through its
	// pre-bounded shadow copy (see planBuilder.useShadow); ShadowBound is
	// the comment the copy must carry (policy.Table.ShadowComment of the
	// policy the plan was made under), checked before the charge and again
	// in the statement's transaction (Guard).
	Shadow      bool
	ShadowBound string
	shadowCopy  string // the copy's quoted name, for Guard
	// Sampled, when positive, is the number of rows per privacy unit the
	// SQL keeps, chosen at random, before aggregating them row-level
	// (planBuilder.useSampling).
	Sampled int
	// Settings are planner settings the statement must run under, each
	// "name = value" for SET LOCAL in its transaction.
	Settings []string
	// UniqueUnit is set when a privacy-unit table is planned row-level
	// because its unit column is unique upstream (planBuilder.useUniqueUnit);
	// the caller must confirm the unique index in the query's snapshot
	// before releasing anything.
	UniqueUnit *UniqueUnit
	// ProvenBounds are the columns left unclamped because CHECK constraints
	// upstream keep them within bounds (rewrite/bounds.go); wire checks the
	// constraints again with the query (Guard).
	ProvenBounds []ProvenBound
	// Guard is the statement wire runs after SQL, in the same REPEATABLE
	// READ transaction, to check the catalog facts the plan relies on
	// (UniqueUnit, ProvenBounds); it must return true. "" when none.
	Guard string
	// Canonical is the whole plan in text (RenderPlan): the rewritten SQL
	// with every constant, the quantities, outputs, HAVING, ORDER BY and
	// LIMIT. Two statements with the same Canonical are answered by the same
	// mechanisms on the same data, so the answer cache keys by it: a repeat
	// written with other spacing, case or comments is still a repeat, while
	// statements that differ in any constant never share an answer.
	Canonical string
	// ParamTypes are, by parameter number, the types PostgreSQL will read
	// bound values in (or a wider one: an integer constant beyond 32 bits
	// counts as numeric, where PostgreSQL reads bigint), where the
	// statement compares the parameter with values of one type only: wire
	// refuses a value that is not one (InvalidParamValue) before the charge.
	ParamTypes map[int32]string

	sc *scope // the tables the query reads, for re-verification
}

// Key is a group key column.
type Key struct {
	Name   string
	Type   ResultType
	Domain []string // public domain (every group is answered, empty ones too); nil: partition selection
	// Padded: the column is character(n) upstream (the policy's text), whose
	// values group ignoring trailing spaces.
	Padded bool

	gen string // planning only: SQL to generate instead of the key as written
}

// Selection is DP partition selection over the groups.
type Selection struct {
	Units     int // quantity index of the exact count of privacy units in the group
	MaxGroups int // partitions one unit contributes to
}

// Quantity is one exact value the rewritten SQL returns, to which noise is
// added. Its ε is Weight × the query's ε; weights of a plan sum to 1.
type Quantity struct {
	Expr          string  // what it measures, for notices and explain
	L1Sensitivity float64 // over all groups, from the policy's bounds
	Granularity   float64
	Weight        float64
	NonNegative   bool // counts: clamp the noisy value at zero (post-processing)
	// Choice, when set, makes this quantity a selection by the exponential
	// mechanism over Choice.Columns SQL columns of counts, not a noisy value.
	Choice *Choice
	// Centre, when set, says the SQL returns the plain sum Σx of a centred
	// sum Σ(x - Mid): the centring is done once per query, exactly, from
	// Σx and the exact count n of the same values (quantity Count), as
	// Σx - Mid·n (answer.CentredSum), instead of once per row upstream.
	Centre *Centre
}

// Centre is how a centred sum is computed from the SQL's plain sum.
type Centre struct {
	Mid   string // the midpoint as an exact decimal
	Count int    // the quantity holding the exact count of the summed values
}

// Choice is a quantity answered by the exponential mechanism (report noisy
// max) over counts the rewritten SQL returns in consecutive columns.
type Choice struct {
	Kind   string    // ChoiceQuantile or ChoiceMode
	Q      float64   // quantile: the fraction, in [0, 1]
	Edges  []float64 // quantile: bucket edges over the column's bounds; len(Edges)-1 columns
	Domain []string  // mode: the public domain, one column per value
}

// Choice kinds.
const (
	ChoiceQuantile = "quantile"
	ChoiceMode     = "mode"
)

// Columns is how many SQL columns a quantity takes.
func (q Quantity) Columns() int {
	switch {
	case q.Choice == nil:
		return 1
	case q.Choice.Kind == ChoiceMode:
		return len(q.Choice.Domain)
	}
	return len(q.Choice.Edges) - 1
}

// Columns is how many quantity columns the rewritten SQL returns after the
// keys.
func (p *Plan) Columns() int {
	n := 0
	for _, q := range p.Quantities {
		n += q.Columns()
	}
	return n
}

// ColumnOffset is the index of quantity i's first column among the quantity
// columns.
func (p *Plan) ColumnOffset(i int) int {
	n := 0
	for _, q := range p.Quantities[:i] {
		n += q.Columns()
	}
	return n
}

// Aggregate kinds.
const (
	AggCount    = "count"
	AggSum      = "sum"
	AggAvg      = "avg"
	AggQuantile = "quantile" // percentile_cont / percentile_disc
	AggMode     = "mode"
)

// Agg is one aggregate of the query, computed from noisy quantities.
type Agg struct {
	Kind   string
	Text   string // as written, for notices
	Type   ResultType
	Value  int // quantity: the count or sum; for avg the centred sum
	Count  int // avg, variance: the count quantity
	Square int // variance: the centred sum of squares quantity
	// avg: the clamping range and its midpoint.
	Lower, Upper, Mid float64
	Decimals          int // digits after the point for numeric results
}

// Output is one column of the answer.
type Output struct {
	Name     string
	Type     ResultType
	Expr     *Expr
	Decimals int // numeric results: digits after the point
}

// Order is one ORDER BY item, evaluated after noise.
type Order struct {
	Expr       *Expr
	Desc       bool
	NullsFirst bool
}

// ExprKind is the kind of a post-processing expression node.
type ExprKind int

const (
	ExprAgg    ExprKind = iota // Index: into Plan.Aggs
	ExprKey                    // Index: into Plan.Keys
	ExprConst                  // Num or Str
	ExprOp                     // Op over Args: + - * / = <> < <= > >= AND OR NOT
	ExprFunc                   // Op names the function: round, abs, greatest, least, coalesce
	ExprCast                   // Type is the target
	ExprIsNull                 // Args[0] IS NULL; Op "not" for IS NOT NULL
)

// Expr is an expression over aggregates and keys, evaluated after noise.
type Expr struct {
	Kind  ExprKind
	Index int
	Num   float64
	Str   string
	IsStr bool
	Null  bool
	Op    string
	Args  []*Expr
	Type  ResultType
}

// ResultType is the Postgres type of an output column, as a direct query
// would report it.
type ResultType struct {
	OID  uint32
	Name string
}

// Result types.
var (
	TypeBool        = ResultType{16, "boolean"}
	TypeInt8        = ResultType{20, "bigint"}
	TypeInt2        = ResultType{21, "smallint"}
	TypeInt4        = ResultType{23, "integer"}
	TypeText        = ResultType{25, "text"}
	TypeFloat4      = ResultType{700, "real"}
	TypeFloat8      = ResultType{701, "double precision"}
	TypeDate        = ResultType{1082, "date"}
	TypeTimestamp   = ResultType{1114, "timestamp without time zone"}
	TypeTimestamptz = ResultType{1184, "timestamp with time zone"}
	TypeNumeric     = ResultType{1700, "numeric"}
)

// IsInteger reports whether values of t are integers.
func (t ResultType) IsInteger() bool { return t == TypeInt2 || t == TypeInt4 || t == TypeInt8 }

// IsNumber reports whether t is a number type.
func (t ResultType) IsNumber() bool {
	return t.IsInteger() || t == TypeNumeric || t == TypeFloat8 || t == TypeFloat4
}

// columnType maps a policy column type to its result type.
func columnType(policyType string) ResultType {
	switch policyType {
	case "smallint":
		return TypeInt2
	case "integer":
		return TypeInt4
	case "bigint":
		return TypeInt8
	case "numeric":
		return TypeNumeric
	case "real":
		return TypeFloat4
	case "double precision":
		return TypeFloat8
	case "date":
		return TypeDate
	case "timestamp":
		return TypeTimestamp
	case "timestamptz":
		return TypeTimestamptz
	case "boolean":
		return TypeBool
	}
	return TypeText
}

// UniqueUnit names the table and unit column whose uniqueness a plan relies
// on.
type UniqueUnit struct {
	Table  string // schema.name
	Schema string
	Name   string
	Column string
}
