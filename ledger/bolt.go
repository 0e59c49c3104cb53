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
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
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
// arrives while a commit is in flight joins the next one, so concurrent
// debits share one fsync while a lone debit is never delayed by a timer.
// Every commit is synced to the journal (<path>-journal) before any of its
// debits returns, and copied into the bolt file behind it (boltwriter.go).
type BoltStore struct {
	db   *bolt.DB
	log  *slog.Logger
	mode Mode
	max  int

	mu     sync.RWMutex // guards closed and sends on reqs
	closed bool
	reqs   chan *boltReq
	done   chan struct{}

	journal     *os.File // <path>-journal; see journal.go
	journalSize int64    // writer only: where the next frame goes
	journalCap  int64    // writer only: the zero-filled length of the file

	// Writer only: the chain's head as journaled.
	headSeq  uint64
	headHash string
	// states are the decoded account states with every journaled change,
	// kept across commits so that a debit does not decode its accounts
	// again (this process holds the file's lock, so only it changes them).
	// The writer changes the map under stMu; Balance reads it.
	stMu   sync.RWMutex
	states map[string]*account

	// ck guards the checkpointer's queue and progress.
	ck        sync.Mutex
	ckCond    *sync.Cond
	ckQueue   []*boltBatch
	ckStop    bool
	ckDone    chan struct{}
	ckWaiters int               // waitCheckpoint callers waiting
	ckSeq     uint64            // the bolt file's head
	journaled uint64            // the journal's head
	pending   map[string]uint64 // idKey → entry, for IDs journaled but not yet in the file
	failed    error             // a journal or checkpoint write failed: debits are refused
}

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
	c      *Charge // a debit, or
	grant  *Grant  // a grant at level
	level  level
	a      amounts
	body   []byte
	digest string
	res    chan boltRes
	done   func(error) // StartDebit's: called by the writer before res is sent
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
	_, statErr := os.Stat(path)
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
	if statErr != nil { // bbolt created the file; make its name durable
		if err := syncDir(filepath.Dir(path)); err != nil {
			db.Close()
			return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
		}
	}
	s = &BoltStore{
		db:      db,
		log:     opts.Logger,
		mode:    mode,
		max:     opts.MaxBatch,
		reqs:    make(chan *boltReq, opts.MaxBatch),
		done:    make(chan struct{}),
		states:  map[string]*account{},
		ckDone:  make(chan struct{}),
		pending: map[string]uint64{},
	}
	s.ckCond = sync.NewCond(&s.ck)
	if err := s.openJournal(path + "-journal"); err != nil {
		if s.journal != nil {
			s.journal.Close()
		}
		db.Close()
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
	}
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// openJournal opens the journal, replays what the bolt file lacks and reads
// the head the writer continues from.
func (s *BoltStore) openJournal(path string) (err error) {
	_, statErr := os.Stat(path)
	if s.journal, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if statErr != nil { // created: its directory entry must survive a crash too
		if err := syncDir(filepath.Dir(path)); err != nil {
			return err
		}
	}
	if err := s.replayJournal(); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	err = s.view(func(tx *bolt.Tx) error { s.headSeq, s.headHash = fileHead(tx); return nil })
	s.ckSeq, s.journaled = s.headSeq, s.headSeq
	return err
}

// Debit implements Store.
func (s *BoltStore) Debit(ctx context.Context, c Charge) (Balance, error) {
	return s.StartDebit(ctx, c, nil)()
}

// StartDebit implements DebitStarter: the charge is validated and encoded
// here, and committed by the writer, which calls done.
func (s *BoltStore) StartDebit(ctx context.Context, c Charge, done func(error)) (wait func() (Balance, error)) {
	req, err := s.debitRequest(ctx, c)
	if err == nil {
		req.done = done
		err = s.queue(ctx, req)
	}
	if err != nil {
		if done != nil {
			done(err)
		}
		return func() (Balance, error) { return Balance{}, err }
	}
	return func() (Balance, error) { return await(ctx, req) }
}

func (s *BoltStore) debitRequest(ctx context.Context, c Charge) (*boltReq, error) {
	a, err := validate(&c, s.mode)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b := newBody(&c, a, s.mode)
	body, digest := b.encode()
	return &boltReq{ctx: ctx, c: &c, a: a, body: body, digest: digest, res: make(chan boltRes, 1)}, nil
}

// enqueue hands a debit or grant to the writer and waits for its result.
func (s *BoltStore) enqueue(ctx context.Context, req *boltReq) (Balance, error) {
	if err := s.queue(ctx, req); err != nil {
		return Balance{}, err
	}
	return await(ctx, req)
}

// queue hands req to the writer.
func (s *BoltStore) queue(ctx context.Context, req *boltReq) error {
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// await waits for a queued request's result. Once queued, the debit may
// commit even if ctx ends now: returning an error then over-reports (the
// caller refuses the query), never under-charges. A retry with the same ID
// returns the committed result. A result already there is returned even
// if ctx has ended since (StartDebit's caller may wait after its query).
func await(ctx context.Context, req *boltReq) (Balance, error) {
	select {
	case r := <-req.res:
		return r.bal, r.err
	default:
	}
	select {
	case r := <-req.res:
		return r.bal, r.err
	case <-ctx.Done():
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
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

// Grant implements Store: it adjusts the analyst's account at the grant's
// level and appends the entry, in the writer's next commit.
func (s *BoltStore) Grant(ctx context.Context, g Grant) (Balance, error) {
	l, err := grantLevel(&g)
	if err != nil {
		return Balance{}, err
	}
	if err := ctx.Err(); err != nil {
		return Balance{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return s.enqueue(ctx, &boltReq{ctx: ctx, grant: &g, level: l, res: make(chan boltRes, 1)})
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
	if err := s.failure(); err != nil {
		return Balance{}, err
	}
	var acct account
	// The writer's states hold every journaled change; an account missing
	// from them is current in the file.
	s.stMu.RLock()
	cached := s.states[lifetimeKey(analyst)]
	if cached != nil {
		acct = *cached
	}
	s.stMu.RUnlock()
	if cached == nil {
		err := s.view(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketAccounts).Get([]byte(analyst)); v != nil {
				return json.Unmarshal(v, &acct)
			}
			return nil
		})
		if err != nil {
			return Balance{}, err
		}
	}
	return acct.balance(analyst, acct.lifetimeLevel(analyst), s.mode), nil
}

// Balances implements Store.
func (s *BoltStore) Balances(ctx context.Context) ([]Balance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := s.flush(); err != nil {
		return nil, err
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
	if err := s.flush(); err != nil {
		return nil, err
	}
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
	if err := s.flush(); err != nil {
		return err
	}
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
	s.ck.Lock()
	s.ckStop = true
	s.ckCond.Broadcast()
	s.ck.Unlock()
	<-s.ckDone
	var err error
	if s.failure() == nil { // everything is in the bolt file
		err = s.emptyJournal()
	}
	if cerr := s.journal.Close(); err == nil {
		err = cerr
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	return err
}
