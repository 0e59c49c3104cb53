package rewrite

// Kind is what a statement is, as far as dpproxy is concerned.
type Kind int

const (
	KindEmpty       Kind = iota // an empty query string
	KindSession                 // SET, SHOW, RESET, BEGIN, COMMIT, ... handled by the proxy
	KindPassthrough             // reads no table (SELECT 1, SELECT version()): run upstream as is
	KindDP                      // an aggregate over private tables: charge, run the plan, add noise
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

// Plan is how a DP query is answered.
type Plan struct {
	SQL        string     // rewritten SQL computing the exact clamped quantities, one row
	Tables     []string   // schema.name of every table read
	Quantities []Quantity // noisy quantities, in the rewritten SQL's column order
	Outputs    []Output   // columns the analyst sees
}

// Quantity is one exact value the rewritten SQL returns, to which noise is
// added. Its ε is Weight × the query's ε; weights of a plan sum to 1.
type Quantity struct {
	Expr          string  // what it measures, for notices and explain
	L1Sensitivity float64 // from the policy's bounds
	Granularity   float64
	Weight        float64
	NonNegative   bool // counts: clamp the noisy value at zero (post-processing)
}

// Aggregate kinds of an output.
const (
	AggCount = "count"
	AggSum   = "sum"
	AggAvg   = "avg"
)

// Output is one column of the answer, computed from noisy quantities by
// post-processing only.
type Output struct {
	Name  string
	Type  ResultType
	Agg   string
	Value int // index into Quantities: the count or sum; for avg the centred sum
	Count int // for avg: index of the count quantity
	// For avg: the clamping range and its midpoint, which the centred sum
	// is relative to.
	Lower, Upper, Mid float64
}

// ResultType is the Postgres type of an output column, as a direct query
// would report it.
type ResultType struct {
	OID  uint32
	Name string
}

// Type OIDs used in answers.
var (
	TypeInt8    = ResultType{20, "bigint"}
	TypeNumeric = ResultType{1700, "numeric"}
	TypeFloat8  = ResultType{701, "double precision"}
)
