package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Problem is one thing wrong with a policy file, with its position.
type Problem struct {
	File    string
	Line    int
	Column  int
	Message string // what is wrong and what to write instead
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
}

// Problems is every problem found in a policy file at once.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Env reads environment variables and secret files; Load passes the real
// ones, tests pass their own.
type Env struct {
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
}

// Load reads and validates the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	dir := filepath.Dir(path)
	return Parse(path, data, Env{
		Getenv: os.Getenv,
		ReadFile: func(name string) ([]byte, error) {
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			return os.ReadFile(name)
		},
	})
}

type rawPolicy struct {
	Version  int          `yaml:"version"`
	Listen   string       `yaml:"listen"`
	Trust    bool         `yaml:"trust_local_analysts"`
	Upstream rawUpstream  `yaml:"upstream"`
	Ledger   rawLedger    `yaml:"ledger"`
	Defaults rawDefaults  `yaml:"defaults"`
	Analysts []rawAnalyst `yaml:"analysts"`
	Tables   []rawTable   `yaml:"tables"`
}

type rawUpstream struct {
	DSN              string `yaml:"dsn"`
	DSNEnv           string `yaml:"dsn_env"`
	DSNFile          string `yaml:"dsn_file"`
	StatementTimeout string `yaml:"statement_timeout"`
	MaxConns         int32  `yaml:"max_conns"`
}

type rawLedger struct {
	Backend string         `yaml:"backend"`
	Path    string         `yaml:"path"`
	Redis   rawRedisLedger `yaml:"redis"`
}

type rawRedisLedger struct {
	Addrs         []string `yaml:"addrs"`
	MasterName    string   `yaml:"master_name"`
	AllowVolatile bool     `yaml:"allow_volatile"`
}

type rawDefaults struct {
	Epsilon    *float64 `yaml:"epsilon"`
	MaxEpsilon *float64 `yaml:"max_epsilon"`
}

type rawAnalyst struct {
	Name       string    `yaml:"name"`
	Password   string    `yaml:"password"`
	Budget     rawBudget `yaml:"budget"`
	MaxEpsilon float64   `yaml:"max_epsilon"`
}

type rawBudget struct {
	Epsilon *float64 `yaml:"epsilon"`
	Delta   float64  `yaml:"delta"`
}

type rawTable struct {
	Name             string      `yaml:"name"`
	Schema           string      `yaml:"schema"`
	Privacy          string      `yaml:"privacy"`
	Unit             string      `yaml:"unit"`
	MaxRowsPerUnit   int         `yaml:"max_rows_per_unit"`
	MaxGroupsPerUnit int         `yaml:"max_groups_per_unit"`
	Columns          []rawColumn `yaml:"columns"`
}

type rawColumn struct {
	Name        string    `yaml:"name"`
	Type        string    `yaml:"type"`
	Bounds      []float64 `yaml:"bounds"`
	Granularity float64   `yaml:"granularity"`
	Hidden      bool      `yaml:"hidden"`
	Domain      []string  `yaml:"domain"`
}

// checker collects problems with positions looked up by YAML path.
type checker struct {
	file     string
	ast      *ast.File
	problems Problems
}

func (c *checker) at(path string, format string, args ...any) {
	line, col := 1, 1
	if c.ast != nil {
		if p, err := yaml.PathString(path); err == nil {
			if n, err := p.FilterFile(c.ast); err == nil && n != nil {
				if tk := n.GetToken(); tk != nil && tk.Position != nil {
					line, col = tk.Position.Line, tk.Position.Column
				}
			}
		}
		// Fall back to the nearest existing parent so the position is useful.
		if line == 1 && col == 1 && strings.Contains(path, ".") {
			parent := path[:strings.LastIndexAny(path, ".[")]
			if parent != "$" && parent != "" {
				c.atParentPos(parent, &line, &col)
			}
		}
	}
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) atParentPos(path string, line, col *int) {
	for path != "$" && path != "" {
		if p, err := yaml.PathString(path); err == nil {
			if n, err := p.FilterFile(c.ast); err == nil && n != nil {
				if tk := n.GetToken(); tk != nil && tk.Position != nil {
					*line, *col = tk.Position.Line, tk.Position.Column
					return
				}
			}
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return
		}
		path = path[:i]
	}
}

// Parse validates a policy file's bytes. file names it in problems.
func Parse(file string, data []byte, env Env) (*Policy, error) {
	c := &checker{file: file}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	c.ast = f
	var raw rawPolicy
	if err := yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	sum := sha256.Sum256(data)
	p := &Policy{
		Version:  hex.EncodeToString(sum[:8]),
		Listen:   raw.Listen,
		Trust:    raw.Trust,
		analysts: map[string]*Analyst{},
		tables:   map[string]*Table{},
	}
	if raw.Version != 1 {
		c.at("$.version", "version must be 1 (the only policy format so far); write `version: 1` at the top")
	}
	if p.Listen == "" {
		p.Listen = "127.0.0.1:6432"
	}
	c.upstream(p, raw.Upstream, env)
	c.ledger(p, raw.Ledger)
	c.defaults(p, raw.Defaults)
	for i, ra := range raw.Analysts {
		c.analyst(p, i, ra)
	}
	if len(raw.Analysts) == 0 {
		c.at("$", "no analysts: add an `analysts:` list with at least one name, password and budget")
	}
	for i, rt := range raw.Tables {
		c.table(p, i, rt)
	}
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool { return c.problems[i].Line < c.problems[j].Line })
		return nil, c.problems
	}
	return p, nil
}

func yamlProblem(file string, err error) Problem {
	pr := Problem{File: file, Line: 1, Column: 1, Message: err.Error()}
	var ye interface {
		GetMessage() string
	}
	if errors.As(err, &ye) {
		pr.Message = ye.GetMessage()
	}
	if t := tokenOf(err); t != nil {
		pr.Line, pr.Column = t.Line, t.Column
	}
	pr.Message = strings.TrimSpace(pr.Message)
	return pr
}

func (c *checker) upstream(p *Policy, ru rawUpstream, env Env) {
	set := 0
	for _, s := range []string{ru.DSN, ru.DSNEnv, ru.DSNFile} {
		if s != "" {
			set++
		}
	}
	switch {
	case set == 0:
		c.at("$.upstream", "upstream needs one of dsn, dsn_env or dsn_file naming the database dpproxy fronts")
	case set > 1:
		c.at("$.upstream", "give only one of dsn, dsn_env and dsn_file")
	case ru.DSN != "":
		if strings.Contains(ru.DSN, "password=") || passwordInURL(ru.DSN) {
			c.at("$.upstream.dsn", "the upstream password must not be written inline: use dsn_env: VAR or dsn_file: PATH")
		}
		p.Upstream.DSN = ru.DSN
	case ru.DSNEnv != "":
		p.Upstream.DSN = env.Getenv(ru.DSNEnv)
		if p.Upstream.DSN == "" {
			c.at("$.upstream.dsn_env", "environment variable %s is empty or unset; export it with the upstream connection string", ru.DSNEnv)
		}
	case ru.DSNFile != "":
		b, err := env.ReadFile(ru.DSNFile)
		if err != nil {
			c.at("$.upstream.dsn_file", "cannot read %s: %v", ru.DSNFile, err)
		}
		p.Upstream.DSN = strings.TrimSpace(string(b))
	}
	p.Upstream.StatementTimeout = 30 * time.Second
	if ru.StatementTimeout != "" {
		d, err := time.ParseDuration(ru.StatementTimeout)
		if err != nil || d <= 0 {
			c.at("$.upstream.statement_timeout", "statement_timeout must be a positive duration such as 30s or 2m")
		}
		p.Upstream.StatementTimeout = d
	}
	p.Upstream.MaxConns = ru.MaxConns
	if ru.MaxConns < 0 {
		c.at("$.upstream.max_conns", "max_conns must be positive")
	}
	if p.Upstream.MaxConns == 0 {
		p.Upstream.MaxConns = 16
	}
}

// passwordInURL reports whether a postgres:// URL carries user:password@.
func passwordInURL(dsn string) bool {
	rest, ok := strings.CutPrefix(dsn, "postgres://")
	if !ok {
		rest, ok = strings.CutPrefix(dsn, "postgresql://")
	}
	if !ok {
		return false
	}
	at := strings.IndexByte(rest, '@')
	if at < 0 {
		return false
	}
	return strings.Contains(rest[:at], ":")
}

func (c *checker) ledger(p *Policy, rl rawLedger) {
	p.Ledger.Backend = rl.Backend
	if p.Ledger.Backend == "" {
		p.Ledger.Backend = "bolt"
	}
	switch p.Ledger.Backend {
	case "bolt":
		if rl.Path == "" {
			c.at("$.ledger", "the bolt ledger needs a path, e.g. `path: /var/lib/dpproxy/ledger.db`")
		}
		p.Ledger.Path = rl.Path
	case "redis":
		if len(rl.Redis.Addrs) == 0 {
			c.at("$.ledger.redis", "the redis ledger needs `addrs: [host:port, ...]`")
		}
		p.Ledger.Redis = RedisLedger(rl.Redis)
	default:
		c.at("$.ledger.backend", "unknown ledger backend %q: write bolt (one node) or redis (several nodes)", rl.Backend)
	}
}

func (c *checker) defaults(p *Policy, rd rawDefaults) {
	p.Defaults.Epsilon, p.Defaults.MaxEpsilon = 0.1, 1
	if rd.Epsilon != nil {
		p.Defaults.Epsilon = *rd.Epsilon
		if !positiveFinite(*rd.Epsilon) {
			c.at("$.defaults.epsilon", "epsilon must be a positive finite number, e.g. 0.1")
		}
	}
	if rd.MaxEpsilon != nil {
		p.Defaults.MaxEpsilon = *rd.MaxEpsilon
		if !positiveFinite(*rd.MaxEpsilon) {
			c.at("$.defaults.max_epsilon", "max_epsilon must be a positive finite number, e.g. 1")
		}
	}
	if p.Defaults.Epsilon > p.Defaults.MaxEpsilon {
		c.at("$.defaults.epsilon", "the default epsilon %g exceeds max_epsilon %g", p.Defaults.Epsilon, p.Defaults.MaxEpsilon)
	}
}

func (c *checker) analyst(p *Policy, i int, ra rawAnalyst) {
	path := fmt.Sprintf("$.analysts[%d]", i)
	a := &Analyst{Name: ra.Name, MaxEpsilon: ra.MaxEpsilon}
	if ra.Name == "" {
		c.at(path, "analyst needs a name")
	} else if p.analysts[ra.Name] != nil {
		c.at(path+".name", "analyst %q is declared twice", ra.Name)
	}
	if ra.Password == "" {
		if !p.Trust {
			c.at(path, "analyst %q needs a password: a SCRAM-SHA-256 verifier from `dpproxy passwd`", ra.Name)
		}
	} else {
		v, err := ParseVerifier(ra.Password)
		if err != nil {
			c.at(path+".password", "%v; generate one with `dpproxy passwd`", err)
		}
		a.Verifier = v
	}
	if ra.Budget.Epsilon == nil {
		c.at(path, "analyst %q needs `budget: {epsilon: N}`", ra.Name)
	} else {
		a.Budget.Epsilon = *ra.Budget.Epsilon
		if !positiveFinite(a.Budget.Epsilon) {
			c.at(path+".budget.epsilon", "budget epsilon must be a positive finite number")
		}
	}
	a.Budget.Delta = ra.Budget.Delta
	if ra.Budget.Delta < 0 || ra.Budget.Delta >= 1 {
		c.at(path+".budget.delta", "budget delta must be in [0, 1), typically below 1e-6")
	}
	if ra.MaxEpsilon < 0 || math.IsNaN(ra.MaxEpsilon) || math.IsInf(ra.MaxEpsilon, 0) {
		c.at(path+".max_epsilon", "max_epsilon must be a positive finite number")
	}
	p.Analysts = append(p.Analysts, a)
	if ra.Name != "" {
		p.analysts[ra.Name] = a
	}
}

func (c *checker) table(p *Policy, i int, rt rawTable) {
	path := fmt.Sprintf("$.tables[%d]", i)
	t := &Table{
		Name: rt.Name, Schema: rt.Schema, Privacy: rt.Privacy, Unit: rt.Unit,
		MaxRowsPerUnit: rt.MaxRowsPerUnit, MaxGroupsPerUnit: rt.MaxGroupsPerUnit,
		columns: map[string]*Column{},
	}
	if t.Schema == "" {
		t.Schema = "public"
	}
	if t.Name == "" {
		c.at(path, "table needs a name")
	} else if p.tables[t.QualifiedName()] != nil {
		c.at(path+".name", "table %s is declared twice", t.QualifiedName())
	}
	switch t.Privacy {
	case PrivacyRow, PrivacyPublic:
		if t.Unit != "" {
			c.at(path+".unit", "unit is only for `privacy: unit` tables")
		}
	case PrivacyUnit:
		if t.Unit == "" {
			c.at(path, "a `privacy: unit` table needs `unit: <column>` naming the privacy unit, e.g. patient_id")
		}
		if t.MaxRowsPerUnit <= 0 {
			c.at(path, "a `privacy: unit` table needs max_rows_per_unit (a positive integer)")
		}
		if t.MaxGroupsPerUnit <= 0 {
			t.MaxGroupsPerUnit = 1
		}
	case "":
		c.at(path, "table %q needs `privacy: row`, `privacy: unit` or `privacy: public`", t.Name)
	default:
		c.at(path+".privacy", "unknown privacy %q: write row, unit or public", t.Privacy)
	}
	for j, rc := range rt.Columns {
		c.column(t, fmt.Sprintf("%s.columns[%d]", path, j), rc)
	}
	if t.Privacy == PrivacyUnit && t.Unit != "" && t.columns[t.Unit] == nil {
		c.at(path+".unit", "privacy unit column %q is not among the table's columns", t.Unit)
	}
	p.Tables = append(p.Tables, t)
	if t.Name != "" {
		p.tables[t.QualifiedName()] = t
	}
}

func (c *checker) column(t *Table, path string, rc rawColumn) {
	col := &Column{Name: rc.Name, Granularity: rc.Granularity, Hidden: rc.Hidden, Domain: rc.Domain}
	if rc.Name == "" {
		c.at(path, "column needs a name")
	} else if t.columns[rc.Name] != nil {
		c.at(path+".name", "column %q is declared twice", rc.Name)
	}
	typ, ok := canonicalType(rc.Type)
	if !ok {
		c.at(path+".type", "unknown column type %q: write integer, bigint, numeric, double precision, text, date, timestamp or boolean", rc.Type)
	}
	col.Type = typ
	if rc.Bounds != nil {
		if len(rc.Bounds) != 2 || !(rc.Bounds[0] <= rc.Bounds[1]) || !finite(rc.Bounds[0]) || !finite(rc.Bounds[1]) {
			c.at(path+".bounds", "bounds must be [lower, upper] with finite lower <= upper, e.g. [0, 120]")
		} else {
			if ok && !col.IsNumeric() {
				c.at(path+".bounds", "bounds apply to numeric columns; %q is %s", rc.Name, typ)
			}
			col.Bounds = &Bounds{Lower: rc.Bounds[0], Upper: rc.Bounds[1]}
		}
	}
	if rc.Granularity < 0 || !finite(rc.Granularity) {
		c.at(path+".granularity", "granularity must be a positive number such as 1 or 0.01")
	}
	t.Columns = append(t.Columns, col)
	if rc.Name != "" {
		t.columns[rc.Name] = col
	}
}

func positiveFinite(f float64) bool { return f > 0 && finite(f) }
func finite(f float64) bool         { return !math.IsNaN(f) && !math.IsInf(f, 0) }
