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
//	<prefix>:{A}:acct   hash: the account, in fixed-point units, and the chain head
//	<prefix>:{A}:log    stream: the audit entries, IDs "<seq>-0"
//	<prefix>:{A}:ids    hash: charge ID -> result of that charge (idempotency)
//	<prefix>:analysts   set: every analyst ever charged (index for reports)
//
// The first three share the hash tag {A}, so the debit script touches one
// Cluster slot. The index is added to before an analyst's first debit in
// each process; it is never needed for the budget check.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	mode   Mode
	log    *slog.Logger
	volOK  bool
	closed atomic.Bool
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
	return &RedisStore{client: client, prefix: opts.Prefix, mode: mode, log: opts.Logger, volOK: opts.AllowVolatile}, nil
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
	return base + "acct", base + "log", base + "ids"
}

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
	a, err := validate(&c)
	if err != nil {
		return Balance{}, err
	}
	if err := ctx.Err(); err != nil {
		return Balance{}, unavailable("debit", err)
	}
	b := newBody(&c, a, s.mode)
	body, digest, err := b.encode()
	if err != nil {
		return Balance{}, fmt.Errorf("%w: encoding entry: %v", ErrInvalidCharge, err)
	}

	if _, ok := s.indexed.Load(c.Analyst); !ok {
		// The report index is a separate (cross-slot) key, so it cannot be
		// in the script; added before the first debit of each analyst.
		if err := s.client.SAdd(ctx, s.indexKey(), c.Analyst).Err(); err != nil {
			return Balance{}, unavailable("SADD analysts", err)
		}
		s.indexed.Store(c.Analyst, true)
	}

	acct, log, ids := s.keys(c.Analyst)
	res, err := debitScript.Run(ctx, s.client, []string{acct, log, ids},
		c.ID, a.eps, a.delta, a.budgetEps, a.budgetDelta, body, digest).StringSlice()
	if err != nil {
		return Balance{}, unavailable("debit script", err)
	}
	if len(res) == 0 {
		return Balance{}, fmt.Errorf("%w: debit script returned nothing", ErrUnavailable)
	}
	switch res[0] {
	case "ok":
		if len(res) != 6 {
			break
		}
		v, err := parseInts(res[1:5])
		if err != nil {
			break
		}
		return account{SpentEps: v[1], SpentDelta: v[2], BudgetEps: a.budgetEps, BudgetDelta: a.budgetDelta, Queries: v[3]}.balance(c.Analyst), nil
	case "budget":
		if len(res) != 3 {
			break
		}
		v, err := parseInts(res[1:3])
		if err != nil {
			break
		}
		return Balance{}, budgetError(c.Analyst, a, v[0], v[1])
	case "dup":
		if len(res) != 2 {
			break
		}
		// seq eps delta spent_eps spent_delta budget_eps budget_delta queries
		v, err := parseInts(strings.Fields(res[1]))
		if err != nil || len(v) != 8 {
			break
		}
		if v[1] != a.eps || v[2] != a.delta {
			return Balance{}, fmt.Errorf("%w: id %q was charged epsilon %g, delta %g",
				ErrIDConflict, c.ID, fromEps(v[1]), fromDelta(v[2]))
		}
		return account{SpentEps: v[3], SpentDelta: v[4], BudgetEps: v[5], BudgetDelta: v[6], Queries: v[7]}.balance(c.Analyst), nil
	}
	return Balance{}, fmt.Errorf("%w: debit script returned %q", ErrUnavailable, res)
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

var acctFields = []string{"spent_eps", "spent_delta", "budget_eps", "budget_delta", "queries", "seq", "head"}

func parseAccount(vals []any) (acct account, exists bool, err error) {
	if len(vals) != len(acctFields) {
		return acct, false, fmt.Errorf("HMGET returned %d values", len(vals))
	}
	ints := make([]int64, 6)
	for i := range 6 {
		if vals[i] == nil {
			continue
		}
		exists = true
		str, _ := vals[i].(string)
		if ints[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return acct, exists, fmt.Errorf("field %s: %w", acctFields[i], err)
		}
	}
	head, _ := vals[6].(string)
	return account{
		SpentEps: ints[0], SpentDelta: ints[1], BudgetEps: ints[2], BudgetDelta: ints[3],
		Queries: ints[4], Seq: uint64(ints[5]), Head: head,
	}, exists, nil
}

func (s *RedisStore) account(ctx context.Context, analyst string) (account, bool, error) {
	acctKey, _, _ := s.keys(analyst)
	vals, err := s.client.HMGet(ctx, acctKey, acctFields...).Result()
	if err != nil {
		return account{}, false, unavailable("HMGET account", err)
	}
	acct, ok, err := parseAccount(vals)
	if err != nil {
		return account{}, false, fmt.Errorf("%w: account %q: %v", ErrUnavailable, analyst, err)
	}
	return acct, ok, nil
}

// Balance implements Store.
func (s *RedisStore) Balance(ctx context.Context, analyst string) (Balance, error) {
	acct, _, err := s.account(ctx, analyst)
	if err != nil {
		return Balance{}, err
	}
	return acct.balance(analyst), nil
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
			cmds[i] = p.HMGet(ctx, acctKey, acctFields...)
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
			out = append(out, acct.balance(a))
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
	for _, a := range names {
		if err := s.verifyAnalyst(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// scanAccounts lists the analysts that have an account key, scanning every
// master of a Cluster.
func (s *RedisStore) scanAccounts(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	pattern := s.prefix + ":{*}:acct"
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			tag := strings.TrimSuffix(strings.TrimPrefix(k, s.prefix+":{"), "}:acct")
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

func (s *RedisStore) verifyAnalyst(ctx context.Context, analyst string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: analyst %q: %s", ErrTampered, analyst, fmt.Sprintf(format, args...))
	}
	prev, seq := genesisHash, uint64(0)
	var sum account
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
		sum.SpentEps += b.EpsUnits
		sum.SpentDelta += b.DeltaUnits
		sum.Queries++
		sum.BudgetEps, sum.BudgetDelta = b.BudgetEps, b.BudgetDelta
		if sum.SpentEps != r.SpentEps || sum.SpentDelta != r.SpentDelta || sum.Queries != r.Queries {
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
	sum.Seq, sum.Head = seq, prev
	if acct.Seq != seq || acct.Head != prev {
		return bad("chain ends at entry %d but the account records entry %d (entries after %d deleted?)", seq, acct.Seq, seq)
	}
	if acct != sum {
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
