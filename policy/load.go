package policy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Problem is one thing wrong with a policy file, with its position.
type Problem struct {
	File    string
	Line    int
	Column  int
	Message string // what is wrong and what to write instead
	Warning bool   // a risky choice rather than an error
}

func (p Problem) String() string {
	if p.Warning {
		return fmt.Sprintf("%s:%d:%d: warning: %s", p.File, p.Line, p.Column, p.Message)
	}
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
// ones, tests pass their own. Nil functions read nothing.
type Env struct {
	Getenv   func(string) string
	ReadFile func(string) ([]byte, error)
	// Dir is the directory relative file names in the policy (dsn_file,
	// TLS files, password_file) are resolved against; "" leaves them as
	// written.
	Dir string
}

func (e Env) getenv(name string) string {
	if e.Getenv == nil {
		return ""
	}
	return e.Getenv(name)
}

func (e Env) path(name string) string {
	if e.Dir == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(e.Dir, name)
}

func (e Env) readFile(name string) ([]byte, error) {
	if e.ReadFile == nil {
		return nil, errors.New("files cannot be read here")
	}
	return e.ReadFile(e.path(name))
}

// MaxFileSize is the largest policy file accepted.
const MaxFileSize = 1 << 20

// Load reads and validates the policy file at path. Relative file names in
// the policy are resolved against the policy file's directory.
func Load(path string) (*Policy, error) {
	p, errs, _, err := CheckFile(path)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// CheckFile reads the policy file at path and returns the policy (nil when
// there are errors), its errors and its warnings. err is set only when the
// file cannot be read.
func CheckFile(path string) (p *Policy, errs, warnings Problems, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading policy: %w", err)
	}
	p, errs, warnings = Check(path, data, Env{Getenv: os.Getenv, ReadFile: os.ReadFile, Dir: filepath.Dir(path)})
	return p, errs, warnings, nil
}

// Parse validates a policy file's bytes. file names it in problems. The
// error, when not nil, is a Problems listing every error; warnings of a
// valid policy are in its Warnings.
func Parse(file string, data []byte, env Env) (*Policy, error) {
	p, errs, _ := Check(file, data, env)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// Check validates a policy file's bytes and returns the policy (nil when
// there are errors), every error and every warning, each sorted by
// position.
func Check(file string, data []byte, env Env) (pol *Policy, errs, warnings Problems) {
	d := &decoder{file: file, anchors: map[string]ast.Node{}}
	p := d.parse(data, env)
	d.errs = sortProblems(d.errs)
	d.warns = sortProblems(d.warns)
	if len(d.errs) > 0 {
		return nil, d.errs, d.warns
	}
	p.Warnings = d.warns
	return p, nil, d.warns
}

// sortProblems orders problems by position and drops repeats (an aliased
// node is decoded once per use).
func sortProblems(ps Problems) Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
	out := ps[:0]
	seen := map[Problem]bool{}
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) parse(data []byte, env Env) *Policy {
	sum := sha256.Sum256(data)
	p := &Policy{
		Version:  hex.EncodeToString(sum[:8]),
		analysts: map[string]*Analyst{},
		tables:   map[string]*Table{},
		teams:    map[string]*Team{},
		datasets: map[string]*Dataset{},
	}
	if len(data) > MaxFileSize {
		d.errorf(pos{1, 1}, "the policy file is %d bytes; the limit is %d", len(data), MaxFileSize)
		return p
	}
	f, err := parseYAML(data)
	if err != nil {
		d.errs = append(d.errs, yamlProblem(d.file, err))
		return p
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			d.errorf(posOf(doc.Body), "the policy must be one YAML document; remove the second one (after ---)")
			break
		}
		body = doc.Body
	}
	if body == nil {
		d.errorf(pos{1, 1}, "the policy file is empty; start it with `version: 1` and see docs/policy.md")
		return p
	}
	d.collectAnchors(body)
	top := d.object(body, pos{1, 1}, "the policy",
		"version", "listen", "admin", "tls", "trust_local_analysts", "upstream", "ledger",
		"defaults", "analysts", "teams", "datasets", "tables")
	d.top(p, top, env)
	return p
}

// parseYAML runs go-yaml's parser. It is third-party code fed with whatever
// the file holds: a panic in it must not take the proxy down on reload.
func parseYAML(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("the YAML parser failed on this file (%v); check its syntax", r)
		}
	}()
	return parser.ParseBytes(data, 0)
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
	pr.Message = "YAML syntax: " + strings.TrimSpace(pr.Message)
	return pr
}

func (d *decoder) top(p *Policy, o *object, env Env) {
	if !o.has("version") {
		d.errorf(pos{1, 1}, "the policy needs `version: 1` at the top")
	} else if v, ok := o.integer("version", "1"); ok && v != 1 {
		d.errorf(o.valueAt("version"), "version %d is unknown: this dpproxy reads `version: 1`", v)
	}

	p.Listen = "127.0.0.1:6432"
	if s, ok := o.str("listen", "127.0.0.1:6432"); ok {
		if d.address(o.valueAt("listen"), "listen", s, "127.0.0.1:6432") {
			p.Listen = s
		}
	}
	p.Admin = "127.0.0.1:6433"
	if o.has("admin") {
		f := o.fields["admin"]
		if s := scalarText(f.value); f.value != nil && (s == "" || s == "off") {
			p.Admin = ""
		} else if s, ok := o.str("admin", "127.0.0.1:6433"); ok && d.address(o.valueAt("admin"), "admin", s, "127.0.0.1:6433") {
			p.Admin = s
		}
	}
	if b, ok := o.boolean("trust_local_analysts"); ok {
		p.Trust = b
		if b && !loopback(p.Listen) {
			d.errorf(o.valueAt("trust_local_analysts"), "trust_local_analysts lets analysts in without a password, so listen must be a loopback address such as 127.0.0.1:6432, not %s; remove trust_local_analysts and give every analyst a password", p.Listen)
		}
	}
	d.tls(p, o.sub("tls", "tls", "mode", "cert_file", "key_file"), o.keyAt("tls"), env)
	if !o.has("upstream") {
		d.errorf(pos{1, 1}, "the policy needs an `upstream:` section with dsn_env or dsn_file naming the database dpproxy fronts")
	} else {
		d.upstream(p, o.sub("upstream", "upstream",
			"dsn", "dsn_env", "dsn_file", "statement_timeout", "max_conns"), env)
	}
	if !o.has("ledger") {
		d.errorf(pos{1, 1}, "the policy needs a `ledger:` section, e.g. `ledger: {backend: bolt, path: /var/lib/dpproxy/ledger.db}`")
	} else {
		d.ledger(p, o.sub("ledger", "ledger", "backend", "path", "redis", "cache_hit_audit"), env)
	}
	d.defaults(p, o.sub("defaults", "defaults",
		"epsilon", "max_epsilon", "delta", "accounting", "cache_window"))

	tables, _ := o.list("tables", "[{name: patients, privacy: row, columns: [...]}]")
	for _, n := range tables {
		d.table(p, n)
	}
	analysts, listOK := o.list("analysts", "[{name: alice, password: ..., budget: {epsilon: 5}}]")
	for _, n := range analysts {
		d.analyst(p, n)
	}
	if len(analysts) == 0 && (listOK || !o.has("analysts")) {
		d.errorf(o.keyAt("analysts"), "no analysts: add an `analysts:` list with at least one name, password and budget")
	}
	teams, _ := o.list("teams", "[{name: research, members: [alice, bob], budget: {epsilon: 10}}]")
	for _, n := range teams {
		d.team(p, n)
	}
	datasets, _ := o.list("datasets", "[{name: clinical, tables: [patients], budget: {epsilon: 10}}]")
	for _, n := range datasets {
		d.dataset(p, n)
	}
	d.policyWarnings(p, o)
}

// address checks a host:port.
func (d *decoder) address(at pos, key, s, example string) bool {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = errors.New("bad port")
		}
	}
	if err != nil {
		d.errorf(at, "%s must be host:port such as %s, not %q", key, example, s)
		return false
	}
	return true
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *decoder) tls(p *Policy, o *object, at pos, env Env) {
	p.TLS.Mode = TLSDisable
	if s, ok := o.str("mode", "require"); ok {
		switch s {
		case TLSDisable, TLSPrefer, TLSRequire:
			p.TLS.Mode = s
		default:
			d.errorf(o.valueAt("mode"), "unknown tls mode %q: write disable, prefer or require", s)
		}
	}
	cert, certOK := o.str("cert_file", "/etc/dpproxy/server.crt")
	key, keyOK := o.str("key_file", "/etc/dpproxy/server.key")
	if p.TLS.Mode == TLSDisable {
		if certOK || keyOK {
			d.warnf(o.at, "tls mode is disable, so cert_file and key_file are not used; write `mode: require` to use them")
		}
		return
	}
	if !certOK && !o.has("cert_file") {
		d.errorf(o.at, "tls mode %s needs cert_file: PATH (a PEM certificate chain)", p.TLS.Mode)
	}
	if !keyOK && !o.has("key_file") {
		d.errorf(o.at, "tls mode %s needs key_file: PATH (the PEM private key of cert_file)", p.TLS.Mode)
	}
	if !certOK || !keyOK {
		return
	}
	p.TLS.CertFile, p.TLS.KeyFile = env.path(cert), env.path(key)
	certPEM, err := env.readFile(cert)
	if err != nil {
		d.errorf(o.valueAt("cert_file"), "cannot read cert_file %s: %v", cert, unwrapPath(err))
		return
	}
	keyPEM, err := env.readFile(key)
	if err != nil {
		d.errorf(o.valueAt("key_file"), "cannot read key_file %s: %v", key, unwrapPath(err))
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		d.errorf(o.valueAt("cert_file"), "cert_file and key_file are not a PEM certificate and its private key: %v", err)
		return
	}
	p.TLS.Certificate = &pair
	_ = at
}

// unwrapPath drops the path from an *fs.PathError, which the message
// already names.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (d *decoder) upstream(p *Policy, o *object, env Env) {
	var set []string
	for _, k := range []string{"dsn", "dsn_env", "dsn_file"} {
		if o.has(k) {
			set = append(set, k)
		}
	}
	switch {
	case len(set) == 0 && o.broken:
	case len(set) == 0:
		d.errorf(o.at, "upstream needs dsn_env: VAR or dsn_file: PATH naming the database dpproxy fronts")
	case len(set) > 1:
		d.errorf(o.keyAt(set[1]), "give only one of dsn, dsn_env and dsn_file (found %s)", strings.Join(set, " and "))
	case set[0] == "dsn":
		dsn, ok := o.str("dsn", "\"host=db dbname=app user=dpproxy_reader\"")
		if ok && (hasPasswordParam(dsn) || passwordInURL(dsn)) {
			d.errorf(o.valueAt("dsn"), "the upstream password must not be written inline: use dsn_env: VAR or dsn_file: PATH")
		}
		p.Upstream.DSN = dsn
	case set[0] == "dsn_env":
		name, ok := o.str("dsn_env", "DPPROXY_UPSTREAM_DSN")
		if ok {
			p.Upstream.DSN = env.getenv(name)
			if p.Upstream.DSN == "" {
				d.errorf(o.valueAt("dsn_env"), "environment variable %s is empty or unset; export it with the upstream connection string", name)
			}
		}
	case set[0] == "dsn_file":
		name, ok := o.str("dsn_file", "/etc/dpproxy/upstream.dsn")
		if ok {
			b, err := env.readFile(name)
			if err != nil {
				d.errorf(o.valueAt("dsn_file"), "cannot read dsn_file %s: %v", name, unwrapPath(err))
			} else if p.Upstream.DSN = strings.TrimSpace(string(b)); p.Upstream.DSN == "" {
				d.errorf(o.valueAt("dsn_file"), "dsn_file %s is empty; write the upstream connection string in it", name)
			}
		}
	}
	p.Upstream.StatementTimeout = 30 * time.Second
	if dur, ok := d.duration(o, "statement_timeout", "30s"); ok {
		if dur <= 0 {
			d.errorf(o.valueAt("statement_timeout"), "statement_timeout must be a positive duration such as 30s or 2m")
		} else {
			p.Upstream.StatementTimeout = dur
		}
	}
	p.Upstream.MaxConns = 16
	if n, ok := o.integer("max_conns", "16"); ok {
		if n < 1 || n > 10000 {
			d.errorf(o.valueAt("max_conns"), "max_conns must be between 1 and 10000, e.g. 16")
		} else {
			p.Upstream.MaxConns = int32(n)
		}
	}
}

// hasPasswordParam reports whether a key=value connection string sets a
// password.
func hasPasswordParam(dsn string) bool {
	for _, f := range strings.Fields(dsn) {
		k, _, _ := strings.Cut(f, "=")
		if strings.TrimSpace(k) == "password" {
			return true
		}
	}
	return strings.Contains(dsn, "password=")
}

// passwordInURL reports whether a postgres:// URL carries user:password@ or
// a password parameter.
func passwordInURL(dsn string) bool {
	rest, ok := strings.CutPrefix(dsn, "postgres://")
	if !ok {
		rest, ok = strings.CutPrefix(dsn, "postgresql://")
	}
	if !ok {
		return false
	}
	at := strings.IndexByte(rest, '@')
	if at >= 0 && strings.Contains(rest[:at], ":") {
		return true
	}
	return strings.Contains(rest, "password=")
}

// duration reads a Go duration such as 30s.
func (d *decoder) duration(o *object, key, example string) (time.Duration, bool) {
	s, ok := o.str(key, example)
	if !ok {
		return 0, false
	}
	if s == "0" {
		return 0, true
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(o.valueAt(key), "%s must be a duration such as %s (units ms, s, m, h), not %q", key, example, s)
		return 0, false
	}
	return dur, true
}

func (d *decoder) ledger(p *Policy, o *object, env Env) {
	p.Ledger.Backend = "bolt"
	if s, ok := o.str("backend", "bolt"); ok {
		switch s {
		case "bolt", "redis":
			p.Ledger.Backend = s
		default:
			d.errorf(o.valueAt("backend"), "unknown ledger backend %q: write bolt (one node) or redis (several nodes)", s)
			return
		}
	}
	p.Ledger.CacheHitAudit = CacheHitAuditSync
	if s, ok := o.str("cache_hit_audit", "sync"); ok {
		switch s {
		case CacheHitAuditSync, CacheHitAuditBatched:
			p.Ledger.CacheHitAudit = s
		default:
			d.errorf(o.valueAt("cache_hit_audit"), "unknown cache_hit_audit %q: write sync (each cache hit is written before it is answered) or batched (hits are written in batches just after)", s)
		}
	}
	redisAt := o.keyAt("redis")
	r := o.sub("redis", "ledger.redis",
		"addrs", "master_name", "allow_volatile", "username", "password", "password_env", "password_file")
	switch p.Ledger.Backend {
	case "bolt":
		path, ok := o.str("path", "/var/lib/dpproxy/ledger.db")
		if !ok && !o.has("path") && !o.broken {
			d.errorf(o.at, "the bolt ledger needs a path, e.g. `path: /var/lib/dpproxy/ledger.db`")
		}
		p.Ledger.Path = path
		if o.has("redis") {
			d.warnf(redisAt, "ledger.redis is ignored with backend bolt; write `backend: redis` to use it")
		}
	case "redis":
		if o.has("path") {
			d.warnf(o.keyAt("path"), "ledger.path is ignored with backend redis")
		}
		d.redis(p, r, env)
	}
}

func (d *decoder) redis(p *Policy, r *object, env Env) {
	rl := &p.Ledger.Redis
	addrs, _ := r.list("addrs", "[redis-1:6379, redis-2:6379]")
	for _, n := range addrs {
		s := scalarText(n)
		if _, ok := n.(*ast.StringNode); !ok || !d.address(posOf(n), "each redis address", s, "redis-1:6379") {
			if _, ok := n.(*ast.StringNode); !ok {
				d.errorf(posOf(n), "each redis address must be host:port such as redis-1:6379, not %s", describe(n))
			}
			continue
		}
		rl.Addrs = append(rl.Addrs, s)
	}
	if len(addrs) == 0 {
		d.errorf(r.at, "the redis ledger needs `addrs: [host:port, ...]`")
	}
	rl.MasterName, _ = r.str("master_name", "mymaster")
	rl.Username, _ = r.str("username", "dpproxy")
	rl.AllowVolatile, _ = r.boolean("allow_volatile")
	if r.has("password") {
		d.errorf(r.keyAt("password"), "the redis password must not be written inline: use password_env: VAR or password_file: PATH")
	}
	if r.has("password_env") && r.has("password_file") {
		d.errorf(r.keyAt("password_file"), "give only one of password_env and password_file")
	} else if name, ok := r.str("password_env", "DPPROXY_REDIS_PASSWORD"); ok {
		if rl.Password = env.getenv(name); rl.Password == "" {
			d.errorf(r.valueAt("password_env"), "environment variable %s is empty or unset; export it with the redis password", name)
		}
	} else if name, ok := r.str("password_file", "/etc/dpproxy/redis.pw"); ok {
		b, err := env.readFile(name)
		if err != nil {
			d.errorf(r.valueAt("password_file"), "cannot read password_file %s: %v", name, unwrapPath(err))
		}
		rl.Password = strings.TrimRight(string(b), "\r\n")
	}
	if rl.AllowVolatile {
		d.warnf(r.valueAt("allow_volatile"), "allow_volatile accepts a redis that may evict or lose ledger keys, which would give spent budget back; use a redis with maxmemory-policy noeviction and appendfsync")
	}
}

func (d *decoder) defaults(p *Policy, o *object) {
	p.Defaults = Defaults{Epsilon: 0.1, MaxEpsilon: 1, Delta: 1e-7, Accounting: AccountingBasic}
	if f, ok := o.num("epsilon", "0.1"); ok {
		if !positiveFinite(f) {
			d.errorf(o.valueAt("epsilon"), "epsilon must be a positive finite number, e.g. 0.1")
		} else {
			p.Defaults.Epsilon = f
		}
	}
	if f, ok := o.num("max_epsilon", "1"); ok {
		if !positiveFinite(f) {
			d.errorf(o.valueAt("max_epsilon"), "max_epsilon must be a positive finite number, e.g. 1")
		} else {
			p.Defaults.MaxEpsilon = f
		}
	}
	d.epsilonWarning(o.valueAt("epsilon"), "default epsilon", p.Defaults.Epsilon)
	d.epsilonWarning(o.valueAt("max_epsilon"), "max_epsilon", p.Defaults.MaxEpsilon)
	if p.Defaults.Epsilon > p.Defaults.MaxEpsilon {
		d.errorf(o.valueAt("epsilon"), "the default epsilon %g exceeds max_epsilon %g; lower epsilon or raise max_epsilon", p.Defaults.Epsilon, p.Defaults.MaxEpsilon)
	}
	if f, ok := o.num("delta", "1e-7"); ok {
		if !(f >= 0 && f < 1) {
			d.errorf(o.valueAt("delta"), "delta must be in [0, 1), typically 1e-7 or less")
		} else {
			p.Defaults.Delta = f
			d.deltaWarning(o.valueAt("delta"), "default delta", f)
		}
	}
	if s, ok := o.str("accounting", "basic"); ok {
		switch s {
		case AccountingBasic, AccountingRDP:
			p.Defaults.Accounting = s
		default:
			d.errorf(o.valueAt("accounting"), "unknown accounting %q: write basic (epsilons add up) or rdp (Rényi-DP, tighter over many queries)", s)
		}
	}
	if dur, ok := d.duration(o, "cache_window", "10m"); ok {
		if dur < 0 {
			d.errorf(o.valueAt("cache_window"), "cache_window must be 0 (no cache) or a positive duration such as 10m")
		} else {
			p.Defaults.CacheWindow = dur
		}
	}
}

// budget decodes a budget mapping for owner (e.g. `analyst "alice"`).
func (d *decoder) budget(o *object, owner string) (Budget, bool) {
	b := Budget{Period: PeriodLifetime}
	if !o.has("budget") {
		d.errorf(o.at, "%s needs `budget: {epsilon: N}`", owner)
		return b, false
	}
	bo := o.sub("budget", "budget", "epsilon", "delta", "period")
	ok := !bo.broken
	if !bo.has("epsilon") && !bo.broken {
		d.errorf(bo.at, "%s needs a budget epsilon, e.g. `budget: {epsilon: 5}`", owner)
		ok = false
	} else if f, fine := bo.num("epsilon", "5"); fine {
		if !positiveFinite(f) {
			d.errorf(bo.valueAt("epsilon"), "budget epsilon must be a positive finite number, e.g. 5")
			ok = false
		}
		b.Epsilon = f
	} else {
		ok = false
	}
	if f, fine := bo.num("delta", "1e-6"); fine {
		if !(f >= 0 && f < 1) {
			d.errorf(bo.valueAt("delta"), "budget delta must be in [0, 1), typically 1e-6 or less")
			ok = false
		}
		b.Delta = f
	}
	if s, fine := bo.str("period", "monthly"); fine {
		switch s {
		case PeriodLifetime, PeriodDaily, PeriodMonthly, PeriodYearly:
			b.Period = s
		default:
			d.errorf(bo.valueAt("period"), "unknown budget period %q: write lifetime, daily, monthly or yearly", s)
			ok = false
		}
	}
	if ok {
		d.budgetWarnings(bo, owner, b)
	}
	return b, ok
}

// name reads the required name of a list item.
func (d *decoder) name(o *object, what, example string) string {
	if !o.has("name") {
		d.errorf(o.at, "%s needs a name, e.g. `name: %s`", what, example)
		return ""
	}
	s, _ := o.str("name", example)
	if s == "" && o.fields["name"].value != nil {
		if _, null := o.fields["name"].value.(*ast.NullNode); !null {
			d.errorf(o.valueAt("name"), "%s name must not be empty", what)
		}
	}
	return s
}

func (d *decoder) analyst(p *Policy, n ast.Node) {
	o := d.object(n, posOf(n), "an analyst",
		"name", "password", "budget", "max_epsilon", "max_delta", "tables")
	if o.broken {
		return
	}
	name := d.name(o, "analyst", "alice")
	a := &Analyst{Name: name}
	who := fmt.Sprintf("analyst %q", name)
	if name != "" && p.analysts[name] != nil {
		d.errorf(o.valueAt("name"), "analyst %q is declared twice; keep one entry", name)
	} else if len(name) > 63 {
		d.errorf(o.valueAt("name"), "analyst name %q is longer than PostgreSQL's 63-byte limit", name)
	}
	if !o.has("password") {
		if !p.Trust {
			d.errorf(o.at, "%s needs a password: a SCRAM-SHA-256 verifier from `dpproxy passwd`", who)
		}
	} else if s, ok := o.str("password", "SCRAM-SHA-256$4096:..."); ok {
		v, err := ParseVerifier(s)
		if err != nil {
			d.errorf(o.valueAt("password"), "%v; generate one with `dpproxy passwd`", err)
		}
		a.Verifier = v
	}
	a.Budget, _ = d.budget(o, who)
	if f, ok := o.num("max_epsilon", "0.5"); ok {
		if !positiveFinite(f) {
			d.errorf(o.valueAt("max_epsilon"), "max_epsilon must be a positive finite number, e.g. 0.5")
		} else {
			a.MaxEpsilon = f
			d.epsilonWarning(o.valueAt("max_epsilon"), "max_epsilon", f)
			if f > a.Budget.Epsilon && a.Budget.Epsilon > 0 {
				d.warnf(o.valueAt("max_epsilon"), "max_epsilon %g is larger than %s's whole budget %g, so one query can use it all", f, name, a.Budget.Epsilon)
			}
		}
	}
	if f, ok := o.num("max_delta", "1e-7"); ok {
		switch {
		case !(f >= 0 && f < 1):
			d.errorf(o.valueAt("max_delta"), "max_delta must be in [0, 1), typically 1e-7 or less")
		case f > a.Budget.Delta:
			d.errorf(o.valueAt("max_delta"), "max_delta %g exceeds %s's budget delta %g; raise `budget: {delta: ...}` or lower max_delta", f, name, a.Budget.Delta)
		default:
			a.MaxDelta = f
			d.deltaWarning(o.valueAt("max_delta"), "max_delta", f)
		}
	}
	if o.has("tables") {
		items, _ := o.list("tables", "[patients, public.visits]")
		a.Tables = []string{}
		for _, it := range items {
			if t := d.tableRef(p, it, who); t != nil && !contains(a.Tables, t.QualifiedName()) {
				a.Tables = append(a.Tables, t.QualifiedName())
			}
		}
	}
	p.Analysts = append(p.Analysts, a)
	if name != "" && p.analysts[name] == nil {
		p.analysts[name] = a
	}
}

// tableRef resolves a `tables:` entry (name or schema.name) to a declared
// table.
func (d *decoder) tableRef(p *Policy, n ast.Node, owner string) *Table {
	if _, ok := n.(*ast.StringNode); !ok {
		d.errorf(posOf(n), "each entry of %s's tables must be a table name such as patients or public.patients, not %s", owner, describe(n))
		return nil
	}
	s := scalarText(n)
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if t := p.Table(schema, name); t != nil {
		return t
	}
	var names []string
	for _, t := range p.Tables {
		names = append(names, t.Name, t.QualifiedName())
	}
	hint := "declare it under tables: or remove it"
	if best, ok := closest(s, names); ok {
		hint = fmt.Sprintf("did you mean %q?", best)
	}
	d.errorf(posOf(n), "%s lists table %s, which the policy does not declare; %s", owner, s, hint)
	return nil
}

func (d *decoder) team(p *Policy, n ast.Node) {
	o := d.object(n, posOf(n), "a team", "name", "members", "budget")
	if o.broken {
		return
	}
	name := d.name(o, "team", "research")
	tm := &Team{Name: name}
	who := fmt.Sprintf("team %q", name)
	if name != "" && p.teams[name] != nil {
		d.errorf(o.valueAt("name"), "team %q is declared twice; keep one entry", name)
	}
	members, _ := o.list("members", "[alice, bob]")
	if len(members) == 0 {
		d.errorf(o.keyAt("members"), "%s needs members: a list of analyst names such as [alice, bob]", who)
	}
	for _, m := range members {
		s := scalarText(m)
		a := p.Analyst(s)
		switch {
		case a == nil:
			var names []string
			for _, a := range p.Analysts {
				names = append(names, a.Name)
			}
			hint := "declare the analyst under analysts: or remove it"
			if best, ok := closest(s, names); ok {
				hint = fmt.Sprintf("did you mean %q?", best)
			}
			d.errorf(posOf(m), "%s lists analyst %q, who is not declared; %s", who, s, hint)
		case a.Team == name:
			d.errorf(posOf(m), "%s lists analyst %q twice", who, s)
		case a.Team != "":
			d.errorf(posOf(m), "analyst %q is already in team %q; an analyst belongs to at most one team", s, a.Team)
		default:
			a.Team = name
			tm.Members = append(tm.Members, s)
		}
	}
	tm.Budget, _ = d.budget(o, who)
	p.Teams = append(p.Teams, tm)
	if name != "" && p.teams[name] == nil {
		p.teams[name] = tm
	}
}

func (d *decoder) dataset(p *Policy, n ast.Node) {
	o := d.object(n, posOf(n), "a dataset", "name", "tables", "budget")
	if o.broken {
		return
	}
	name := d.name(o, "dataset", "clinical")
	ds := &Dataset{Name: name}
	who := fmt.Sprintf("dataset %q", name)
	for _, other := range p.Datasets {
		if other.Name == name && name != "" {
			d.errorf(o.valueAt("name"), "dataset %q is declared twice; keep one entry", name)
		}
	}
	items, _ := o.list("tables", "[patients, visits]")
	if len(items) == 0 {
		d.errorf(o.keyAt("tables"), "%s needs tables: a list of declared tables such as [patients]", who)
	}
	for _, it := range items {
		t := d.tableRef(p, it, who)
		if t == nil {
			continue
		}
		if prev := p.datasets[t.QualifiedName()]; prev != nil {
			d.errorf(posOf(it), "table %s is already in dataset %q; a table belongs to at most one dataset", t.QualifiedName(), prev.Name)
			continue
		}
		if !t.IsPrivate() {
			d.warnf(posOf(it), "table %s is public, so queries on it are not charged to %s", t.QualifiedName(), who)
		}
		ds.Tables = append(ds.Tables, t.QualifiedName())
		p.datasets[t.QualifiedName()] = ds
	}
	ds.Budget, _ = d.budget(o, who)
	p.Datasets = append(p.Datasets, ds)
}

func (d *decoder) table(p *Policy, n ast.Node) {
	o := d.object(n, posOf(n), "a table",
		"name", "schema", "privacy", "unit", "max_rows_per_unit", "max_groups_per_unit", "shadow", "columns")
	if o.broken {
		return
	}
	name := d.name(o, "table", "patients")
	t := &Table{Name: name, Schema: "public", columns: map[string]*Column{}}
	if s, ok := o.str("schema", "public"); ok {
		if s == "" {
			d.errorf(o.valueAt("schema"), "schema must not be empty; leave it out for public")
		} else {
			t.Schema = s
		}
	}
	if schema, rel, ok := strings.Cut(name, "."); ok && !o.has("schema") {
		d.errorf(o.valueAt("name"), "write the schema apart: `schema: %s` and `name: %s`", schema, rel)
	} else if name != "" && p.tables[t.QualifiedName()] != nil {
		d.errorf(o.valueAt("name"), "table %s is declared twice; keep one entry", t.QualifiedName())
	}
	who := fmt.Sprintf("table %q", name)
	if !o.has("privacy") {
		d.errorf(o.at, "%s needs `privacy: row`, `privacy: unit` or `privacy: public`", who)
	} else if s, ok := o.str("privacy", "row"); ok {
		switch s {
		case PrivacyRow, PrivacyUnit, PrivacyPublic:
			t.Privacy = s
		default:
			d.errorf(o.valueAt("privacy"), "unknown privacy %q: write row, unit or public", s)
		}
	}
	t.Unit, _ = o.str("unit", "patient_id")
	if n, ok := o.integer("max_rows_per_unit", "10"); ok {
		if n < 1 || n > 1_000_000 {
			d.errorf(o.valueAt("max_rows_per_unit"), "max_rows_per_unit must be a whole number between 1 and 1000000, e.g. 10")
		} else {
			t.MaxRowsPerUnit = int(n)
		}
	}
	if n, ok := o.integer("max_groups_per_unit", "1"); ok {
		if n < 1 || n > 1_000_000 {
			d.errorf(o.valueAt("max_groups_per_unit"), "max_groups_per_unit must be a whole number between 1 and 1000000, e.g. 1")
		} else {
			t.MaxGroupsPerUnit = int(n)
		}
	}
	t.Shadow, _ = o.boolean("shadow")
	switch t.Privacy {
	case PrivacyRow, PrivacyPublic:
		for _, k := range []string{"unit", "max_rows_per_unit", "max_groups_per_unit", "shadow"} {
			if o.has(k) {
				d.errorf(o.keyAt(k), "%s is only for `privacy: unit` tables; %s has privacy %s", k, who, t.Privacy)
			}
		}
		t.Unit, t.MaxRowsPerUnit, t.MaxGroupsPerUnit, t.Shadow = "", 0, 0, false
	case PrivacyUnit:
		if !o.has("unit") {
			d.errorf(o.at, "a `privacy: unit` table needs `unit: <column>` naming the privacy unit, e.g. patient_id")
		}
		if !o.has("max_rows_per_unit") {
			d.errorf(o.at, "a `privacy: unit` table needs max_rows_per_unit: the most rows one unit contributes, e.g. 10")
		}
		if t.MaxGroupsPerUnit == 0 {
			t.MaxGroupsPerUnit = 1
		}
		if t.MaxRowsPerUnit > 100 {
			d.warnf(o.valueAt("max_rows_per_unit"), "max_rows_per_unit %d: noise grows with it, so sums and counts over %s will be very noisy; most analyses need 10 or fewer", t.MaxRowsPerUnit, who)
		}
		if t.MaxGroupsPerUnit > 100 {
			d.warnf(o.valueAt("max_groups_per_unit"), "max_groups_per_unit %d: noise grows with it; a few groups per unit is usual", t.MaxGroupsPerUnit)
		}
	}
	cols, colsOK := o.list("columns", "[{name: age, type: integer, bounds: [0, 120]}]")
	for _, cn := range cols {
		d.column(t, cn)
	}
	if t.Privacy == PrivacyUnit && t.Unit != "" && t.columns[t.Unit] == nil && (colsOK || !o.has("columns")) {
		var names []string
		for _, c := range t.Columns {
			names = append(names, c.Name)
		}
		hint := "declare it under columns"
		if best, ok := closest(t.Unit, names); ok {
			hint = fmt.Sprintf("did you mean %q?", best)
		}
		d.errorf(o.valueAt("unit"), "privacy unit column %q is not among the table's columns; %s", t.Unit, hint)
	}
	if t.Shadow {
		d.shadowName(p, t, o)
	}
	p.Tables = append(p.Tables, t)
	if name != "" && p.tables[t.QualifiedName()] == nil {
		p.tables[t.QualifiedName()] = t
	}
}

func (d *decoder) column(t *Table, n ast.Node) {
	o := d.object(n, posOf(n), "a column", "name", "type", "bounds", "granularity", "domain", "hidden", "range")
	if o.broken {
		return
	}
	name := d.name(o, "column", "age")
	c := &Column{Name: name}
	if name != "" && t.columns[name] != nil {
		d.errorf(o.valueAt("name"), "column %q of table %s is declared twice; keep one entry", name, t.Name)
	}
	typeOK := false
	if !o.has("type") {
		d.errorf(o.at, "column %q needs a type: integer, bigint, numeric, double precision, text, date, timestamp, timestamptz, boolean or uuid", name)
	} else if s, ok := o.str("type", "integer"); ok {
		c.Type, typeOK = canonicalType(s)
		if !typeOK {
			d.errorf(o.valueAt("type"), "unknown column type %q: write integer, bigint, numeric, double precision, text, date, timestamp, timestamptz, boolean or uuid", s)
		}
	}
	c.Hidden, _ = o.boolean("hidden")
	if o.has("bounds") {
		c.Bounds = d.bounds(o, c, typeOK)
	}
	if f, ok := o.num("granularity", "0.01"); ok {
		switch {
		case !positiveFinite(f):
			d.errorf(o.valueAt("granularity"), "granularity must be a positive number such as 1 or 0.01")
		case typeOK && !c.IsNumeric():
			d.errorf(o.keyAt("granularity"), "granularity applies to numeric columns; %q is %s", name, c.Type)
		default:
			c.Granularity = f
		}
	}
	if o.has("domain") {
		d.domain(o, c, typeOK)
	}
	if o.has("range") {
		c.Range = d.timeRange(o, c, typeOK)
	}
	if c.Hidden {
		for _, k := range []string{"bounds", "granularity", "domain", "range"} {
			if o.has(k) {
				d.warnf(o.keyAt(k), "hidden column %q has %s, which are never used: hidden columns cannot appear in queries at all", name, k)
			}
		}
	}
	t.Columns = append(t.Columns, c)
	if name != "" && t.columns[name] == nil {
		t.columns[name] = c
	}
}

// isTODO reports whether a value is the `TODO` that `dpproxy policy init`
// leaves for the DBA.
func isTODO(n ast.Node) bool {
	_, ok := n.(*ast.StringNode)
	return ok && strings.EqualFold(strings.TrimSpace(scalarText(n)), "todo")
}

func (d *decoder) bounds(o *object, c *Column, typeOK bool) *Bounds {
	at := o.valueAt("bounds")
	if f := o.fields["bounds"]; f.value != nil && isTODO(f.value) {
		d.errorf(at, "bounds of column %q are still TODO: write [lower, upper] from what the column can hold (not from the data), e.g. [0, 120]", c.Name)
		return nil
	}
	items, ok := o.list("bounds", "[0, 120]")
	if !ok {
		return nil
	}
	if len(items) != 2 {
		d.errorf(at, "bounds must be two numbers [lower, upper], e.g. [0, 120]; found %d", len(items))
		return nil
	}
	lo, ok1 := number(items[0])
	hi, ok2 := number(items[1])
	switch {
	case !ok1:
		d.errorf(posOf(items[0]), "the lower bound must be a number, not %s", describe(items[0]))
	case !ok2:
		d.errorf(posOf(items[1]), "the upper bound must be a number, not %s", describe(items[1]))
	case !finite(lo) || !finite(hi):
		d.errorf(at, "bounds must be finite numbers, e.g. [0, 120]")
	case lo > hi:
		d.errorf(at, "the lower bound %g is above the upper bound %g; write [%g, %g]", lo, hi, hi, lo)
	case typeOK && !c.IsNumeric():
		d.errorf(at, "bounds apply to numeric columns; %q is %s (use domain or range for group keys)", c.Name, c.Type)
	case c.IsInteger() && (lo != math.Trunc(lo) || hi != math.Trunc(hi)):
		d.errorf(at, "bounds of %s column %q must be whole numbers, e.g. [%g, %g]", c.Type, c.Name, math.Floor(lo), math.Ceil(hi))
	default:
		b := &Bounds{Lower: lo, Upper: hi}
		d.boundsWarnings(at, c, b)
		return b
	}
	return nil
}

func (d *decoder) domain(o *object, c *Column, typeOK bool) {
	items, ok := o.list("domain", "[F, M]")
	if !ok {
		return
	}
	if len(items) == 0 {
		d.errorf(o.valueAt("domain"), "domain of %q is empty; list every value the column can take, e.g. [F, M], or leave domain out", c.Name)
		return
	}
	seen := map[string]bool{}
	for _, it := range items {
		switch it.(type) {
		case *ast.MappingNode, *ast.SequenceNode, *ast.NullNode:
			d.errorf(posOf(it), "each domain value of %q must be a single value, not %s; quote it if you mean the text", c.Name, describe(it))
			continue
		}
		s := scalarText(it)
		if typeOK {
			if msg := checkLiteral(c, s); msg != "" {
				d.errorf(posOf(it), "domain value %q of %s column %q %s", s, c.Type, c.Name, msg)
				continue
			}
		}
		if seen[s] {
			d.errorf(posOf(it), "domain value %q of %q is listed twice", s, c.Name)
			continue
		}
		seen[s] = true
		c.Domain = append(c.Domain, s)
	}
}

// checkLiteral says what is wrong with s as a value of c's type, or "".
func checkLiteral(c *Column, s string) string {
	switch {
	case c.IsInteger():
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return "is not a whole number"
		}
	case c.IsNumeric():
		if f, err := strconv.ParseFloat(s, 64); err != nil || !finite(f) {
			return "is not a number"
		}
	case c.Type == "boolean":
		if s != "true" && s != "false" {
			return "is not true or false"
		}
	case c.Type == "date", c.Type == "timestamp", c.Type == "timestamptz":
		if _, ok := parseTime(s); !ok {
			return "is not a date such as 2024-01-31"
		}
	}
	return ""
}

func (d *decoder) timeRange(o *object, c *Column, typeOK bool) *Range {
	at := o.valueAt("range")
	if typeOK && c.Type != "date" && c.Type != "timestamp" && c.Type != "timestamptz" {
		d.errorf(o.keyAt("range"), "range applies to date and timestamp columns; %q is %s (use bounds for numbers)", c.Name, c.Type)
		return nil
	}
	if f := o.fields["range"]; f.value != nil && isTODO(f.value) {
		d.errorf(at, "range of column %q is still TODO: write ['2024-01-01', '2026-01-01'] from what the column can hold (not from the data)", c.Name)
		return nil
	}
	items, ok := o.list("range", "['2024-01-01', '2026-01-01']")
	if !ok {
		return nil
	}
	if len(items) != 2 {
		d.errorf(at, "range must be two dates [from, until), e.g. ['2024-01-01', '2026-01-01']; found %d", len(items))
		return nil
	}
	var r Range
	for i, dst := range []*time.Time{&r.Lower, &r.Upper} {
		tm, ok := parseTime(scalarText(items[i]))
		if !ok {
			d.errorf(posOf(items[i]), "%s is not a date such as '2024-01-01' or a timestamp such as '2024-01-01T00:00:00Z'", describe(items[i]))
			return nil
		}
		*dst = tm
	}
	if !r.Lower.Before(r.Upper) {
		d.errorf(at, "range must start before it ends: [from, until), e.g. ['2024-01-01', '2026-01-01']")
		return nil
	}
	return &r
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02", time.RFC3339, "2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func positiveFinite(f float64) bool { return f > 0 && finite(f) }
func finite(f float64) bool         { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// shadowName checks that t's shadow copy has a name of its own: schema a,
// table b__c and schema a__b, table c would fill one copy, and PostgreSQL
// cuts names at 63 bytes, where the refresh's <copy>__new would become the
// copy's own name.
func (d *decoder) shadowName(p *Policy, t *Table, o *object) {
	if n := len(t.ShadowName() + "__new"); n > 63 {
		d.errorf(o.valueAt("shadow"), "the shadow copy of %s would be named %s (%d bytes with the refresh's suffix __new), beyond PostgreSQL's 63; shorten the schema or table name, or drop shadow: true",
			t.QualifiedName(), t.ShadowName(), n)
	}
	for _, other := range p.Tables {
		if other.Shadow && other.QualifiedName() != t.QualifiedName() && other.ShadowName() == t.ShadowName() {
			d.errorf(o.valueAt("shadow"), "tables %s and %s would share the shadow copy %s.%s; keep shadow: true on one of them",
				other.QualifiedName(), t.QualifiedName(), ShadowSchema, t.ShadowName())
		}
	}
}
