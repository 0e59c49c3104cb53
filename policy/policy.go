package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Privacy kinds of a table.
const (
	PrivacyRow    = "row"    // each row is its own privacy unit
	PrivacyUnit   = "unit"   // all rows sharing a value of Unit are one privacy unit
	PrivacyPublic = "public" // no private data; not charged
)

// TLS modes for analysts' connections.
const (
	TLSDisable = "disable" // refuse SSLRequest; everything in clear (loopback only)
	TLSPrefer  = "prefer"  // accept TLS when the client asks, plain otherwise
	TLSRequire = "require" // refuse clients that do not start TLS
)

// Accounting modes: how the charges of one budget compose.
const (
	AccountingBasic = "basic" // epsilons and deltas add up
	AccountingRDP   = "rdp"   // Rényi-DP accounting: tighter totals over many queries
)

// Budget periods: when a budget starts afresh.
const (
	PeriodLifetime = "lifetime" // never
	PeriodDaily    = "daily"    // at midnight UTC
	PeriodMonthly  = "monthly"  // on the first day of each month, UTC
	PeriodYearly   = "yearly"   // on January 1st, UTC
)

// Policy is a validated policy file.
type Policy struct {
	Version  string // hex SHA-256 of the file's bytes
	Listen   string
	Admin    string // admin HTTP address; "" turns the admin endpoint off
	TLS      TLS
	Upstream Upstream
	Ledger   Ledger
	Defaults Defaults
	Analysts []*Analyst
	Teams    []*Team
	Datasets []*Dataset
	Tables   []*Table
	Trust    bool // accept analysts without a password (local demos only)

	// Warnings are risky but valid choices (large epsilons, wide bounds),
	// each with its position; `dpproxy policy check` prints them.
	Warnings Problems

	// uniqueUnits are the privacy-unit tables (schema.name) whose unit
	// column the upstream catalog declares unique; set by the server from
	// the catalog with WithUniqueUnits, never read from the file.
	uniqueUnits map[string]bool
	uniqueTag   string
	// provenBounds are the CHECK constraints that prove a column's values
	// lie within its bounds upstream, by ProvenKey: learned from the
	// catalog with WithProvenBounds, never read from the file.
	provenBounds map[string][]string
	boundsTag    string
	// typeProblems (by table) and columnProblems (by ProvenKey) say where
	// the declared column types disagree with the upstream catalog or could
	// not be read, collations (by ProvenKey) which columns have a
	// non-default collation: learned with WithColumnTypes; nil when never
	// checked (offline explain, tests).
	typeProblems   map[string]string
	columnProblems map[string]string
	collations     map[string]string
	typesTag       string
	// upstreamColumns (by table) are the table's columns upstream,
	// declared or not, with their types (format_type's text), learned with
	// WithUpstreamColumns.
	upstreamColumns map[string]map[string]string
	columnsTag      string
	// catalogTag is CatalogTag's, kept: it is part of every plan cache key.
	catalogTag string

	analysts map[string]*Analyst
	tables   map[string]*Table // key: schema.name
	teams    map[string]*Team
	datasets map[string]*Dataset // key: table schema.name
}

// TLS configures TLS for analysts' connections. Wire loads the certificate.
type TLS struct {
	Mode     string // TLSDisable, TLSPrefer or TLSRequire
	CertFile string // resolved against the policy file's directory
	KeyFile  string
	// Certificate is the key pair read and checked while validating, so a
	// reload picks up a renewed certificate; nil when Mode is TLSDisable.
	Certificate *tls.Certificate
}

// Team is a group of analysts sharing one budget on top of their own.
type Team struct {
	Name    string
	Members []string
	Budget  Budget
}

// Dataset is a set of tables whose budget is shared by every analyst:
// all queries reading any of its tables, by anyone, draw on it.
type Dataset struct {
	Name   string
	Tables []string // qualified names
	Budget Budget
}

// Upstream is the database dpproxy fronts.
type Upstream struct {
	DSN              string // resolved from dsn, dsn_env or dsn_file
	StatementTimeout time.Duration
	MaxConns         int32
}

// Ledger says where budgets are kept.
type Ledger struct {
	Backend string // "bolt" or "redis"
	Path    string // bolt file
	Redis   RedisLedger
	// CacheHitAudit is how a repeat answered from the answer cache reaches
	// the audit trail: CacheHitAuditSync (the default) writes its zero
	// charge before answering; CacheHitAuditBatched answers first and
	// writes the zero charges of many hits in one commit shortly after.
	CacheHitAudit string
}

// Cache-hit audit modes (Ledger.CacheHitAudit).
const (
	CacheHitAuditSync    = "sync"
	CacheHitAuditBatched = "batched"
)

// RedisLedger configures the shared ledger.
type RedisLedger struct {
	Addrs         []string
	MasterName    string // Sentinel
	AllowVolatile bool
	Username      string
	Password      string // resolved from password_env or password_file
}

// Defaults apply when a statement or session does not say otherwise.
type Defaults struct {
	Epsilon    float64 // per query
	MaxEpsilon float64 // per-query cap an analyst may SET
	Delta      float64 // per query, spent by partition selection; 0: no partition selection
	Accounting string  // AccountingBasic or AccountingRDP
	// CacheWindow is how long an identical statement returns the same noisy
	// answer at no new cost; 0 turns the cache off.
	CacheWindow time.Duration
}

// Analyst is one person or service allowed to connect.
type Analyst struct {
	Name       string
	Verifier   *Verifier // nil only when the policy trusts local connections
	Budget     Budget
	MaxEpsilon float64 // per-query cap; 0 means Defaults.MaxEpsilon
	// MaxDelta is the per-query delta the analyst may spend on partition
	// selection (GROUP BY keys without a public domain); 0 means
	// Defaults.Delta. See DeltaCap.
	MaxDelta float64
	// Tables lists the qualified names the analyst may query; nil means
	// every table of the policy. See MayQuery.
	Tables []string
	Team   string // name of the analyst's team, or ""
}

// Budget is a total privacy budget.
type Budget struct {
	Epsilon float64
	Delta   float64
	Period  string // PeriodLifetime, PeriodDaily, PeriodMonthly or PeriodYearly
}

// EpsilonPerYear is the most epsilon the budget lets through in a year
// (for a lifetime budget, its total).
func (b Budget) EpsilonPerYear() float64 {
	switch b.Period {
	case PeriodDaily:
		return b.Epsilon * 365
	case PeriodMonthly:
		return b.Epsilon * 12
	}
	return b.Epsilon
}

// Table is a table analysts may query.
type Table struct {
	Schema           string
	Name             string
	Privacy          string
	Unit             string // privacy-unit column when Privacy is PrivacyUnit
	MaxRowsPerUnit   int
	MaxGroupsPerUnit int
	Columns          []*Column
	columns          map[string]*Column
	// Shadow makes queries read a pre-bounded copy, ShadowName(), that
	// `dpproxy shadow refresh` fills with at most MaxRowsPerUnit random rows
	// per unit (privacy-unit tables only).
	Shadow bool
}

// Column is a declared column of a table.
type Column struct {
	Name        string
	Type        string // canonical Postgres type name: integer, bigint, numeric, double precision, text, date, ...
	Bounds      *Bounds
	Granularity float64 // noisy sums are multiples of this; 0 means 1 for integers and 0.01 otherwise
	Hidden      bool
	Domain      []string // public domain of values, for GROUP BY keys
	// Range is the public range of a date or timestamp column, so keys
	// derived from it (date_trunc('month', col)) have a public domain: every
	// bucket in [Lower, Upper).
	Range *Range
}

// Bounds clamp a column's values.
type Bounds struct{ Lower, Upper float64 }

// Range is a half-open time range [Lower, Upper), in UTC.
type Range struct{ Lower, Upper time.Time }

// Analyst returns the analyst with that name, or nil.
func (p *Policy) Analyst(name string) *Analyst { return p.analysts[name] }

// Team returns the team with that name, or nil.
func (p *Policy) Team(name string) *Team { return p.teams[name] }

// DatasetOf returns the dataset that table t belongs to, or nil.
func (p *Policy) DatasetOf(t *Table) *Dataset {
	if t == nil {
		return nil
	}
	return p.datasets[t.QualifiedName()]
}

// MayQuery reports whether the analyst may query table t.
func (a *Analyst) MayQuery(t *Table) bool {
	if a == nil || t == nil {
		return false
	}
	if a.Tables == nil {
		return true
	}
	return contains(a.Tables, t.QualifiedName())
}

// DeltaCap is the largest delta one query of this analyst may spend: the
// analyst's max_delta, else the default delta, never more than the budget.
func (p *Policy) DeltaCap(a *Analyst) float64 {
	if a == nil {
		return 0
	}
	d := p.Defaults.Delta
	if a.MaxDelta > 0 {
		d = a.MaxDelta
	}
	return min(d, a.Budget.Delta)
}

// Table returns the table schema.name, or nil. An empty schema means "public".
func (p *Policy) Table(schema, name string) *Table {
	if schema == "" {
		schema = "public"
	}
	return p.tables[schema+"."+name]
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column { return t.columns[name] }

// QualifiedName is schema.name.
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// IsPrivate reports whether answers depending on the table must be DP.
func (t *Table) IsPrivate() bool { return t.Privacy != PrivacyPublic }

// EpsilonCap is the largest ε one query of this analyst may spend.
func (p *Policy) EpsilonCap(a *Analyst) float64 {
	if a != nil && a.MaxEpsilon > 0 {
		return a.MaxEpsilon
	}
	return p.Defaults.MaxEpsilon
}

// IsInteger reports whether the column holds integers.
func (c *Column) IsInteger() bool { return IsIntegerType(c.Type) }

// IsIntegerType reports whether a policy type name (Column.Type) holds
// integers.
func IsIntegerType(t string) bool { return t == "smallint" || t == "integer" || t == "bigint" }

// IsNumberType reports whether a policy type name holds numbers.
func IsNumberType(t string) bool {
	return IsIntegerType(t) || t == "numeric" || t == "real" || t == "double precision"
}

// IsDateTimeType reports whether a policy type name holds dates or
// timestamps.
func IsDateTimeType(t string) bool { return t == "date" || t == "timestamp" || t == "timestamptz" }

// IsNumeric reports whether the column can be summed.
func (c *Column) IsNumeric() bool { return IsNumberType(c.Type) }

// EffectiveGranularity is the grid noisy sums of the column are reported on.
func (c *Column) EffectiveGranularity() float64 {
	if c.Granularity > 0 {
		return c.Granularity
	}
	if c.IsInteger() {
		return 1
	}
	return 0.01
}

var typeAliases = map[string]string{
	"int": "integer", "int4": "integer", "integer": "integer",
	"int2": "smallint", "smallint": "smallint",
	"int8": "bigint", "bigint": "bigint",
	"numeric": "numeric", "decimal": "numeric",
	"float8": "double precision", "double precision": "double precision", "double": "double precision",
	"float4": "real", "real": "real",
	"text": "text", "varchar": "text", "character varying": "text", "char": "text",
	"date": "date", "timestamp": "timestamp", "timestamptz": "timestamptz",
	"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
	"boolean": "boolean", "bool": "boolean",
	"character": "text", "bpchar": "text", "uuid": "uuid",
}

func canonicalType(s string) (string, bool) {
	t, ok := typeAliases[strings.ToLower(strings.TrimSpace(s))]
	return t, ok
}

// CanonicalType maps a PostgreSQL type name, as written in a policy or as
// format_type prints it ("character varying(20)", "numeric(10,2)", "int4"),
// to the name policies use. Arrays and types dpproxy does not know are not
// mapped.
func CanonicalType(s string) (string, bool) {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')':
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	name := strings.Join(strings.Fields(b.String()), " ")
	if strings.HasSuffix(name, "]") {
		return "", false
	}
	return canonicalType(name)
}

// ShadowSchema is the schema that holds pre-bounded shadow copies.
const ShadowSchema = "dpproxy_shadow"

// ShadowName is the name of the table's pre-bounded copy in ShadowSchema.
func (t *Table) ShadowName() string { return t.Schema + "__" + t.Name }

// ShadowComment is the comment `dpproxy shadow refresh` puts on t's copy: the
// table, unit and max_rows_per_unit it bounded the copy by. A copy whose
// comment differs was made under another policy (a larger bound, another
// unit, another table of the same shadow name) and is not read.
func (t *Table) ShadowComment() string {
	return fmt.Sprintf("dpproxy shadow of %s: unit %s, max_rows_per_unit %d", t.QualifiedName(), t.Unit, t.MaxRowsPerUnit)
}

// WithUniqueUnits returns a copy of p that knows which privacy-unit tables
// have a unique unit column upstream (by QualifiedName): a unit of such a
// table has at most one row, so the rewriter needs no contribution
// bounding for it. The caller (wire) must have read this from the upstream
// catalog and must re-check it with every query it relies on. p itself is
// not changed.
func (p *Policy) WithUniqueUnits(tables map[string]bool) *Policy {
	cp := *p
	cp.uniqueUnits = map[string]bool{}
	var names []string
	for name, ok := range tables {
		if t := p.tables[name]; ok && t != nil && t.Privacy == PrivacyUnit {
			cp.uniqueUnits[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	cp.uniqueTag = strings.Join(names, ",")
	cp.retag()
	return &cp
}

// ProvenKey names a column in WithProvenBounds' proofs: "schema.table.column".
func ProvenKey(t *Table, column string) string { return t.QualifiedName() + "." + column }

// ShadowProvenKey names a column of t's shadow copy in WithProvenBounds'
// proofs (`dpproxy shadow refresh` clamps the copy and adds the CHECK
// constraints that prove it).
func ShadowProvenKey(t *Table, column string) string {
	return ShadowSchema + "." + t.ShadowName() + "." + column
}

// WithProvenBounds returns a copy of p that knows which columns' values the
// upstream catalog proves to lie within their policy bounds: proofs maps
// ProvenKey to the validated CHECK constraint expressions (as
// pg_get_expr prints them) that prove it. The rewriter then leaves those
// columns unclamped, and the caller (wire) must re-check the constraints
// with every query that relies on them. p itself is not changed.
func (p *Policy) WithProvenBounds(proofs map[string][]string) *Policy {
	cp := *p
	cp.provenBounds = map[string][]string{}
	var tags []string
	for key, exprs := range proofs {
		if len(exprs) > 0 {
			cp.provenBounds[key] = exprs
			tags = append(tags, key+"="+strings.Join(exprs, " AND "))
		}
	}
	sort.Strings(tags)
	cp.boundsTag = strings.Join(tags, ";")
	cp.retag()
	return &cp
}

// BoundsProof returns the CHECK constraint expressions that prove column's
// values of t lie within its bounds upstream (nil: not proven; see
// WithProvenBounds).
func (p *Policy) BoundsProof(t *Table, column string) []string {
	if t == nil {
		return nil
	}
	return p.provenBounds[ProvenKey(t, column)]
}

// ShadowBoundsProof is BoundsProof for t's shadow copy.
func (p *Policy) ShadowBoundsProof(t *Table, column string) []string {
	if t == nil {
		return nil
	}
	return p.provenBounds[ShadowProvenKey(t, column)]
}

// UnitUnique reports whether t's unit column is unique upstream (see
// WithUniqueUnits).
func (p *Policy) UnitUnique(t *Table) bool { return t != nil && p.uniqueUnits[t.QualifiedName()] }

// WithColumnTypes returns a copy of p that knows where its declared column
// types disagree with the upstream catalog: tables maps QualifiedName to a
// problem with the whole table (missing upstream, types unreadable),
// columns maps ProvenKey to a column's ("is numeric in the policy but
// double precision upstream"), and collations maps ProvenKey to a
// column's collation when it is not the database's default. The rewriter
// refuses statements that read such a table or use such a column, since
// its rules against data-dependent errors rest on the declared types. p
// itself is not changed.
func (p *Policy) WithColumnTypes(tables, columns, collations map[string]string) *Policy {
	cp := *p
	cp.typeProblems = map[string]string{}
	cp.columnProblems = map[string]string{}
	cp.collations = map[string]string{}
	var tags []string
	for name, why := range tables {
		cp.typeProblems[name] = why
		tags = append(tags, name+"="+why)
	}
	for key, why := range columns {
		cp.columnProblems[key] = why
		tags = append(tags, key+":"+why)
	}
	for key, coll := range collations {
		cp.collations[key] = coll
		tags = append(tags, key+"@"+coll)
	}
	sort.Strings(tags)
	cp.typesTag = strings.Join(tags, ";")
	cp.retag()
	return &cp
}

// TypesChecked reports whether WithColumnTypes was applied.
func (p *Policy) TypesChecked() bool { return p.typeProblems != nil }

// TypeProblem says what is wrong with t as a whole upstream, or "" (see
// WithColumnTypes).
func (p *Policy) TypeProblem(t *Table) string {
	if t == nil {
		return ""
	}
	return p.typeProblems[t.QualifiedName()]
}

// ColumnCollation names the collation of t's column upstream when it is not
// the database's default, or "" (see WithColumnTypes: collations maps
// ProvenKey to it). Two columns with different ones cannot be compared.
func (p *Policy) ColumnCollation(t *Table, column string) string {
	if t == nil {
		return ""
	}
	return p.collations[ProvenKey(t, column)]
}

// ColumnTypeProblem says what is wrong with the type of t's column, or "".
func (p *Policy) ColumnTypeProblem(t *Table, column string) string {
	if t == nil {
		return ""
	}
	return p.columnProblems[ProvenKey(t, column)]
}

// CarryColumnTypes returns p with the type verdicts prev holds for the
// tables p declares exactly as prev does (same columns and types), for
// when the catalog cannot be read now; every other table of p gets
// unverified as its problem.
func (p *Policy) CarryColumnTypes(prev *Policy, unverified string) *Policy {
	tables, columns, collations := map[string]string{}, map[string]string{}, map[string]string{}
	for _, t := range p.Tables {
		name := t.QualifiedName()
		var old *Table
		if prev != nil && prev.TypesChecked() {
			old = prev.tables[name]
		}
		if old == nil || !sameColumns(old, t) {
			tables[name] = unverified
			continue
		}
		if why := prev.typeProblems[name]; why != "" {
			tables[name] = why
		}
		for _, c := range t.Columns {
			if why := prev.columnProblems[ProvenKey(t, c.Name)]; why != "" {
				columns[ProvenKey(t, c.Name)] = why
			}
			if coll := prev.collations[ProvenKey(t, c.Name)]; coll != "" {
				collations[ProvenKey(t, c.Name)] = coll
			}
		}
	}
	cp := p.WithColumnTypes(tables, columns, collations)
	if prev != nil {
		carried := map[string]map[string]string{}
		for _, t := range p.Tables {
			if tables[t.QualifiedName()] == unverified {
				continue
			}
			carried[t.QualifiedName()] = prev.upstreamColumns[t.QualifiedName()]
		}
		cp = cp.WithUpstreamColumns(carried)
	}
	return cp
}

// WithUpstreamColumns returns a copy of p that knows its tables' columns
// upstream, declared or not (cols maps QualifiedName to each column's
// type, as format_type prints it): an undeclared column still takes part
// in PostgreSQL's name resolution, so the rewriter refuses an unqualified
// reference it would make ambiguous, and names the columns its SQL adds
// beside a table's own (SELECT *, row_number() .. AS dp_rank) around them;
// and a character(n) column compares ignoring trailing spaces, which the
// policy's text does not say (BlankPadded). p itself is not changed.
func (p *Policy) WithUpstreamColumns(cols map[string]map[string]string) *Policy {
	cp := *p
	cp.upstreamColumns = map[string]map[string]string{}
	var tags []string
	for table, types := range cols {
		if len(types) == 0 {
			continue
		}
		cp.upstreamColumns[table] = types
		for c, typ := range types {
			tags = append(tags, table+"."+c+" "+typ)
		}
	}
	cp.columnsTag = ""
	if len(tags) > 0 {
		// A digest: the columns can be many, and the tag is hashed with
		// every plan cache lookup.
		sort.Strings(tags)
		sum := sha256.Sum256([]byte(strings.Join(tags, "\x00")))
		cp.columnsTag = hex.EncodeToString(sum[:16])
	}
	cp.retag()
	return &cp
}

// HasUpstreamColumn reports whether t has a column called name upstream,
// declared or not (see WithUpstreamColumns).
func (p *Policy) HasUpstreamColumn(t *Table, name string) bool {
	if t == nil {
		return false
	}
	_, ok := p.upstreamColumns[t.QualifiedName()][name]
	return ok
}

// BlankPadded reports whether t's column is character(n) (bpchar)
// upstream, which the policy calls text: its values compare ignoring
// trailing spaces.
func (p *Policy) BlankPadded(t *Table, column string) bool {
	if t == nil {
		return false
	}
	typ := p.upstreamColumns[t.QualifiedName()][column]
	return typ == "bpchar" || typ == "character" || strings.HasPrefix(typ, "character(")
}

func sameColumns(a, b *Table) bool {
	if len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i].Name != b.Columns[i].Name || a.Columns[i].Type != b.Columns[i].Type {
			return false
		}
	}
	return true
}

// CatalogTag names what the policy learned from the upstream catalog (the
// unique-unit tables, proven bounds, type problems and collations, and a
// digest of every table's upstream columns), so that plans cached under the
// same Version but different catalog facts are kept apart.
func (p *Policy) CatalogTag() string { return p.catalogTag }

func (p *Policy) retag() {
	tag := p.uniqueTag
	if p.boundsTag != "" {
		tag += "|" + p.boundsTag
	}
	if p.typesTag != "" {
		tag += "|types:" + p.typesTag
	}
	if p.columnsTag != "" {
		tag += "|columns:" + p.columnsTag
	}
	p.catalogTag = tag
}
