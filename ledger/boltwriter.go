package ledger

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The bolt ledger's write path. One writer goroutine applies each group
// commit to decoded account states in memory, appends the batch's writes to
// the journal as one frame and syncs it, and only then answers the batch's
// debits. A checkpointer goroutine (boltcheckpoint.go) copies journaled
// batches into the bolt file, many per transaction; once it has caught up,
// the writer writes the journal again from its start.

const (
	// maxCachedStates bounds the writer's decoded states; past it (daily
	// and monthly budgets add a state per analyst and period) they are
	// dropped once the bolt file has caught up with the journal.
	maxCachedStates = 1 << 14
	// The journal is written again from its start when the bolt file has
	// caught up and the journal is larger than journalTrimAt; at
	// journalMaxSize the writer waits for the checkpointer rather than let
	// it grow further. Its file is zero-filled ahead of the writes, in
	// journalChunk steps: overwriting written blocks lets fdatasync skip
	// the filesystem's metadata commit that an append needs (0.85 ms per
	// sync on the bench machine under load).
	journalTrimAt  = 1 << 20
	journalChunk   = 4 << 20
	journalMaxSize = 32 << 20
	// checkpointEvery paces checkpoints (paceCheckpoints).
	checkpointEvery = 100 * time.Millisecond
)

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

// commit applies a batch: a debit or grant refused for budget or an ID
// conflict changes nothing; any other failure fails the whole batch, which
// then changes nothing either.
func (s *BoltStore) commit(batch []*boltReq) {
	s.trimJournal()
	results := make([]boltRes, len(batch))
	w := s.newBatchStates()
	err := s.failure()
	for i, r := range batch {
		if err != nil {
			break
		}
		if cerr := r.ctx.Err(); cerr != nil {
			results[i] = boltRes{err: fmt.Errorf("%w: %w", ErrUnavailable, cerr)}
			continue
		}
		if r.grant != nil {
			results[i], err = s.applyGrant(w, r)
		} else {
			results[i], err = s.apply(w, r)
		}
	}
	if err == nil {
		err = s.journalBatch(w)
	}
	for i, r := range batch {
		res := results[i]
		if err != nil {
			res = boltRes{err: err}
		}
		if r.done != nil {
			r.done(res.err)
		}
		r.res <- res
	}
	if err != nil {
		s.log.Error("ledger: commit failed", "debits", len(batch), "err", err)
	}
}

// apply performs one debit on the batch's states. Budget and conflict errors
// are results, not failures: they change nothing.
func (s *BoltStore) apply(w *boltStates, r *boltReq) (boltRes, error) {
	c, a := r.c, r.a
	if v, rec, b, err := w.lookupID(c.Analyst, c.ID); err != nil {
		return boltRes{}, err
	} else if v != nil {
		if b.Kind != "" || b.EpsUnits != a.eps || b.DeltaUnits != a.delta {
			return boltRes{err: fmt.Errorf("%w: id %q was charged epsilon %g, delta %g",
				ErrIDConflict, c.ID, fromEps(b.EpsUnits), fromDelta(b.DeltaUnits))}, nil
		}
		return boltRes{bal: storedBalance(v, rec, b, s.mode)}, nil
	}

	w.analyst = c.Analyst
	life, err := w.get(level{Account: analystAccount(c.Analyst)})
	if err != nil {
		return boltRes{}, err
	}
	lv := make([]*account, len(a.levels))
	for i, l := range a.levels {
		if lv[i], err = w.get(l); err != nil {
			return boltRes{}, err
		}
		if !lv[i].fits(&a, l, s.mode) {
			return boltRes{err: budgetError(c.Analyst, &a, l, lv[i], s.mode)}, nil
		}
	}
	life.add(&a, s.mode)
	life.BudgetEps, life.BudgetDelta = a.levels[0].BudgetEps, a.levels[0].BudgetDelta
	w.mark(life)
	for i, l := range a.levels {
		if lv[i] != life {
			lv[i].add(&a, s.mode)
		}
		lv[i].BudgetEps, lv[i].BudgetDelta = l.BudgetEps, l.BudgetDelta
		w.mark(lv[i])
	}
	if err := w.appendEntry(c.Analyst, c.ID, r.body, r.digest, life, lv[0]); err != nil {
		return boltRes{}, err
	}
	return boltRes{bal: lv[0].balance(c.Analyst, a.levels[0], s.mode)}, nil
}

// applyGrant adjusts the analyst's account at the grant's level and appends
// the grant's entry.
func (s *BoltStore) applyGrant(w *boltStates, r *boltReq) (boltRes, error) {
	g, l := r.grant, r.level
	if v, rec, b, err := w.lookupID(g.Analyst, g.ID); err != nil {
		return boltRes{}, err
	} else if v != nil {
		if b.Kind == "" {
			return boltRes{err: fmt.Errorf("%w: id %q was used by a charge", ErrIDConflict, g.ID)}, nil
		}
		return boltRes{bal: storedBalance(v, rec, b, s.mode)}, nil
	}
	w.analyst = g.Analyst
	life, err := w.get(level{Account: analystAccount(g.Analyst)})
	if err != nil {
		return boltRes{}, err
	}
	st, err := w.get(l)
	if err != nil {
		return boltRes{}, err
	}
	eps, delta := signedUnits(g.Epsilon, epsScale), signedUnits(g.Delta, deltaScale)
	if g.Reset {
		eps, delta = st.SpentEps-st.GrantEps, st.SpentDelta-st.GrantDelta
	}
	gb := newGrantBody(g, l, eps, delta, s.mode)
	body, digest := gb.encode()
	st.GrantEps += eps
	st.GrantDelta += delta
	w.mark(life, st)
	if err := w.appendEntry(g.Analyst, g.ID, body, digest, life, st); err != nil {
		return boltRes{}, err
	}
	l.BudgetEps, l.BudgetDelta = st.BudgetEps, st.BudgetDelta
	return boltRes{bal: st.balance(g.Analyst, l, s.mode)}, nil
}

// boltStates is one batch's view of the ledger: copies of the account
// states it touches (installed in the store only once the batch is
// journaled), its writes, and the chain's head as it moves.
type boltStates struct {
	s       *BoltStore
	analyst string              // whose debit or grant is being applied
	m       map[string]*account // by lifetimeKey(analyst) or "b/"+level.stateKey()
	// dirty are the states a debit or grant changed; only they are stored,
	// so a refused debit leaves no trace (not even an empty account).
	dirty map[*account]bool
	batch boltBatch
	seq   uint64 // the head as the batch has moved it
	prev  string
	ids   map[string][]byte // this batch's charge IDs (idKey) and their values
	recs  map[uint64][]byte // this batch's records by sequence number
}

func (s *BoltStore) newBatchStates() *boltStates {
	return &boltStates{
		s: s, m: map[string]*account{},
		batch: boltBatch{FromSeq: s.headSeq, FromHash: s.headHash},
		seq:   s.headSeq, prev: s.headHash,
	}
}

func (b *boltStates) mark(sts ...*account) {
	if b.dirty == nil {
		b.dirty = map[*account]bool{}
	}
	for _, st := range sts {
		b.dirty[st] = true
	}
}

// stateLoc is where a level's state is stored: its cache key, bucket and
// bucket key.
func (b *boltStates) stateLoc(l level) (key string, bucket byte, k []byte) {
	if l.lifetime(b.analyst) {
		return lifetimeKey(b.analyst), putAccounts, []byte(b.analyst)
	}
	sk := l.stateKey()
	return "b/" + sk, putBudgets, []byte(sk)
}

// get returns the batch's copy of a level's state: from the store's
// decoded states, else from the bolt file. The store's states hold every
// journaled change, and are dropped only when the bolt file has caught up,
// so a state missing from them is current in the file.
func (b *boltStates) get(l level) (*account, error) {
	key, bucket, k := b.stateLoc(l)
	if st := b.m[key]; st != nil {
		return st, nil
	}
	st := &account{}
	if cached := b.s.states[key]; cached != nil {
		*st = *cached
		st.RDP = append([]int64(nil), cached.RDP...)
	} else {
		err := b.s.view(func(tx *bolt.Tx) error {
			if v := tx.Bucket(journalBuckets[bucket]).Get(k); v != nil {
				if err := json.Unmarshal(v, st); err != nil {
					return fmt.Errorf("account %q: %w", k, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	b.m[key] = st
	return st, nil
}

// lookupID finds an earlier charge or grant with this ID: in this batch,
// else in the bolt file (after waiting for the checkpointer if it is still
// only journaled). v is nil when there is none.
func (b *boltStates) lookupID(analyst, id string) (v []byte, rec *record, body *entryBody, err error) {
	k := idKey(analyst, id)
	if v = b.ids[string(k)]; v != nil {
		rec = &record{}
		if err := json.Unmarshal(b.recs[binary.BigEndian.Uint64(v[:8])], rec); err != nil {
			return nil, nil, nil, err
		}
		body = &entryBody{}
		if err := json.Unmarshal([]byte(rec.Body), body); err != nil {
			return nil, nil, nil, err
		}
		return v, rec, body, nil
	}
	if seq, ok := b.s.pendingSeq(k); ok {
		if err := b.s.waitCheckpoint(seq); err != nil {
			return nil, nil, nil, err
		}
	}
	err = b.s.view(func(tx *bolt.Tx) error {
		stored := tx.Bucket(bucketIDs).Get(k)
		if stored == nil {
			return nil
		}
		v = append([]byte(nil), stored...)
		rec, body, err = getRecordBody(tx.Bucket(bucketAudit), v[:8])
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return v, rec, body, nil
}

// appendEntry appends a charge's or grant's entry to the chain and indexes
// its ID with the state of its own level after it (what a repeat returns).
func (b *boltStates) appendEntry(analyst, id string, body []byte, digest string, life, own *account) error {
	key, err := b.appendRecord(body, digest, life)
	if err != nil {
		return err
	}
	k, v := idKey(analyst, id), own.appendJSON(append(make([]byte, 0, len(key)+192), key...))
	if b.ids == nil {
		b.ids = map[string][]byte{}
	}
	b.ids[string(k)] = v
	b.batch.put(putIDs, k, v)
	return nil
}

// appendRecord appends one entry to the chain with the analyst's lifetime
// totals after it and returns its key.
func (b *boltStates) appendRecord(body []byte, digest string, life *account) ([]byte, error) {
	seq := b.seq + 1
	rec := record{
		Seq: seq, Prev: b.prev,
		SpentEps: life.SpentEps, SpentDelta: life.SpentDelta, Queries: life.Queries,
		Body: string(body),
	}
	rec.Hash = linkHash(b.prev, seq, rec.SpentEps, rec.SpentDelta, rec.Queries, digest)
	key := seqKey(seq)
	recBytes := rec.appendJSON(make([]byte, 0, 128+2*len(body)))
	if b.recs == nil {
		b.recs = map[uint64][]byte{}
	}
	b.recs[seq] = recBytes
	b.batch.put(putAudit, key, recBytes)
	b.seq, b.prev = seq, rec.Hash
	return key, nil
}

// journalBatch makes the batch durable in the journal, then installs its
// states and head in the store and hands it to the checkpointer. A batch
// that wrote nothing (refusals, repeated IDs) is not journaled.
func (s *BoltStore) journalBatch(w *boltStates) error {
	if len(w.batch.Puts) == 0 {
		return nil
	}
	for key, st := range w.m {
		if !w.dirty[st] {
			continue
		}
		v := st.appendJSON(make([]byte, 0, 192))
		if analyst, ok := strings.CutPrefix(key, lifetimeKey("")); ok {
			w.batch.put(putAccounts, []byte(analyst), v)
		} else {
			w.batch.put(putBudgets, []byte(strings.TrimPrefix(key, "b/")), v)
		}
	}
	w.batch.HeadSeq, w.batch.HeadHash = w.seq, w.prev
	frame := w.batch.frame()
	if err := s.reserveJournal(s.journalSize + int64(len(frame))); err != nil {
		return s.fail(err)
	}
	if _, err := s.journal.WriteAt(frame, s.journalSize); err != nil {
		return s.fail(fmt.Errorf("writing the journal: %w", err))
	}
	if err := syncData(s.journal); err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages: nothing written since the last good sync can be trusted.
		return s.fail(fmt.Errorf("syncing the journal: %w", err))
	}
	s.journalSize += int64(len(frame))
	s.stMu.Lock()
	for key, st := range w.m {
		s.states[key] = st
	}
	s.stMu.Unlock()
	s.headSeq, s.headHash = w.seq, w.prev
	s.ck.Lock()
	for k := range w.ids {
		s.pending[k] = w.seq
	}
	s.journaled = w.seq
	s.ckQueue = append(s.ckQueue, &w.batch)
	s.ckCond.Broadcast()
	s.ck.Unlock()
	return nil
}

// trimJournal runs before each batch: once the bolt file holds everything
// journaled, the next frame goes to the journal's start and the decoded
// states are dropped if there are too many. Under steady load the paced
// checkpointer rarely catches up exactly, so a journal past journalMaxSize
// waits for it (one checkpoint) instead. Asking for checkpoints earlier
// was measured slower: bbolt's fsyncs then compete with the journal's.
func (s *BoltStore) trimJournal() {
	caughtUp := s.checkpointed() == s.headSeq
	if s.journalSize >= journalMaxSize && !caughtUp {
		if s.waitCheckpoint(s.headSeq) != nil {
			return
		}
		caughtUp = true
	}
	if !caughtUp {
		return
	}
	if len(s.states) > maxCachedStates {
		s.stMu.Lock()
		s.states = map[string]*account{}
		s.stMu.Unlock()
	}
	if s.journalSize >= journalTrimAt {
		// The frames after the new ones are all in the bolt file, so
		// replay skips them.
		s.journalSize = 0
	}
}

// reserveJournal zero-fills the journal file up to at least size.
func (s *BoltStore) reserveJournal(size int64) error {
	if size <= s.journalCap {
		return nil
	}
	grow := (size - s.journalCap + journalChunk - 1) / journalChunk * journalChunk
	if _, err := s.journal.WriteAt(make([]byte, grow), s.journalCap); err != nil {
		return fmt.Errorf("extending the journal: %w", err)
	}
	if err := syncData(s.journal); err != nil {
		return fmt.Errorf("extending the journal: %w", err)
	}
	s.journalCap += grow
	return nil
}

// emptyJournal truncates the journal, once the bolt file holds all of it.
func (s *BoltStore) emptyJournal() error {
	if err := s.journal.Truncate(0); err != nil {
		return fmt.Errorf("emptying the journal: %w", err)
	}
	if err := syncData(s.journal); err != nil {
		return fmt.Errorf("emptying the journal: %w", err)
	}
	s.journalSize, s.journalCap = 0, 0
	return nil
}
