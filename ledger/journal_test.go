package ledger

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// crashCopy returns the files a crash would leave: the bolt file as it was
// after the first n debits were checkpointed, and the journal after all of
// them (it is emptied only past journalTrimAt or on Close).
func crashCopy(t *testing.T, analyst string, n, total int) (dbPath string) {
	t.Helper()
	s, path := openTestBolt(t)
	ctx := testCtx(t)
	budget := Budget{Epsilon: 100}
	dir := t.TempDir()
	dbPath = filepath.Join(dir, "ledger.db")
	for i := range total {
		if i == n {
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			if err := s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(dbPath, 0o600) }); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Debit(ctx, charge(analyst, idN(i), 0.5, budget)); err != nil {
			t.Fatal(err)
		}
	}
	journal, err := os.ReadFile(path + "-journal")
	if err != nil {
		t.Fatal(err)
	}
	if len(journal) == 0 {
		t.Fatal("the journal is empty before Close")
	}
	if err := os.WriteFile(dbPath+"-journal", journal, 0o600); err != nil {
		t.Fatal(err)
	}
	return dbPath
}

func TestJournalReplaysAfterCrash(t *testing.T) {
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		tail []byte // appended to the journal: a torn frame
	}{
		{"clean end", nil},
		{"torn header", []byte{0, 0, 1}},
		{"torn frame", []byte{0, 0, 0, 40, 1, 2, 3, 4, 9, 9}},
		{"frame with a bad checksum", append([]byte{0, 0, 0, 4, 1, 2, 3, 4}, "abcd"...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := crashCopy(t, "alice", 3, 10)
			if tc.tail != nil { // written where the frames end
				f, err := os.OpenFile(path+"-journal", os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				batches, _, err := readJournal(f)
				if err != nil || len(batches) == 0 {
					t.Fatalf("reading the journal copy: %d frames, %v", len(batches), err)
				}
				if _, err := f.WriteAt(tc.tail, frameOffset(batches, len(batches))); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			s, err := OpenBolt(path, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Verify(ctx); err != nil {
				t.Fatalf("verify after replay: %v", err)
			}
			es, err := s.Entries(ctx, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 10 {
				t.Fatalf("%d entries after replay, want 10", len(es))
			}
			bal, err := s.Balance(ctx, "alice")
			if err != nil || bal.SpentEpsilon != 5 {
				t.Fatalf("balance after replay: spent %g, %v (want 5)", bal.SpentEpsilon, err)
			}
			// A retry of a replayed charge is recognised, not charged again.
			if _, err := s.Debit(ctx, charge("alice", idN(7), 0.5, Budget{Epsilon: 100})); err != nil {
				t.Fatal(err)
			}
			if bal, _ := s.Balance(ctx, "alice"); bal.SpentEpsilon != 5 {
				t.Fatalf("retry after replay charged again: spent %g", bal.SpentEpsilon)
			}
			if fi, err := os.Stat(path + "-journal"); err != nil || fi.Size() == 0 {
				// Replay empties the journal; the retry wrote nothing.
				if err != nil {
					t.Fatal(err)
				}
			} else {
				t.Fatalf("journal holds %d bytes after replay and a repeated ID", fi.Size())
			}
		})
	}
}

// frameOffset is where frame i of a journal written from its start begins.
func frameOffset(batches []*boltBatch, i int) int64 {
	var off int64
	for _, b := range batches[:i] {
		off += int64(len(b.frame()))
	}
	return off
}

// TestJournalCorruptFrame: a corrupt frame whose entries the bolt file
// already holds is skipped; one whose entries it lacks stops the ledger
// from opening, rather than losing the acknowledged frames after it.
func TestJournalCorruptFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		frame   int // of 10, one debit each; the bolt file holds the first 3
		damage  []byte
		at      int64 // into the frame
		opens   bool
		entries int
	}{
		{"already in the file", 1, []byte("garbage!"), 20, true, 10},
		{"not yet in the file", 5, []byte("garbage!"), 20, false, 0},
		{"header zeroed, not yet in the file", 5, make([]byte, 8), 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := crashCopy(t, "alice", 3, 10)
			f, err := os.OpenFile(path+"-journal", os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			batches, _, err := readJournal(f)
			if err != nil || len(batches) != 10 {
				t.Fatalf("journal copy: %d frames, %v (want 10)", len(batches), err)
			}
			if _, err := f.WriteAt(tc.damage, frameOffset(batches, tc.frame)+tc.at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			s, err := OpenBolt(path, BoltOptions{})
			if !tc.opens {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("open with a corrupt unapplied frame: %v, want ErrUnavailable", err)
				}
				if fi, _ := os.Stat(path + "-journal"); fi == nil || fi.Size() == 0 {
					t.Fatal("the refused open emptied the journal")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			es, err := s.Entries(testCtx(t), Filter{})
			if err != nil || len(es) != tc.entries {
				t.Fatalf("%d entries, %v; want %d", len(es), err, tc.entries)
			}
			if err := s.Verify(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestJournalThatDoesNotContinueTheFileIsRefused(t *testing.T) {
	a := crashCopy(t, "alice", 3, 6)
	// Another ledger's journal: its frame for entry 4 claims to continue
	// entry 3, but of another chain.
	other := crashCopy(t, "bob", 0, 4)
	j4, err := os.ReadFile(other + "-journal")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a+"-journal", j4, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(a, BoltOptions{})
	if !errors.Is(err, ErrUnavailable) || !bytes.Contains([]byte(err.Error()), []byte("continues entry 3")) {
		t.Fatalf("open with a foreign journal: %v, want ErrUnavailable about continuity", err)
	}
}

func TestJournalEmptiedOnClose(t *testing.T) {
	s, path := openTestBolt(t)
	ctx := testCtx(t)
	for i := range 3 {
		if _, err := s.Debit(ctx, charge("alice", idN(i), 0.5, Budget{Epsilon: 10})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-journal"); err != nil || fi.Size() != 0 {
		t.Fatalf("journal after Close: %v, %v (want empty)", fi, err)
	}
}

func FuzzReadJournal(f *testing.F) {
	b := boltBatch{FromSeq: 1, FromHash: "h1", HeadSeq: 2, HeadHash: "h2"}
	b.put(putAudit, seqKey(2), []byte(`{"seq":2}`))
	f.Add(b.frame())
	f.Add(append(b.frame(), b.frame()[:5]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		batches, _, err := readJournal(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, b := range batches {
			if !bytes.Contains(data, b.frame()[:8]) {
				t.Fatal("a frame read back does not re-encode to a header in the data")
			}
		}
	})
}

// TestJournalRewinds: once the bolt file has caught up, the next frame goes
// to the journal's start, so the journal file stays small.
func TestJournalRewinds(t *testing.T) {
	s, _ := openTestBolt(t)
	ctx := testCtx(t)
	n := journalTrimAt/journalBlock + 10 // each serial debit is one block-sized frame
	for i := range n {
		if _, err := s.Debit(ctx, charge("alice", idN(i), 0.001, Budget{Epsilon: 100})); err != nil {
			t.Fatal(err)
		}
	}
	if s.journalSize < journalTrimAt {
		t.Fatalf("journal at %d bytes after %d debits, want past %d", s.journalSize, n, journalTrimAt)
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(ctx, charge("alice", idN(n), 0.001, Budget{Epsilon: 100})); err != nil {
		t.Fatal(err)
	}
	if s.journalSize != journalBlock || s.journalCap > journalChunk {
		t.Fatalf("after a checkpoint the next frame ends at %d (file %d bytes), want %d (one frame from the start)", s.journalSize, s.journalCap, journalBlock)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
