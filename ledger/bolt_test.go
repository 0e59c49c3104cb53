package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTestBolt(t testing.TB) (*BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		x           float64
		scale       int64
		ceil, floor int64
	}{
		{0, epsScale, 0, 0},
		{0.1, epsScale, 100_000_000, 100_000_000},
		{0.3, epsScale, 300_000_000, 300_000_000},
		{1, epsScale, 1_000_000_000, 1_000_000_000},
		{1e-12, epsScale, 1, 0},
		{1.0000000001, epsScale, 1_000_000_001, 1_000_000_000},
		{2.5e-10, epsScale, 1, 0},
		{1e-5, deltaScale, 10_000_000_000, 10_000_000_000},
		{1e-20, deltaScale, 1, 0},
		{MaxEpsilon, epsScale, maxUnits, maxUnits},
		{1.23456789e-7, epsScale, 124, 123},
	} {
		if got := ceilUnits(tc.x, tc.scale); got != tc.ceil {
			t.Errorf("ceilUnits(%g, %d) = %d, want %d", tc.x, tc.scale, got, tc.ceil)
		}
		if got := floorUnits(tc.x, tc.scale); got != tc.floor {
			t.Errorf("floorUnits(%g, %d) = %d, want %d", tc.x, tc.scale, got, tc.floor)
		}
	}
}

func TestOpenBoltErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	junk := make([]byte, 64*1024)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	if err := os.WriteFile(garbage, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketAudit); return err })
	db.Close()

	// A store that is already open holds the file lock.
	locked := filepath.Join(dir, "locked.db")
	s, err := OpenBolt(locked, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for _, tc := range []struct {
		name string
		path string
	}{
		{"garbage", garbage},
		{"foreign bolt file", foreign},
		{"locked", locked},
		{"directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := OpenBolt(tc.path, BoltOptions{LockTimeout: 200 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("error %v does not wrap ErrUnavailable", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
			t.Log(err)
		})
	}
}

// TestOpenBoltLockedByProcess holds the lock in another process (flock is
// per open file description, so this is the real cross-process case).
func TestOpenBoltLockedByProcess(t *testing.T) {
	if os.Getenv("LEDGER_HOLD_LOCK") != "" {
		s, err := OpenBolt(os.Getenv("LEDGER_HOLD_LOCK"), BoltOptions{})
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(20 * time.Second)
		s.Close()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenBoltLockedByProcess$")
	cmd.Env = append(os.Environ(), "LEDGER_HOLD_LOCK="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf[:6]) != "locked" {
		t.Fatalf("helper did not lock: %q %v", buf, err)
	}
	_, err = OpenBolt(path, BoltOptions{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	t.Log(err)
}

func TestBoltPersistsAcrossReopen(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	budget := Budget{Epsilon: 1}
	for i := range 3 {
		if _, err := s.Debit(ctx, charge("alice", idN(i), 0.3, budget)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(ctx, charge("alice", "late", 0.1, budget)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Debit after Close: %v", err)
	}
	s, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Debit(ctx, charge("alice", "x", 0.2, budget)); !isBudgetErr(err) {
		t.Fatalf("after reopen, 0.9+0.2 > 1 should fail, got %v", err)
	}
	b, err := s.Debit(ctx, charge("alice", "y", 0.1, budget))
	if err != nil {
		t.Fatal(err)
	}
	if b.RemainingEpsilon() != 0 || b.Queries != 4 {
		t.Fatalf("balance %+v", b)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBolt(path+"x", BoltOptions{Mode: "zcdp"}); !errors.Is(err, ErrUnsupportedMode) {
		t.Fatalf("unknown mode: %v", err)
	}
}

// TestBoltTamper edits the file behind the store's back and checks that
// Verify names the first bad entry.
func TestBoltTamper(t *testing.T) {
	type rawDB = *bolt.Tx
	editRecord := func(seq uint64, f func(r *record)) func(tx rawDB) error {
		return func(tx rawDB) error {
			b := tx.Bucket(bucketAudit)
			var r record
			if err := json.Unmarshal(b.Get(seqKey(seq)), &r); err != nil {
				return err
			}
			f(&r)
			v, _ := json.Marshal(&r)
			return b.Put(seqKey(seq), v)
		}
	}
	editBody := func(seq uint64, f func(b *entryBody)) func(tx rawDB) error {
		return editRecord(seq, func(r *record) {
			var b entryBody
			json.Unmarshal([]byte(r.Body), &b)
			f(&b)
			v, _ := json.Marshal(&b)
			r.Body = string(v)
		})
	}
	for _, tc := range []struct {
		name   string
		tamper func(tx rawDB) error
		want   string // substring of the error naming the entry
	}{
		{"edit statement", editBody(3, func(b *entryBody) { b.Statement = "SELECT 1" }), "entry 3"},
		{"edit epsilon", editBody(2, func(b *entryBody) { b.EpsUnits = 1 }), "entry 2"},
		{"edit totals", editRecord(4, func(r *record) { r.SpentEps = 0 }), "entry 4"},
		{"delete middle", func(tx rawDB) error { return tx.Bucket(bucketAudit).Delete(seqKey(3)) }, "entry 3"},
		{"delete last", func(tx rawDB) error { return tx.Bucket(bucketAudit).Delete(seqKey(5)) }, "entry 4"},
		{"reorder", func(tx rawDB) error {
			b := tx.Bucket(bucketAudit)
			v2 := append([]byte(nil), b.Get(seqKey(2))...)
			v3 := append([]byte(nil), b.Get(seqKey(3))...)
			b.Put(seqKey(2), v3)
			return b.Put(seqKey(3), v2)
		}, "entry 2"},
		{"reorder with renumbering", func(tx rawDB) error {
			b := tx.Bucket(bucketAudit)
			var r2, r3 record
			json.Unmarshal(b.Get(seqKey(2)), &r2)
			json.Unmarshal(b.Get(seqKey(3)), &r3)
			r2.Seq, r3.Seq = 3, 2
			v2, _ := json.Marshal(&r2)
			v3, _ := json.Marshal(&r3)
			b.Put(seqKey(2), v3)
			return b.Put(seqKey(3), v2)
		}, "entry 2"},
		{"edit balance", func(tx rawDB) error {
			b := tx.Bucket(bucketAccounts)
			var a account
			json.Unmarshal(b.Get([]byte("alice")), &a)
			a.SpentEps = 0
			v, _ := json.Marshal(&a)
			return b.Put([]byte("alice"), v)
		}, `account "alice"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, path := openTestBolt(t)
			for i := range 5 {
				who := []string{"alice", "bob"}[i%2]
				if _, err := s.Debit(ctx, charge(who, idN(i), 0.1, Budget{Epsilon: 10})); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Verify(ctx); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			s.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(tc.tamper); err != nil {
				t.Fatal(err)
			}
			db.Close()
			s, err = OpenBolt(path, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Verify(ctx)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify = %v, want ErrTampered", err)
			}
			if !contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %q, want it to name %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestBoltCorruptPages damages a real ledger file on disk: every operation
// must fail with ErrUnavailable (or ErrTampered from Verify), never panic or
// succeed silently.
func TestBoltCorruptPages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(f *os.File, size int64) error
	}{
		{"both meta pages", func(f *os.File, _ int64) error {
			_, err := f.WriteAt(make([]byte, 8192), 0)
			return err
		}},
		{"truncated", func(f *os.File, _ int64) error { return f.Truncate(4096 * 3) }},
		{"data pages", func(f *os.File, size int64) error {
			junk := make([]byte, size-8192)
			for i := range junk {
				junk[i] = 0xA5
			}
			_, err := f.WriteAt(junk, 8192)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, path := openTestBolt(t)
			for i := range 20 {
				if _, err := s.Debit(ctx, charge("alice", idN(i), 0.01, Budget{Epsilon: 1})); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			if err := tc.damage(f, st.Size()); err != nil {
				t.Fatal(err)
			}
			f.Close()
			s, err = OpenBolt(path, BoltOptions{})
			if err != nil {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("OpenBolt: %v, want ErrUnavailable", err)
				}
				t.Log(err)
				return
			}
			defer s.Close()
			_, err = s.Debit(ctx, charge("alice", "new", 0.01, Budget{Epsilon: 1}))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Debit on a damaged file: %v, want ErrUnavailable", err)
			}
			if err := s.Verify(ctx); !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify on a damaged file: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestBoltAuditPagesFilled: the audit trail and the ID index are appended
// to, so their pages are filled before they split (writeBatches sets
// FillPercent). At bbolt's default of half a page the leaves are about half
// used; the same 20,000 debits wrote a 51–53 MiB file instead of 33 MiB and
// took 8–18% more CPU.
func TestBoltAuditPagesFilled(t *testing.T) {
	s, path := openTestBolt(t)
	ctx := testCtx(t)
	budget := Budget{Epsilon: MaxEpsilon, Delta: 1}
	for i := range 3000 {
		if _, err := s.Debit(ctx, charge([]string{"ann", "bob"}[i%2], NewID(), 0.1, budget)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketAudit, bucketIDs} {
			st := tx.Bucket(name).Stats()
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.8 {
				t.Errorf("bucket %s: leaf pages %.0f%% used (%d of %d bytes); want at least 80%%", name, 100*fill, st.LeafInuse, st.LeafAlloc)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltStartDebit: done reports each debit's outcome exactly once, before
// wait returns it: success, a budget refusal from the writer, and a charge
// refused before it is queued (synchronously).
func TestBoltStartDebit(t *testing.T) {
	s, _ := openTestBolt(t)
	ctx := testCtx(t)
	budget := Budget{Epsilon: 1}
	start := func(c Charge) (calls *[]error, wait func() (Balance, error)) {
		var mu sync.Mutex
		calls = new([]error)
		wait = s.StartDebit(ctx, c, func(err error) { mu.Lock(); *calls = append(*calls, err); mu.Unlock() })
		return calls, wait
	}
	calls, wait := start(charge("ann", NewID(), 0.75, budget))
	if _, err := wait(); err != nil || len(*calls) != 1 || (*calls)[0] != nil {
		t.Fatalf("a debit that fits: wait %v, done calls %v; want nil and one nil", err, *calls)
	}
	calls, wait = start(charge("ann", NewID(), 0.5, budget))
	_, err := wait()
	var be *BudgetError
	if !errors.As(err, &be) || len(*calls) != 1 || !errors.As((*calls)[0], &be) {
		t.Fatalf("a debit over budget: wait %v, done calls %v; want the budget error from both, once", err, *calls)
	}
	calls, _ = start(charge("ann", "", 0.1, budget)) // no ID: refused before it is queued
	if len(*calls) != 1 || !errors.Is((*calls)[0], ErrInvalidCharge) {
		t.Fatalf("an invalid charge: done calls %v; want one ErrInvalidCharge, before StartDebit returns", *calls)
	}
}
