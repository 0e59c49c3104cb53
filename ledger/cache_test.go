package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAnswerCache(t *testing.T) {
	var mu sync.Mutex
	clock := t0
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	bc, err := OpenBoltCache(filepath.Join(t.TempDir(), "cache.db"), BoltCacheOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	rc := redisClient(t)
	node1, _ := NewRedisCache(rc, "test")
	node2, _ := NewRedisCache(rc, "test") // another proxy on the same Redis

	for _, tc := range []struct {
		name     string
		put, get AnswerCache
		expire   func(ttl time.Duration)
	}{
		{"bolt", bc, bc, func(ttl time.Duration) { advance(ttl) }},
		{"redis", node1, node2, func(ttl time.Duration) { time.Sleep(ttl + 50*time.Millisecond) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			key := "v1\x00alice\x00SELECT count(*) FROM patients WHERE age > 40\x00[]"
			if _, ok, err := tc.get.Get(ctx, key); ok || err != nil {
				t.Fatalf("empty cache: %v %v", ok, err)
			}
			answer := []byte("\x00binary\xffanswer")
			if err := tc.put.Put(ctx, key, answer, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			// The first answer wins within the window.
			if err := tc.put.Put(ctx, key, []byte("second"), time.Hour); err != nil {
				t.Fatal(err)
			}
			got, ok, err := tc.get.Get(ctx, key)
			if err != nil || !ok || !bytes.Equal(got, answer) {
				t.Fatalf("Get = %q %v %v", got, ok, err)
			}
			// A different constant is a different statement.
			if _, ok, _ := tc.get.Get(ctx, "v1\x00alice\x00SELECT count(*) FROM patients WHERE age > 41\x00[]"); ok {
				t.Fatal("hit for another statement")
			}
			tc.expire(300 * time.Millisecond)
			if _, ok, err := tc.get.Get(ctx, key); ok || err != nil {
				t.Fatalf("after the window: %v %v", ok, err)
			}
			if err := tc.put.Put(ctx, key, []byte("fresh"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := tc.get.Get(ctx, key); string(got) != "fresh" {
				t.Fatalf("after expiry a new answer is stored: %q", got)
			}
			if err := tc.put.Put(ctx, "k", nil, 0); err == nil {
				t.Fatal("zero ttl accepted")
			}
			if err := tc.put.Put(ctx, "", nil, time.Second); err == nil {
				t.Fatal("empty key accepted")
			}
		})
	}
	t.Run("bolt sweep", func(t *testing.T) {
		ctx := testCtx(t)
		for i := range 600 {
			if err := bc.Put(ctx, fmt.Sprint("k", i), []byte("x"), time.Second); err != nil {
				t.Fatal(err)
			}
			if i == 299 {
				advance(2 * time.Second)
			}
		}
		n := 0
		bc.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketAnswers).Stats().KeyN; return nil })
		if n > 310 {
			t.Fatalf("%d answers stored; the 300 expired ones were not swept", n)
		}
	})
	t.Run("ledger file is not a cache", func(t *testing.T) {
		_, path := openTestBolt(t)
		if _, err := OpenBoltCache(path+".x", BoltCacheOptions{}); err != nil {
			t.Fatal(err)
		}
		s, _ := OpenBolt(filepath.Join(t.TempDir(), "l.db"), BoltOptions{})
		p := s.db.Path()
		s.Close()
		if _, err := OpenBoltCache(p, BoltCacheOptions{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("ledger opened as cache: %v", err)
		}
	})
}
