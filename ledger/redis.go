package ledger

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/dpproxy/dpproxy/mechanisms"
)

//go:embed lua/debit.lua
var debitSrc string

// debitScript is the one-step check + debit + audit append (lua/debit.lua).
var debitScript = redis.NewScript(debitSrc)

// RedisOptions configures NewRedis. All fields are optional.
type RedisOptions struct {
	// Prefix of every key (default "dpledger"). Several ledgers can share a
	// Redis under different prefixes. It must not contain '{' or '}'.
	Prefix string
	// Mode is the accounting mode (default ModeBasic).
	Mode Mode
	// HashTag, when set, puts every key of the ledger in the one Cluster
	// slot of {HashTag}. It is required on Redis Cluster when charges carry
	// Shared budgets (a team's or dataset's account is debited in the same
	// script as each member's account, and a script may only touch one
	// slot); it then pins the whole ledger to one shard (roughly 6–7k
	// debits/s, docs/benchmarks.md). Without it, each analyst's keys have
	// their own slot. Changing it later orphans the existing keys. It must
	// not contain '{' or '}'.
	HashTag string
	// AllowVolatile lets CheckDurability accept a Redis without
	// persistence (appendonly no). Only for tests and demos.
	AllowVolatile bool
	// Logger receives operational messages (default: discarded).
	Logger *slog.Logger
}

// RedisStore is the shared ledger for several proxies: a Redis, Sentinel or
// Cluster deployment reached through a go-redis UniversalClient.
//
// Keys, for analyst A (with '{', '}' and '%' in A percent-encoded):
//
//	<prefix>:{A}:acct        hash: the lifetime account, in fixed-point units, and the chain head
//	<prefix>:{A}:log         stream: the audit entries, IDs "<seq>-0"
//	<prefix>:{A}:ids         hash: charge ID -> result of that charge (idempotency)
//	<prefix>:{T}:b:<acct>@<bucket>  hash: the state of a budget level in one
//	                         period (bucket "life" for lifetime), T = A for the
//	                         analyst's own periodic budget, T = the account
//	                         ("team:x") for a shared one
//	<prefix>:analysts        set: every analyst ever charged (index for reports)
//
// With RedisOptions.HashTag G, every key above except the index is instead
// <prefix>:{G}:<A>:acct, <prefix>:{G}:<A>:log, <prefix>:{G}:<A>:ids and
// <prefix>:{G}:b:<acct>@<bucket>, all in one slot.
//
// The keys of one charge share a hash tag, so the debit script touches one
// Cluster slot (shared budgets need HashTag for that). The index is added
// to before an analyst's first debit in each process; it is never needed
// for the budget check.
type RedisStore struct {
	client  redis.UniversalClient
	prefix  string
	hashTag string
	cluster bool
	mode    Mode
	log     *slog.Logger
	volOK   bool
	closed  atomic.Bool
	// indexed holds analysts known to be in the report index.
	indexed sync.Map
}

var _ Store = (*RedisStore)(nil)

// NewRedis returns a store using client, which the caller keeps owning
// (Close does not close it). It does no I/O; call CheckDurability at start.
//
// Configure the client with ContextTimeoutEnabled: true so that a debit
// honours its context deadline (go-redis otherwise waits for ReadTimeout);
// every failure to reach Redis in time is returned wrapping ErrUnavailable.
func NewRedis(client redis.UniversalClient, opts RedisOptions) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("ledger: NewRedis: nil client")
	}
	mode, err := checkMode(opts.Mode)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "dpledger"
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("ledger: NewRedis: prefix %q must not contain '{' or '}'", opts.Prefix)
	}
	if strings.ContainsAny(opts.HashTag, "{}") {
		return nil, fmt.Errorf("ledger: NewRedis: hash tag %q must not contain '{' or '}'", opts.HashTag)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var ctxTimeouts bool
	switch c := client.(type) {
	case *redis.Client:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ctxTimeouts = c.Options().ContextTimeoutEnabled
	default:
		ctxTimeouts = true // unknown: do not warn
	}
	if !ctxTimeouts {
		opts.Logger.Warn("ledger: the Redis client ignores context deadlines (ContextTimeoutEnabled false); a stalled Redis delays debits up to the client's ReadTimeout")
	}
	_, cluster := client.(*redis.ClusterClient)
	return &RedisStore{client: client, prefix: opts.Prefix, hashTag: opts.HashTag, cluster: cluster,
		mode: mode, log: opts.Logger, volOK: opts.AllowVolatile}, nil
}

func tagEscape(s string) string {
	if !strings.ContainsAny(s, "{}%") {
		return s
	}
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
	return r.Replace(s)
}

func (s *RedisStore) keys(analyst string) (acct, log, ids string) {
	base := s.prefix + ":{" + tagEscape(analyst) + "}:"
	if s.hashTag != "" {
		base = s.prefix + ":{" + s.hashTag + "}:" + tagEscape(analyst) + ":"
	}
	return base + "acct", base + "log", base + "ids"
}

// levelKey is the key holding the state of level l.
func (s *RedisStore) levelKey(analyst string, l level) string {
	if l.lifetime(analyst) {
		acct, _, _ := s.keys(analyst)
		return acct
	}
	tag := s.hashTag
	if tag == "" {
		if a, ok := strings.CutPrefix(l.Account, "analyst:"); ok {
			tag = tagEscape(a)
		} else {
			tag = tagEscape(l.Account)
		}
	}
	bucket := l.Bucket
	if bucket == "" {
		bucket = "life"
	}
	return s.prefix + ":{" + tag + "}:b:" + tagEscape(l.Account) + "@" + bucket
}

// rdpConvArgs are the conversion constants passed to the script.
var rdpConvArgs = func() []any {
	out := make([]any, 0, 2*mechanisms.NumRDPOrders)
	for _, v := range rdpShift {
		out = append(out, strconv.FormatFloat(v, 'g', -1, 64))
	}
	for _, v := range rdpInv {
		out = append(out, strconv.FormatFloat(v, 'g', -1, 64))
	}
	return out
}()

func (s *RedisStore) indexKey() string { return s.prefix + ":analysts" }

// unavailable wraps a Redis or context error in ErrUnavailable (keeping the
// cause reachable with errors.Is).
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
}

// CheckDurability returns an error unless every master (every node of a
// Cluster) runs with appendonly yes, or opts.AllowVolatile is set. A server
// with appendfsync other than "always" passes with a warning in the log: it
// can lose about a second of debits in a crash.
func (s *RedisStore) CheckDurability(ctx context.Context) error {
	check := func(ctx context.Context, c *redis.Client) error {
		cfg, err := c.ConfigGet(ctx, "append*").Result()
		if err != nil {
			return unavailable("CONFIG GET appendonly on "+c.Options().Addr, err)
		}
		if cfg["appendonly"] != "yes" {
			if s.volOK {
				s.log.Warn("ledger: Redis has no persistence (appendonly no); allowed by AllowVolatile", "addr", c.Options().Addr)
				return nil
			}
			return fmt.Errorf("ledger: Redis at %s is volatile (appendonly %q): a restart would erase spent budgets; set appendonly yes (and appendfsync always), or AllowVolatile for tests",
				c.Options().Addr, cfg["appendonly"])
		}
		if f := cfg["appendfsync"]; f != "always" {
			s.log.Warn("ledger: Redis appendfsync is not 'always': a crash can lose the last debits", "addr", c.Options().Addr, "appendfsync", f)
		}
		return nil
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, check)
	case *redis.Client:
		return check(ctx, c)
	default:
		cfg, err := s.client.ConfigGet(ctx, "appendonly").Result()
		if err != nil {
			return unavailable("CONFIG GET appendonly", err)
		}
		if cfg["appendonly"] != "yes" && !s.volOK {
			return fmt.Errorf("ledger: Redis is volatile (appendonly %q); set appendonly yes, or AllowVolatile for tests", cfg["appendonly"])
		}
		return nil
	}
}

// Debit implements Store with one Lua script (lua/debit.lua): one round trip.
func (s *RedisStore) Debit(ctx context.Context, c Charge) (Balance, error) {
	if s.closed.Load() {
		return Balance{}, ErrClosed
	}
	a, err := validate(&c, s.mode)
	if err != nil {
		return Balance{}, err
	}
	if len(a.levels) > 1 && s.cluster && s.hashTag == "" {
		return Balance{}, fmt.Errorf("%w: shared budgets on Redis Cluster need RedisOptions.HashTag (all keys of one charge must share a slot)", ErrInvalidCharge)
	}
	if err := ctx.Err(); err != nil {
		return Balance{}, unavailable("debit", err)
	}
	b := newBody(&c, a, s.mode)
	body, digest := b.encode()
	if err := s.index(ctx, c.Analyst); err != nil {
		return Balance{}, err
	}
	acct, log, ids := s.keys(c.Analyst)
	keys := []string{acct, log, ids}
	args := []any{KindCharge, c.ID, a.eps, a.delta, body, digest, string(s.mode), len(a.levels)}
	for _, l := range a.levels {
		keys = append(keys, s.levelKey(c.Analyst, l))
		args = append(args, l.BudgetEps, l.BudgetDelta)
	}
	if s.mode == ModeRDP {
		args = append(args, a.xeps, a.xdelt)
		for _, r := range a.rdp {
			args = append(args, r)
		}
		args = append(args, rdpConvArgs...)
	}
	args = append(args, a.queries)
	res, err := debitScript.Run(ctx, s.client, keys, args...).StringSlice()
	if err != nil {
		return Balance{}, unavailable("debit script", err)
	}
	if len(res) == 0 {
		return Balance{}, fmt.Errorf("%w: debit script returned nothing", ErrUnavailable)
	}
	switch res[0] {
	case "ok":
		if len(res) != 4 {
			break
		}
		st, err := parseState(res[3])
		if err != nil {
			break
		}
		return st.balance(c.Analyst, a.levels[0], s.mode), nil
	case "budget":
		if len(res) != 3 {
			break
		}
		i, err := strconv.Atoi(res[1])
		st, err2 := parseState(res[2])
		if err != nil || err2 != nil || i < 0 || i >= len(a.levels) {
			break
		}
		return Balance{}, budgetError(c.Analyst, &a, a.levels[i], &st, s.mode)
	case "dup":
		if len(res) != 2 {
			break
		}
		d, err := parseDone(res[1])
		if err != nil {
			break
		}
		if d.kind != KindCharge || d.eps != a.eps || d.delta != a.delta {
			return Balance{}, fmt.Errorf("%w: id %q was charged epsilon %g, delta %g",
				ErrIDConflict, c.ID, fromEps(d.eps), fromDelta(d.delta))
		}
		l := a.levels[0]
		l.BudgetEps, l.BudgetDelta = d.st.BudgetEps, d.st.BudgetDelta
		return d.st.balance(c.Analyst, l, s.mode), nil
	}
	return Balance{}, fmt.Errorf("%w: debit script returned %q", ErrUnavailable, res)
}

// index adds analyst to the report index before its first debit or grant
// in this process. The index is a separate (cross-slot) key, so it cannot
// be in the script.
func (s *RedisStore) index(ctx context.Context, analyst string) error {
	if _, ok := s.indexed.Load(analyst); ok {
		return nil
	}
	if err := s.client.SAdd(ctx, s.indexKey(), analyst).Err(); err != nil {
		return unavailable("SADD analysts", err)
	}
	s.indexed.Store(analyst, true)
	return nil
}

// Grant implements Store with the same script (kind "grant"). A reset reads
// the account first and applies only if it is unchanged (else retries).
func (s *RedisStore) Grant(ctx context.Context, g Grant) (Balance, error) {
	if s.closed.Load() {
		return Balance{}, ErrClosed
	}
	l, err := grantLevel(&g)
	if err != nil {
		return Balance{}, err
	}
	if err := s.index(ctx, g.Analyst); err != nil {
		return Balance{}, err
	}
	acct, log, ids := s.keys(g.Analyst)
	lkey := s.levelKey(g.Analyst, l)
	for range 20 {
		eps, delta := signedUnits(g.Epsilon, epsScale), signedUnits(g.Delta, deltaScale)
		expect := []any{"", "", "", ""}
		if g.Reset {
			st, _, err := s.state(ctx, lkey)
			if err != nil {
				return Balance{}, err
			}
			eps, delta = st.SpentEps-st.GrantEps, st.SpentDelta-st.GrantDelta
			expect = []any{st.SpentEps, st.SpentDelta, st.GrantEps, st.GrantDelta}
		}
		gb := newGrantBody(&g, l, eps, delta, s.mode)
		body, digest := gb.encode()
		args := append([]any{KindGrant, g.ID, eps, delta, body, digest, string(s.mode), 1, 0, 0}, expect...)
		res, err := debitScript.Run(ctx, s.client, []string{acct, log, ids, lkey}, args...).StringSlice()
		if err != nil {
			return Balance{}, unavailable("grant script", err)
		}
		switch {
		case len(res) == 1 && res[0] == "retry":
			continue
		case len(res) == 4 && res[0] == "ok":
			st, err := parseState(res[3])
			if err == nil {
				l.BudgetEps, l.BudgetDelta = st.BudgetEps, st.BudgetDelta
				return st.balance(g.Analyst, l, s.mode), nil
			}
		case len(res) == 2 && res[0] == "dup":
			d, err := parseDone(res[1])
			if err == nil {
				if d.kind != KindGrant {
					return Balance{}, fmt.Errorf("%w: id %q was used by a charge", ErrIDConflict, g.ID)
				}
				l.BudgetEps, l.BudgetDelta = d.st.BudgetEps, d.st.BudgetDelta
				return d.st.balance(g.Analyst, l, s.mode), nil
			}
		}
		return Balance{}, fmt.Errorf("%w: grant script returned %q", ErrUnavailable, res)
	}
	return Balance{}, fmt.Errorf("%w: reset of %q kept racing with debits", ErrUnavailable, g.Analyst)
}

// stateFields are the fields of a state hash, in the script's order.
var stateFields = func() []string {
	f := []string{"spent_eps", "spent_delta", "queries", "grant_eps", "grant_delta", "x_eps", "x_delta", "budget_eps", "budget_delta"}
	for j := 1; j <= mechanisms.NumRDPOrders; j++ {
		f = append(f, "r"+strconv.Itoa(j))
	}
	return f
}()

const baseFields = 9

// parseState decodes a space-separated state as the script writes it.
func parseState(s string) (account, error) {
	v, err := parseInts(strings.Fields(s))
	if err != nil {
		return account{}, err
	}
	if len(v) != baseFields && len(v) != baseFields+mechanisms.NumRDPOrders {
		return account{}, fmt.Errorf("state with %d fields", len(v))
	}
	st := account{SpentEps: v[0], SpentDelta: v[1], Queries: v[2], GrantEps: v[3], GrantDelta: v[4],
		XEps: v[5], XDelta: v[6], BudgetEps: v[7], BudgetDelta: v[8]}
	if len(v) > baseFields {
		st.RDP = v[baseFields:]
	}
	return st, nil
}

type doneResult struct {
	seq        uint64
	kind       string
	eps, delta int64
	st         account
}

// parseDone decodes a charge-id record "seq kind eps delta <state>".
func parseDone(s string) (doneResult, error) {
	f := strings.SplitN(s, " ", 5)
	if len(f) != 5 {
		return doneResult{}, fmt.Errorf("charge-id record %q", s)
	}
	var d doneResult
	var err error
	if d.seq, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return d, err
	}
	d.kind = f[1]
	v, err := parseInts(f[2:4])
	if err != nil {
		return d, err
	}
	d.eps, d.delta = v[0], v[1]
	d.st, err = parseState(f[4])
	return d, err
}

func parseInts(ss []string) ([]int64, error) {
	out := make([]int64, len(ss))
	for i, s := range ss {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// hmgetFields are read for a state hash: the state, then the chain head.
var hmgetFields = append(append([]string(nil), stateFields...), "seq", "head")

func parseAccount(vals []any) (acct account, exists bool, err error) {
	if len(vals) != len(hmgetFields) {
		return acct, false, fmt.Errorf("HMGET returned %d values", len(vals))
	}
	ints := make([]int64, len(hmgetFields)-1)
	rdp := false
	for i := range ints {
		if vals[i] == nil {
			continue
		}
		exists = true
		if i >= baseFields && i < len(stateFields) {
			rdp = true
		}
		str, _ := vals[i].(string)
		if ints[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return acct, exists, fmt.Errorf("field %s: %w", hmgetFields[i], err)
		}
	}
	head, _ := vals[len(vals)-1].(string)
	acct = account{
		SpentEps: ints[0], SpentDelta: ints[1], Queries: ints[2], GrantEps: ints[3], GrantDelta: ints[4],
		XEps: ints[5], XDelta: ints[6], BudgetEps: ints[7], BudgetDelta: ints[8],
		Seq: uint64(ints[len(ints)-1]), Head: head,
	}
	if rdp {
		acct.RDP = ints[baseFields:len(stateFields)]
	}
	return acct, exists, nil
}

func (s *RedisStore) state(ctx context.Context, key string) (account, bool, error) {
	vals, err := s.client.HMGet(ctx, key, hmgetFields...).Result()
	if err != nil {
		return account{}, false, unavailable("HMGET account", err)
	}
	acct, ok, err := parseAccount(vals)
	if err != nil {
		return account{}, false, fmt.Errorf("%w: %s: %v", ErrUnavailable, key, err)
	}
	return acct, ok, nil
}

func (s *RedisStore) account(ctx context.Context, analyst string) (account, bool, error) {
	acctKey, _, _ := s.keys(analyst)
	return s.state(ctx, acctKey)
}

// Balance implements Store.
func (s *RedisStore) Balance(ctx context.Context, analyst string) (Balance, error) {
	acct, _, err := s.account(ctx, analyst)
	if err != nil {
		return Balance{}, err
	}
	return acct.balance(analyst, acct.lifetimeLevel(analyst), s.mode), nil
}

func (s *RedisStore) analysts(ctx context.Context) ([]string, error) {
	names, err := s.client.SMembers(ctx, s.indexKey()).Result()
	if err != nil {
		return nil, unavailable("SMEMBERS analysts", err)
	}
	sort.Strings(names)
	return names, nil
}

// Balances implements Store: every analyst that has been charged.
func (s *RedisStore) Balances(ctx context.Context) ([]Balance, error) {
	names, err := s.analysts(ctx)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.SliceCmd, len(names))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range names {
			acctKey, _, _ := s.keys(a)
			cmds[i] = p.HMGet(ctx, acctKey, hmgetFields...)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("HMGET accounts", err)
	}
	var out []Balance
	for i, a := range names {
		acct, ok, err := parseAccount(cmds[i].Val())
		if err != nil {
			return nil, fmt.Errorf("%w: account %q: %v", ErrUnavailable, a, err)
		}
		if ok {
			out = append(out, acct.balance(a, acct.lifetimeLevel(a), s.mode))
		}
	}
	return out, nil
}

// streamRecords reads an analyst's whole audit stream in pages.
func (s *RedisStore) streamRecords(ctx context.Context, analyst string, fn func(id string, r *record) error) error {
	_, logKey, _ := s.keys(analyst)
	start := "-"
	for {
		msgs, err := s.client.XRangeN(ctx, logKey, start, "+", 1000).Result()
		if err != nil {
			return unavailable("XRANGE audit", err)
		}
		for _, m := range msgs {
			r, err := streamRecord(m)
			if err != nil {
				return fmt.Errorf("%w: audit entry %s of %q: %v", ErrTampered, m.ID, analyst, err)
			}
			if err := fn(m.ID, r); err != nil {
				return err
			}
		}
		if len(msgs) < 1000 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

func streamRecord(m redis.XMessage) (*record, error) {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	seqStr, _, _ := strings.Cut(m.ID, "-")
	r := &record{Prev: str("prev"), Hash: str("hash"), Body: str("body")}
	var err error
	if r.Seq, err = strconv.ParseUint(seqStr, 10, 64); err != nil {
		return nil, err
	}
	for k, p := range map[string]*int64{"spent_eps": &r.SpentEps, "spent_delta": &r.SpentDelta, "queries": &r.Queries} {
		if *p, err = strconv.ParseInt(str(k), 10, 64); err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
	}
	return r, nil
}

// Entries implements Store. With an analyst filter the entries are in chain
// order; without, all analysts' entries are merged by time, then analyst,
// then Seq.
func (s *RedisStore) Entries(ctx context.Context, f Filter) ([]Entry, error) {
	names := []string{f.Analyst}
	if f.Analyst == "" {
		var err error
		if names, err = s.analysts(ctx); err != nil {
			return nil, err
		}
	}
	var out []Entry
	for _, a := range names {
		var mine []Entry
		err := s.streamRecords(ctx, a, func(_ string, r *record) error {
			e, err := r.entry()
			if err != nil {
				return err
			}
			if f.match(&e) {
				mine = append(mine, e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if f.Analyst != "" && f.Limit > 0 && len(mine) > f.Limit {
			mine = mine[:f.Limit]
		}
		out = append(out, mine...)
	}
	if f.Analyst == "" {
		sort.SliceStable(out, func(i, j int) bool {
			a, b := &out[i], &out[j]
			if !a.Time.Equal(b.Time) {
				return a.Time.Before(b.Time)
			}
			if a.Analyst != b.Analyst {
				return a.Analyst < b.Analyst
			}
			return a.Seq < b.Seq
		})
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out, nil
}

// Verify implements Store: for every analyst, the stream must be the
// unbroken chain 1..n, the account must equal the sums of the entries and
// point at the last one, and the charge-id hash must index exactly those
// entries.
func (s *RedisStore) Verify(ctx context.Context) error {
	names, err := s.analysts(ctx)
	if err != nil {
		return err
	}
	// Every account must be in the index, or reports would omit it.
	accounts, err := s.scanAccounts(ctx)
	if err != nil {
		return err
	}
	indexed := make(map[string]bool, len(names))
	for _, a := range names {
		indexed[a] = true
	}
	for _, a := range accounts {
		if !indexed[a] {
			return fmt.Errorf("%w: analyst %q has an account but is missing from the index %s", ErrTampered, a, s.indexKey())
		}
	}
	rp := newReplay()
	for _, a := range names {
		if err := s.verifyAnalyst(ctx, a, rp); err != nil {
			return err
		}
	}
	// Period buckets and shared budgets: each must equal the replay of all
	// analysts' entries that drew on it.
	for key, l := range rp.levels {
		st, _, err := s.state(ctx, s.levelKey("", l))
		if err != nil {
			return err
		}
		want := rp.states[key]
		if s.mode != ModeRDP {
			st.RDP = nil
		}
		if !st.equal(want) {
			return fmt.Errorf("%w: budget %q in period %q does not equal the sum of its entries (spent epsilon %g, entries say %g)",
				ErrTampered, l.Account, l.Bucket, fromEps(st.SpentEps), fromEps(want.SpentEps))
		}
	}
	return nil
}

// scanAccounts lists the analysts that have an account key, scanning every
// master of a Cluster.
func (s *RedisStore) scanAccounts(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	pattern, head, tail := s.prefix+":{*}:acct", s.prefix+":{", "}:acct"
	if s.hashTag != "" {
		head = s.prefix + ":{" + s.hashTag + "}:"
		pattern, tail = head+"*:acct", ":acct"
	}
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			tag := strings.TrimSuffix(strings.TrimPrefix(k, head), tail)
			if a, err := url.PathUnescape(tag); err == nil {
				mu.Lock()
				seen[a] = true
				mu.Unlock()
			}
		}
		if err := it.Err(); err != nil {
			return unavailable("SCAN accounts", err)
		}
		return nil
	}
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

func (s *RedisStore) verifyAnalyst(ctx context.Context, analyst string, rp *replay) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: analyst %q: %s", ErrTampered, analyst, fmt.Sprintf(format, args...))
	}
	prev, seq := genesisHash, uint64(0)
	idSeq := map[string]uint64{}
	err := s.streamRecords(ctx, analyst, func(id string, r *record) error {
		seq++
		if id != strconv.FormatUint(seq, 10)+"-0" {
			if r.Seq > seq {
				return bad("entry %d is missing (deleted)", seq)
			}
			return bad("entry %d: stored under stream ID %s", seq, id)
		}
		b, err := r.check(prev, seq)
		if err != nil {
			return bad("%v", err)
		}
		if b.Analyst != analyst {
			return bad("entry %d belongs to analyst %q", seq, b.Analyst)
		}
		if b.Mode != s.mode && !(b.Mode == "" && s.mode == ModeBasic) {
			return bad("entry %d: accounting mode %q in a %q ledger", seq, b.Mode, s.mode)
		}
		if err := rp.apply(&b); err != nil {
			return bad("entry %d: %v", seq, err)
		}
		life := rp.state(lifetimeKey(analyst))
		if life.SpentEps != r.SpentEps || life.SpentDelta != r.SpentDelta || life.Queries != r.Queries {
			return bad("entry %d: running totals do not match earlier entries", seq)
		}
		idSeq[b.ID] = seq
		prev = r.Hash
		return nil
	})
	if err != nil {
		return err
	}
	acct, exists, err := s.account(ctx, analyst)
	if err != nil {
		return err
	}
	if !exists && seq == 0 {
		return nil // indexed, but never successfully charged
	}
	sum := *rp.state(lifetimeKey(analyst))
	sum.Seq, sum.Head = seq, prev
	if acct.Seq != seq || acct.Head != prev {
		return bad("chain ends at entry %d but the account records entry %d (entries after %d deleted?)", seq, acct.Seq, seq)
	}
	if s.mode != ModeRDP {
		acct.RDP = nil
	}
	if !acct.equal(&sum) {
		return bad("account does not equal the sum of its entries (spent epsilon %g, entries say %g)",
			fromEps(acct.SpentEps), fromEps(sum.SpentEps))
	}
	_, _, idsKey := s.keys(analyst)
	ids, err := s.client.HGetAll(ctx, idsKey).Result()
	if err != nil {
		return unavailable("HGETALL charge ids", err)
	}
	if len(ids) != len(idSeq) {
		return bad("%d charge ids indexed for %d entries", len(ids), len(idSeq))
	}
	for id, want := range idSeq {
		got, _, _ := strings.Cut(ids[id], " ")
		if got != strconv.FormatUint(want, 10) {
			return bad("entry %d: charge id %q is not indexed to it", want, id)
		}
	}
	return nil
}

// Close marks the store closed. It does not close the client, which the
// caller owns.
func (s *RedisStore) Close() error {
	s.closed.Store(true)
	return nil
}
