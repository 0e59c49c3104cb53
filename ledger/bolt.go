package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltOptions configures OpenBolt. All fields are optional.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file lock when another process has
	// the file open (default 1s); on timeout OpenBolt fails with ErrUnavailable.
	LockTimeout time.Duration
	// Mode is the accounting mode (default ModeBasic). A file remembers the
	// mode it was created with and refuses to open under another
	// (ErrUnsupportedMode).
	Mode Mode
	// MaxBatch is the most debits committed in one transaction (default 256).
	MaxBatch int
	// Logger receives operational messages (default: discarded).
	Logger *slog.Logger
}

// BoltStore is the embedded ledger: one bbolt file, for a single proxy node.
//
// Debits are applied by one writer goroutine with group commit: a debit that
// arrives while a commit is in flight joins the next transaction, so
// concurrent debits share one fsync while a lone debit is never delayed by a
// timer. Every transaction is fsynced before any of its debits returns.
type BoltStore struct {
	db   *bolt.DB
	log  *slog.Logger
	mode Mode
	max  int

	mu     sync.RWMutex // guards closed and sends on reqs
	closed bool
	reqs   chan *boltReq
	done   chan struct{}

	// wmu serialises the write transactions that use states (the writer's
	// commits and Grant), which bbolt serialises anyway.
	wmu sync.Mutex
	// states are the decoded account states as of the last committed write
	// transaction, kept across commits so that a debit does not decode its
	// accounts again: this process holds the file's lock, so only its own
	// transactions change them. A failed transaction may have changed some
	// in memory, so it drops them all.
	states map[string]*account
}

// maxCachedStates bounds states; past it they are dropped and decoded again
// (daily and monthly budgets add a state per analyst and period).
const maxCachedStates = 1 << 14

var _ Store = (*BoltStore)(nil)

var (
	bucketMeta     = []byte("meta")
	bucketAccounts = []byte("accounts")
	bucketAudit    = []byte("audit")
	bucketIDs      = []byte("ids")
	bucketBudgets  = []byte("budgets") // level states other than analysts' lifetime accounts, by stateKey

	keyFormat   = []byte("format")
	keyMode     = []byte("mode")
	keyHeadSeq  = []byte("head_seq")
	keyHeadHash = []byte("head_hash")
)

const boltFormat = "dpproxy-ledger/1"

type boltReq struct {
	ctx    context.Context
	c      *Charge
	a      amounts
	body   []byte
	digest string
	res    chan boltRes
}

type boltRes struct {
	bal Balance
	err error
}

// OpenBolt opens (creating if needed) the ledger file at path. A file that is
// not a ledger, is corrupt, or stays locked by another process for
// opts.LockTimeout yields an error wrapping ErrUnavailable.
func OpenBolt(path string, opts BoltOptions) (s *BoltStore, err error) {
	mode, err := checkMode(opts.Mode)
	if err != nil {
		return nil, err
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: opening %s: corrupt file: %v", ErrUnavailable, path, p)
		}
	}()
	if err := preflight(path); err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%w: opening %s: file is locked by another process (waited %v)", ErrUnavailable, path, opts.LockTimeout)
		}
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := meta.Get(keyFormat); {
		case f == nil:
			if tx.Bucket(bucketAudit) != nil {
				return errors.New("not a dpproxy ledger (missing format marker)")
			}
			if err := meta.Put(keyFormat, []byte(boltFormat)); err != nil {
				return err
			}
			if err := meta.Put(keyMode, []byte(mode)); err != nil {
				return err
			}
		case string(f) != boltFormat:
			return fmt.Errorf("unknown ledger format %q (want %q)", f, boltFormat)
		}
		if m := Mode(meta.Get(keyMode)); m != mode {
			return fmt.Errorf("%w: file uses accounting mode %q, store opened with %q", ErrUnsupportedMode, m, mode)
		}
		for _, b := range [][]byte{bucketAccounts, bucketAudit, bucketIDs, bucketBudgets} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		if errors.Is(err, ErrUnsupportedMode) {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
	}
	s = &BoltStore{
		db:   db,
		log:  opts.Logger,
		mode: mode,
		max:  opts.MaxBatch,
		reqs: make(chan *boltReq, opts.MaxBatch),
		done: make(chan struct{}),
	}
	go s.writer()
	return s, nil
}

// Debit implements Store.
func (s *BoltStore) Debit(ctx context.Context, c Charge) (Balance, error) {
	a, err := validate(&c, s.mode)
	if err != nil {
		return Balance{}, err
	}
	if err := ctx.Err(); err != nil {
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b := newBody(&c, a, s.mode)
	body, digest, err := b.encode()
	if err != nil {
		return Balance{}, fmt.Errorf("%w: encoding entry: %v", ErrInvalidCharge, err)
	}
	req := &boltReq{ctx: ctx, c: &c, a: a, body: body, digest: digest, res: make(chan boltRes, 1)}

	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Balance{}, ErrClosed
	}
	select {
	case s.reqs <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	// Once queued, the debit may commit even if ctx ends now: returning an
	// error then over-reports (the caller refuses the query), never under-
	// charges. A retry with the same ID returns the committed result.
	select {
	case r := <-req.res:
		return r.bal, r.err
	case <-ctx.Done():
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

func (s *BoltStore) writer() {
	defer close(s.done)
	batch := make([]*boltReq, 0, s.max)
	for first := range s.reqs {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < s.max {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

func (s *BoltStore) commit(batch []*boltReq) {
	results := make([]boltRes, len(batch))
	err := s.writeStates(func(states *boltStates) error {
		// Debits of one analyst (or one team) in a batch read and update
		// one decoded state in memory; it is encoded and stored once, at
		// the end, like the chain's head.
		tx := states.tx
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				results[i] = boltRes{err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
				continue
			}
			res, err := s.apply(tx, r, states)
			if err != nil {
				return err
			}
			results[i] = res
		}
		return nil
	})
	for i, r := range batch {
		if err != nil {
			r.res <- boltRes{err: err}
		} else {
			r.res <- results[i]
		}
	}
	if err != nil {
		s.log.Error("ledger: commit failed", "debits", len(batch), "err", err)
	}
}

// apply performs one debit inside the transaction, updating the batch's
// account states (stored by the caller). Budget and conflict errors are
// results, not transaction failures: they change nothing.
func (s *BoltStore) apply(tx *bolt.Tx, r *boltReq, states *boltStates) (boltRes, error) {
	c, a := r.c, r.a
	ids, audit := tx.Bucket(bucketIDs), tx.Bucket(bucketAudit)

	if v := ids.Get(idKey(c.Analyst, c.ID)); v != nil {
		rec, b, err := getRecordBody(audit, v[:8])
		if err != nil {
			return boltRes{}, err
		}
		if b.Kind != "" || b.EpsUnits != a.eps || b.DeltaUnits != a.delta {
			return boltRes{err: fmt.Errorf("%w: id %q was charged epsilon %g, delta %g",
				ErrIDConflict, c.ID, fromEps(b.EpsUnits), fromDelta(b.DeltaUnits))}, nil
		}
		return boltRes{bal: storedBalance(v, rec, b, s.mode)}, nil
	}

	states.analyst = c.Analyst
	life, err := states.get(level{Account: analystAccount(c.Analyst)})
	if err != nil {
		return boltRes{}, err
	}
	lv := make([]*account, len(a.levels))
	for i, l := range a.levels {
		if lv[i], err = states.get(l); err != nil {
			return boltRes{}, err
		}
		if !lv[i].fits(&a, l, s.mode) {
			return boltRes{err: budgetError(c.Analyst, &a, l, lv[i], s.mode)}, nil
		}
	}
	life.add(&a, s.mode)
	life.BudgetEps, life.BudgetDelta = a.levels[0].BudgetEps, a.levels[0].BudgetDelta
	states.mark(life)
	for i, l := range a.levels {
		if lv[i] != life {
			lv[i].add(&a, s.mode)
		}
		lv[i].BudgetEps, lv[i].BudgetDelta = l.BudgetEps, l.BudgetDelta
		states.mark(lv[i])
	}
	key, err := states.appendRecord(r.body, r.digest, life)
	if err != nil {
		return boltRes{}, err
	}
	bal := lv[0].balance(c.Analyst, a.levels[0], s.mode)
	snap, err := json.Marshal(lv[0])
	if err != nil {
		return boltRes{}, err
	}
	if err := ids.Put(idKey(c.Analyst, c.ID), append(key, snap...)); err != nil {
		return boltRes{}, err
	}
	return boltRes{bal: bal}, nil
}

// appendRecord appends one entry to the chain with the analyst's lifetime
// totals after it and returns its key. The new head is stored by put.
func (b *boltStates) appendRecord(body []byte, digest string, life *account) ([]byte, error) {
	if !b.headRead {
		b.seq, b.prev = 0, genesisHash
		if v := b.tx.Bucket(bucketMeta).Get(keyHeadSeq); v != nil {
			b.seq = binary.BigEndian.Uint64(v)
			b.prev = string(b.tx.Bucket(bucketMeta).Get(keyHeadHash))
		}
		b.headRead = true
	}
	seq := b.seq + 1
	rec := record{
		Seq: seq, Prev: b.prev,
		SpentEps: life.SpentEps, SpentDelta: life.SpentDelta, Queries: life.Queries,
		Body: string(body),
	}
	rec.Hash = linkHash(b.prev, seq, rec.SpentEps, rec.SpentDelta, rec.Queries, digest)
	key := seqKey(seq)
	recBytes, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	if err := b.tx.Bucket(bucketAudit).Put(key, recBytes); err != nil {
		return nil, err
	}
	b.seq, b.prev, b.headMoved = seq, rec.Hash, true
	return key, nil
}

// writeStates runs fn in a write transaction with the store's decoded
// account states, then stores the states fn changed and the chain's new
// head. If the transaction fails, the states are dropped.
func (s *BoltStore) writeStates(fn func(*boltStates) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.states == nil || len(s.states) > maxCachedStates {
		s.states = map[string]*account{}
	}
	err := s.update(func(tx *bolt.Tx) error {
		states := &boltStates{tx: tx, m: s.states}
		if err := fn(states); err != nil {
			return err
		}
		return states.put()
	})
	if err != nil {
		s.states = nil
	}
	return err
}

// boltStates loads and stores the account states one transaction touches:
// the analyst's lifetime account in bucketAccounts, other levels' states
// in bucketBudgets.
type boltStates struct {
	tx      *bolt.Tx
	analyst string              // whose debit or grant is being applied
	m       map[string]*account // by lifetimeKey(analyst) or "b/"+level.stateKey()
	// dirty are the states a debit or grant changed; only they are stored,
	// so a refused debit leaves no trace (not even an empty account).
	dirty map[*account]bool
	// The chain's head: read at the first append, stored by put.
	headRead, headMoved bool
	seq                 uint64
	prev                string
}

func (b *boltStates) mark(sts ...*account) {
	if b.dirty == nil {
		b.dirty = map[*account]bool{}
	}
	for _, st := range sts {
		b.dirty[st] = true
	}
}

func (b *boltStates) loc(l level) (*bolt.Bucket, []byte) {
	if l.lifetime(b.analyst) {
		return b.tx.Bucket(bucketAccounts), []byte(b.analyst)
	}
	return b.tx.Bucket(bucketBudgets), []byte(l.stateKey())
}

func (b *boltStates) get(l level) (*account, error) {
	bk, k := b.loc(l)
	key := "b/" + string(k)
	if l.lifetime(b.analyst) {
		key = lifetimeKey(b.analyst)
	}
	if st := b.m[key]; st != nil {
		return st, nil
	}
	st := &account{}
	if v := bk.Get(k); v != nil {
		if err := json.Unmarshal(v, st); err != nil {
			return nil, fmt.Errorf("account %q: %w", k, err)
		}
	}
	b.m[key] = st
	return st, nil
}

func (b *boltStates) put() error {
	if b.headMoved {
		meta := b.tx.Bucket(bucketMeta)
		if err := meta.Put(keyHeadSeq, seqKey(b.seq)); err != nil {
			return err
		}
		if err := meta.Put(keyHeadHash, []byte(b.prev)); err != nil {
			return err
		}
	}
	for key, st := range b.m {
		if !b.dirty[st] {
			continue
		}
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if analyst, ok := strings.CutPrefix(key, lifetimeKey("")); ok {
			err = b.tx.Bucket(bucketAccounts).Put([]byte(analyst), v)
		} else {
			_, k, _ := strings.Cut(key, "/")
			err = b.tx.Bucket(bucketBudgets).Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// storedBalance is the result recorded for a charge ID: the analyst's
// level state after it (files written before levels: the lifetime totals).
func storedBalance(idVal []byte, rec *record, b *entryBody, mode Mode) Balance {
	var st account
	if len(idVal) > 8 && json.Unmarshal(idVal[8:], &st) == nil {
		l := b.ownLevel()
		l.BudgetEps, l.BudgetDelta = st.BudgetEps, st.BudgetDelta
		return st.balance(b.Analyst, l, mode)
	}
	st = account{
		SpentEps: rec.SpentEps, SpentDelta: rec.SpentDelta,
		BudgetEps: b.BudgetEps, BudgetDelta: b.BudgetDelta,
		Queries: rec.Queries,
	}
	return st.balance(b.Analyst, b.ownLevel(), mode)
}

func getRecordBody(audit *bolt.Bucket, key []byte) (*record, *entryBody, error) {
	rec, err := getRecord(audit, key)
	if err != nil {
		return nil, nil, err
	}
	var b entryBody
	if err := json.Unmarshal([]byte(rec.Body), &b); err != nil {
		return nil, nil, fmt.Errorf("entry %d: %w", rec.Seq, err)
	}
	return rec, &b, nil
}

// Grant implements Store: one transaction adjusts the analyst's account and
// appends the entry.
func (s *BoltStore) Grant(ctx context.Context, g Grant) (Balance, error) {
	l, err := grantLevel(&g)
	if err != nil {
		return Balance{}, err
	}
	if err := ctx.Err(); err != nil {
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return Balance{}, ErrClosed
	}
	var bal Balance
	var result error
	err = s.writeStates(func(states *boltStates) error {
		ids, audit := states.tx.Bucket(bucketIDs), states.tx.Bucket(bucketAudit)
		if v := ids.Get(idKey(g.Analyst, g.ID)); v != nil {
			rec, b, err := getRecordBody(audit, v[:8])
			if err != nil {
				return err
			}
			if b.Kind == "" {
				result = fmt.Errorf("%w: id %q was used by a charge", ErrIDConflict, g.ID)
				return nil
			}
			bal = storedBalance(v, rec, b, s.mode)
			return nil
		}
		states.analyst = g.Analyst
		life, err := states.get(level{Account: analystAccount(g.Analyst)})
		if err != nil {
			return err
		}
		st, err := states.get(l)
		if err != nil {
			return err
		}
		eps, delta := signedUnits(g.Epsilon, epsScale), signedUnits(g.Delta, deltaScale)
		if g.Reset {
			eps, delta = st.SpentEps-st.GrantEps, st.SpentDelta-st.GrantDelta
		}
		gb := newGrantBody(&g, l, eps, delta, s.mode)
		body, digest, err := gb.encode()
		if err != nil {
			return err
		}
		st.GrantEps += eps
		st.GrantDelta += delta
		states.mark(life, st)
		key, err := states.appendRecord(body, digest, life)
		if err != nil {
			return err
		}
		l.BudgetEps, l.BudgetDelta = st.BudgetEps, st.BudgetDelta
		bal = st.balance(g.Analyst, l, s.mode)
		snap, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return ids.Put(idKey(g.Analyst, g.ID), append(key, snap...))
	})
	if err != nil {
		return Balance{}, err
	}
	return bal, result
}

// idKey is the idempotency key: charge IDs are scoped per analyst.
func idKey(analyst, id string) []byte {
	k := binary.AppendUvarint(nil, uint64(len(analyst)))
	k = append(k, analyst...)
	return append(k, id...)
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func getRecord(audit *bolt.Bucket, key []byte) (*record, error) {
	v := audit.Get(key)
	if v == nil {
		return nil, fmt.Errorf("audit entry %x missing", key)
	}
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("audit entry %x: %w", key, err)
	}
	return &rec, nil
}

// update and view run fn, turning failures (including bbolt panics on a
// corrupt file) into ErrUnavailable.
func (s *BoltStore) update(fn func(*bolt.Tx) error) error {
	return s.tx(true, fn)
}

func (s *BoltStore) view(fn func(*bolt.Tx) error) error {
	return s.tx(false, fn)
}

func (s *BoltStore) tx(write bool, fn func(*bolt.Tx) error) (err error) {
	// A fault on the memory-mapped file becomes a recoverable panic.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	wrapped := func(tx *bolt.Tx) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("corrupt ledger file: %v", p)
			}
		}()
		return fn(tx)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt ledger file: %v", p)
		}
		if err != nil && !errors.Is(err, ErrTampered) && !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}()
	if write {
		return s.db.Update(wrapped)
	}
	return s.db.View(wrapped)
}

// Balance implements Store.
func (s *BoltStore) Balance(ctx context.Context, analyst string) (Balance, error) {
	if err := ctx.Err(); err != nil {
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var acct account
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAccounts).Get([]byte(analyst)); v != nil {
			return json.Unmarshal(v, &acct)
		}
		return nil
	})
	if err != nil {
		return Balance{}, err
	}
	return acct.balance(analyst, acct.lifetimeLevel(analyst), s.mode), nil
}

// Balances implements Store.
func (s *BoltStore) Balances(ctx context.Context) ([]Balance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var out []Balance
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			var acct account
			if err := json.Unmarshal(v, &acct); err != nil {
				return fmt.Errorf("account %q: %w", k, err)
			}
			out = append(out, acct.balance(string(k), acct.lifetimeLevel(string(k)), s.mode))
			return nil
		})
	})
	// bbolt keys are byte-ordered, which is string order; sort anyway so
	// the contract does not depend on it.
	sort.Slice(out, func(i, j int) bool { return out[i].Analyst < out[j].Analyst })
	return out, err
}

// Entries implements Store: entries in chain order.
func (s *BoltStore) Entries(ctx context.Context, f Filter) ([]Entry, error) {
	var out []Entry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("audit entry %x: %w", k, err)
			}
			e, err := rec.entry()
			if err != nil {
				return err
			}
			if !f.match(&e) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) >= f.Limit {
				return nil
			}
		}
		return nil
	})
	return out, err
}

// Verify implements Store. It walks the whole chain, checks that the head
// recorded in the file matches its last entry (so a deleted tail is
// detected), that every charge ID points at its entry, and that every
// account and period bucket equals the replay of its entries.
func (s *BoltStore) Verify(ctx context.Context) error {
	return s.view(func(tx *bolt.Tx) error {
		ids, meta := tx.Bucket(bucketIDs), tx.Bucket(bucketMeta)
		rp := newReplay()
		prev, seq := genesisHash, uint64(0)
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			seq++
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				return tampered("entry %d: undecodable record: %v", seq, err)
			}
			if len(k) != 8 || binary.BigEndian.Uint64(k) != seq {
				return tampered("entry %d is missing (deleted)", seq)
			}
			b, err := rec.check(prev, seq)
			if err != nil {
				return tampered("%v", err)
			}
			if b.Mode != s.mode && !(b.Mode == "" && s.mode == ModeBasic) {
				return tampered("entry %d: accounting mode %q in a %q ledger", seq, b.Mode, s.mode)
			}
			if err := rp.apply(&b); err != nil {
				return tampered("entry %d: %v", seq, err)
			}
			life := rp.state(lifetimeKey(b.Analyst))
			if life.SpentEps != rec.SpentEps || life.SpentDelta != rec.SpentDelta || life.Queries != rec.Queries {
				return tampered("entry %d: running totals do not match earlier entries of analyst %q", seq, b.Analyst)
			}
			if v := ids.Get(idKey(b.Analyst, b.ID)); len(v) < 8 || !bytes.Equal(v[:8], k) {
				return tampered("entry %d: charge id %q is not indexed to it", seq, b.ID)
			}
			prev = rec.Hash
		}
		headSeq, headHash := uint64(0), genesisHash
		if v := meta.Get(keyHeadSeq); v != nil {
			headSeq, headHash = binary.BigEndian.Uint64(v), string(meta.Get(keyHeadHash))
		}
		if headSeq != seq || headHash != prev {
			return tampered("chain ends at entry %d but the head records entry %d (entries after %d deleted?)", seq, headSeq, seq)
		}
		if n := ids.Stats().KeyN; n != int(seq) {
			return tampered("%d charge ids indexed for %d entries", n, seq)
		}
		n := 0
		check := func(bk []byte, key func(k []byte) string, what string) error {
			return tx.Bucket(bk).ForEach(func(k, v []byte) error {
				n++
				var acct account
				if err := json.Unmarshal(v, &acct); err != nil {
					return tampered("%s %q: undecodable: %v", what, k, err)
				}
				want := rp.states[key(k)]
				if want == nil {
					return tampered("%s %q has no entries", what, k)
				}
				if !acct.equal(want) {
					return tampered("%s %q does not equal the sum of its entries (spent epsilon %s, entries say %s)",
						what, k, strconv.FormatFloat(fromEps(acct.SpentEps), 'g', -1, 64), strconv.FormatFloat(fromEps(want.SpentEps), 'g', -1, 64))
				}
				return nil
			})
		}
		if err := check(bucketAccounts, func(k []byte) string { return lifetimeKey(string(k)) }, "account"); err != nil {
			return err
		}
		if err := check(bucketBudgets, func(k []byte) string { return string(k) }, "budget"); err != nil {
			return err
		}
		if n != len(rp.states) {
			return tampered("%d accounts and budgets stored for %d with entries", n, len(rp.states))
		}
		return nil
	})
}

func tampered(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTampered, fmt.Sprintf(format, args...))
}

// Close stops accepting debits, waits for queued ones to commit and closes
// the file.
func (s *BoltStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}
