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
// debits. A checkpointer goroutine copies journaled batches into the bolt
// file, many per transaction. Once a checkpoint has caught up, the journal
// is emptied.

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
	key, err := w.appendRecord(r.body, r.digest, life)
	if err != nil {
		return boltRes{}, err
	}
	bal := lv[0].balance(c.Analyst, a.levels[0], s.mode)
	snap, err := json.Marshal(lv[0])
	if err != nil {
		return boltRes{}, err
	}
	w.putID(idKey(c.Analyst, c.ID), append(key, snap...))
	return boltRes{bal: bal}, nil
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
	body, digest, err := gb.encode()
	if err != nil {
		return boltRes{}, err
	}
	st.GrantEps += eps
	st.GrantDelta += delta
	w.mark(life, st)
	key, err := w.appendRecord(body, digest, life)
	if err != nil {
		return boltRes{}, err
	}
	l.BudgetEps, l.BudgetDelta = st.BudgetEps, st.BudgetDelta
	bal := st.balance(g.Analyst, l, s.mode)
	snap, err := json.Marshal(st)
	if err != nil {
		return boltRes{}, err
	}
	w.putID(idKey(g.Analyst, g.ID), append(key, snap...))
	return boltRes{bal: bal}, nil
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

func (b *boltStates) putID(k, v []byte) {
	if b.ids == nil {
		b.ids = map[string][]byte{}
	}
	b.ids[string(k)] = v
	b.batch.put(putIDs, k, v)
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
	recBytes, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
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
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
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
		// replay skips them (and a torn frame ends the reading anyway).
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

// checkpointer copies journaled batches into the bolt file until Close.
func (s *BoltStore) checkpointer() {
	defer close(s.ckDone)
	for {
		s.ck.Lock()
		for len(s.ckQueue) == 0 && !s.ckStop && s.failed == nil {
			s.ckCond.Wait()
		}
		q := s.ckQueue
		s.ckQueue = nil
		if len(q) == 0 || s.failed != nil {
			s.ck.Unlock()
			return
		}
		s.ck.Unlock()
		err := s.update(func(tx *bolt.Tx) error { return writeBatches(tx, q) })
		s.ck.Lock()
		if err != nil {
			s.ck.Unlock()
			s.log.Error("ledger: checkpoint to the bolt file failed; debits are refused until restart, which replays the journal", "err", err)
			_ = s.fail(fmt.Errorf("checkpoint: %w", err))
			return
		}
		s.ckSeq = q[len(q)-1].HeadSeq
		for _, b := range q {
			for _, p := range b.Puts {
				if p.Bucket == putIDs && s.pending[string(p.Key)] <= s.ckSeq {
					delete(s.pending, string(p.Key))
				}
			}
		}
		s.ckCond.Broadcast()
		s.ck.Unlock()
		s.paceCheckpoints()
	}
}

// paceCheckpoints lets journaled batches gather for checkpointEvery before
// the next checkpoint, unless a reader or the writer waits for one or the
// store closes: each bbolt transaction costs two fsyncs and page writes,
// which at one statement at a time would take CPU from the upstream query
// running beside it, and the journal already holds the batches durably.
func (s *BoltStore) paceCheckpoints() {
	s.ck.Lock()
	defer s.ck.Unlock()
	deadline := time.Now().Add(checkpointEvery)
	t := time.AfterFunc(checkpointEvery, func() {
		s.ck.Lock()
		s.ckCond.Broadcast()
		s.ck.Unlock()
	})
	defer t.Stop()
	for !s.ckStop && s.failed == nil && s.ckWaiters == 0 && time.Now().Before(deadline) {
		s.ckCond.Wait()
	}
}

// writeBatches applies journaled batches to the bolt file in order, each
// continuing the file's head.
func writeBatches(tx *bolt.Tx, batches []*boltBatch) error {
	meta := tx.Bucket(bucketMeta)
	for _, b := range batches {
		head, hash := uint64(0), genesisHash
		if v := meta.Get(keyHeadSeq); v != nil {
			head, hash = binary.BigEndian.Uint64(v), string(meta.Get(keyHeadHash))
		}
		if b.FromSeq != head || b.FromHash != hash {
			return fmt.Errorf("journal batch continues entry %d, but the ledger file ends at entry %d", b.FromSeq, head)
		}
		for _, p := range b.Puts {
			if err := tx.Bucket(journalBuckets[p.Bucket]).Put(p.Key, p.Value); err != nil {
				return err
			}
		}
		if err := meta.Put(keyHeadSeq, seqKey(b.HeadSeq)); err != nil {
			return err
		}
		if err := meta.Put(keyHeadHash, []byte(b.HeadHash)); err != nil {
			return err
		}
	}
	return nil
}

// replayJournal brings the bolt file up to date with the journal after a
// crash, then empties the journal. Frames the file already holds are
// skipped; a frame that does not continue the file is an error.
func (s *BoltStore) replayJournal() error {
	batches, corrupt, err := readJournal(s.journal)
	if err != nil {
		return err
	}
	if corrupt > 0 {
		// A torn last frame (never acknowledged) or, after a rewind, a
		// partly overwritten old one; writeBatches refuses a gap if one
		// held entries the file lacks.
		s.log.Warn("ledger: skipped unreadable journal frames", "frames", corrupt)
	}
	var head uint64
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyHeadSeq); v != nil {
			head = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var todo []*boltBatch
	for _, b := range batches {
		if b.HeadSeq > head {
			todo = append(todo, b)
		}
	}
	if len(todo) > 0 {
		if err := s.update(func(tx *bolt.Tx) error { return writeBatches(tx, todo) }); err != nil {
			return err
		}
		s.log.Warn("ledger: replayed entries from the journal (the last run did not stop cleanly)",
			"entries", todo[len(todo)-1].HeadSeq-todo[0].FromSeq)
	}
	return s.emptyJournal()
}

func (s *BoltStore) pendingSeq(k []byte) (uint64, bool) {
	s.ck.Lock()
	defer s.ck.Unlock()
	seq, ok := s.pending[string(k)]
	return seq, ok
}

func (s *BoltStore) checkpointed() uint64 {
	s.ck.Lock()
	defer s.ck.Unlock()
	return s.ckSeq
}

// waitCheckpoint waits until the bolt file holds entry seq.
func (s *BoltStore) waitCheckpoint(seq uint64) error {
	s.ck.Lock()
	defer s.ck.Unlock()
	s.ckWaiters++
	defer func() { s.ckWaiters-- }()
	s.ckCond.Broadcast() // no pacing while someone waits
	for s.ckSeq < seq && s.failed == nil {
		s.ckCond.Wait()
	}
	return s.failed
}

// flush waits until the bolt file holds every journaled entry, so that a
// read of the file sees every acknowledged debit.
func (s *BoltStore) flush() error {
	s.ck.Lock()
	target := s.journaled
	s.ck.Unlock()
	return s.waitCheckpoint(target)
}

// fail stops the store taking debits after a write it cannot trust; the
// journal and the bolt file keep what was acknowledged, and a restart
// replays it. It returns the error as debits will see it.
func (s *BoltStore) fail(err error) error {
	s.ck.Lock()
	defer s.ck.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("%w: %w (restart dpproxy to recover from the journal)", ErrUnavailable, err)
		s.ckCond.Broadcast()
	}
	return s.failed
}

func (s *BoltStore) failure() error {
	s.ck.Lock()
	defer s.ck.Unlock()
	return s.failed
}
