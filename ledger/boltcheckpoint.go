package ledger

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The bolt ledger's checkpointer: it copies journaled batches into the bolt
// file behind the writer (boltwriter.go), and replays at open what a crash
// left only in the journal. Readers of the file wait for it (flush).

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
	// Entries are appended in sequence, and charge IDs grow with time
	// (NewID): bbolt's default split at half a page would leave the audit
	// trail's pages half empty, writing twice the pages per checkpoint and
	// growing the file twice as fast.
	tx.Bucket(bucketAudit).FillPercent = 1.0
	tx.Bucket(bucketIDs).FillPercent = 0.9
	for _, b := range batches {
		head, hash := fileHead(tx)
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
	if err := s.view(func(tx *bolt.Tx) error { head, _ = fileHead(tx); return nil }); err != nil {
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

// fileHead is the last entry the bolt file holds: its sequence number and
// hash (0 and the genesis hash when empty).
func fileHead(tx *bolt.Tx) (uint64, string) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyHeadSeq); v != nil {
		return binary.BigEndian.Uint64(v), string(meta.Get(keyHeadHash))
	}
	return 0, genesisHash
}
