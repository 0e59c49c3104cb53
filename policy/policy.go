package policy

import (
	"strings"
	"time"
)

// Privacy kinds of a table.
const (
	PrivacyRow    = "row"    // each row is its own privacy unit
	PrivacyUnit   = "unit"   // all rows sharing a value of Unit are one privacy unit
	PrivacyPublic = "public" // no private data; not charged
)

// Policy is a validated policy file.
type Policy struct {
	Version  string // hex SHA-256 of the file's bytes
	Listen   string
	Upstream Upstream
	Ledger   Ledger
	Defaults Defaults
	Analysts []*Analyst
	Tables   []*Table
	Trust    bool // accept analysts without a password (local demos only)

	analysts map[string]*Analyst
	tables   map[string]*Table // key: schema.name
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
}

// RedisLedger configures the shared ledger.
type RedisLedger struct {
	Addrs         []string
	MasterName    string // Sentinel
	AllowVolatile bool
}

// Defaults apply when a statement or session does not say otherwise.
type Defaults struct {
	Epsilon    float64 // per query
	MaxEpsilon float64 // per-query cap an analyst may SET
}

// Analyst is one person or service allowed to connect.
type Analyst struct {
	Name       string
	Verifier   *Verifier // nil only when the policy trusts local connections
	Budget     Budget
	MaxEpsilon float64 // per-query cap; 0 means Defaults.MaxEpsilon
}

// Budget is a total privacy budget.
type Budget struct {
	Epsilon float64
	Delta   float64
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
}

// Column is a declared column of a table.
type Column struct {
	Name        string
	Type        string // canonical Postgres type name: integer, bigint, numeric, double precision, text, date, ...
	Bounds      *Bounds
	Granularity float64 // noisy sums are multiples of this; 0 means 1 for integers and 0.01 otherwise
	Hidden      bool
	Domain      []string // public domain of values, for GROUP BY keys
}

// Bounds clamp a column's values.
type Bounds struct{ Lower, Upper float64 }

// Analyst returns the analyst with that name, or nil.
func (p *Policy) Analyst(name string) *Analyst { return p.analysts[name] }

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
func (c *Column) IsInteger() bool {
	switch c.Type {
	case "smallint", "integer", "bigint":
		return true
	}
	return false
}

// IsNumeric reports whether the column can be summed.
func (c *Column) IsNumeric() bool {
	switch c.Type {
	case "smallint", "integer", "bigint", "numeric", "real", "double precision":
		return true
	}
	return false
}

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
}

func canonicalType(s string) (string, bool) {
	t, ok := typeAliases[strings.ToLower(strings.TrimSpace(s))]
	return t, ok
}
