package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dpproxy/dpproxy/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func init() {
	backends = append(backends,
		backend{"redis", func(t *testing.T) Store { return openTestRedis(t) }},
	)
}

func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	addr := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func openTestRedis(t testing.TB) *RedisStore {
	t.Helper()
	s, err := NewRedis(redisClient(t), RedisOptions{Prefix: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDurability(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLuaSHA256(t *testing.T) {
	c := redisClient(t)
	ctx := testCtx(t)
	for _, msg := range []string{"", "abc", strings.Repeat("a", 55), strings.Repeat("b", 56), strings.Repeat("c", 64),
		strings.Repeat("0123456789abcdef", 12) + "\n17\n100000000\n0\n3\nxyz", "héllo\x00\xff"} {
		got, err := debitScript.Eval(ctx, c, nil, "sha256", msg).Text()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(msg))
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("lua sha256(%q) = %s, want %s", msg, got, want)
		}
	}
}

func TestRedisCluster(t *testing.T) {
	addrs := testenv.StartRedisCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	n := 0
	open := func(t *testing.T) *RedisStore {
		n++
		s, err := NewRedis(c, RedisOptions{Prefix: fmt.Sprintf("cluster%d", n)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckDurability(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
	// Analysts must land on different masters for the test to mean anything.
	s := open(t)
	ctx := testCtx(t)
	slots := map[int64]bool{}
	for i := range 12 {
		a := fmt.Sprintf("analyst-%d", i)
		if _, err := s.Debit(ctx, charge(a, "x", 0.1, Budget{Epsilon: 1})); err != nil && !errors.Is(err, ErrIDConflict) {
			t.Fatal(err)
		}
		acct, _, _ := s.keys(a)
		slot, err := c.ClusterKeySlot(ctx, acct).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot/5462] = true
	}
	if len(slots) < 2 {
		t.Fatalf("all analysts hashed to one master")
	}
}

func TestRedisCheckDurability(t *testing.T) {
	ctx := testCtx(t)
	c := redis.NewClient(&redis.Options{Addr: testenv.StartRedis(t, "--appendonly", "no")})
	t.Cleanup(func() { c.Close() })
	s, _ := NewRedis(c, RedisOptions{})
	if err := s.CheckDurability(ctx); err == nil || !strings.Contains(err.Error(), "volatile") {
		t.Fatalf("volatile Redis accepted: %v", err)
	}
	s, _ = NewRedis(c, RedisOptions{AllowVolatile: true})
	if err := s.CheckDurability(ctx); err != nil {
		t.Fatalf("AllowVolatile: %v", err)
	}
}

func TestRedisUnavailable(t *testing.T) {
	ctx := testCtx(t)
	t.Run("nothing listening", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
		defer c.Close()
		s, _ := NewRedis(c, RedisOptions{})
		for name, op := range map[string]func() error{
			"Debit":           func() error { _, err := s.Debit(ctx, charge("a", "1", 0.1, Budget{Epsilon: 1})); return err },
			"Balance":         func() error { _, err := s.Balance(ctx, "a"); return err },
			"Balances":        func() error { _, err := s.Balances(ctx); return err },
			"Entries":         func() error { _, err := s.Entries(ctx, Filter{}); return err },
			"Verify":          func() error { return s.Verify(ctx) },
			"CheckDurability": func() error { return s.CheckDurability(ctx) },
		} {
			if err := op(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: %v, want ErrUnavailable", name, err)
			}
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c := redisClient(t)
		s, _ := NewRedis(c, RedisOptions{})
		if _, err := s.Debit(ctx, charge("a", "1", 0.1, Budget{Epsilon: 1})); err != nil {
			t.Fatal(err)
		}
		// Pause all clients (including the debit) for longer than the deadline.
		admin := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
		defer admin.Close()
		if err := admin.Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.Debit(short, charge("a", "2", 0.1, Budget{Epsilon: 1}))
		if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
			t.Fatalf("paused server: %v after %v, want ErrUnavailable within the deadline", err, time.Since(start))
		}
		t.Log(err)
	})
}

// TestRedisTamper edits the keys behind the store's back.
func TestRedisTamper(t *testing.T) {
	// rewrite replaces alice's stream with f applied to its entries.
	rewrite := func(f func(ms []redis.XMessage) []redis.XMessage) func(ctx context.Context, c *redis.Client, s *RedisStore) error {
		return func(ctx context.Context, c *redis.Client, s *RedisStore) error {
			_, logKey, _ := s.keys("alice")
			ms, err := c.XRange(ctx, logKey, "-", "+").Result()
			if err != nil {
				return err
			}
			ms = f(ms)
			c.Del(ctx, logKey)
			for _, m := range ms {
				if err := c.XAdd(ctx, &redis.XAddArgs{Stream: logKey, ID: m.ID, Values: m.Values}).Err(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name   string
		tamper func(ctx context.Context, c *redis.Client, s *RedisStore) error
		want   string
	}{
		{"edit statement", rewrite(func(ms []redis.XMessage) []redis.XMessage {
			ms[1].Values["body"] = strings.Replace(ms[1].Values["body"].(string), "count(*)", "count(1)", 1)
			return ms
		}), "entry 2: hash mismatch"},
		{"delete middle", func(ctx context.Context, c *redis.Client, s *RedisStore) error {
			_, logKey, _ := s.keys("alice")
			return c.XDel(ctx, logKey, "2-0").Err()
		}, "entry 2 is missing"},
		{"delete last", func(ctx context.Context, c *redis.Client, s *RedisStore) error {
			_, logKey, _ := s.keys("alice")
			return c.XDel(ctx, logKey, "3-0").Err()
		}, "chain ends at entry 2"},
		{"reorder", rewrite(func(ms []redis.XMessage) []redis.XMessage {
			ms[1].Values, ms[2].Values = ms[2].Values, ms[1].Values
			return ms
		}), "entry 2: previous-hash link broken"},
		{"drop from index", func(ctx context.Context, c *redis.Client, s *RedisStore) error {
			return c.SRem(ctx, s.indexKey(), "alice").Err()
		}, `analyst "alice" has an account but is missing from the index`},
		{"edit balance", func(ctx context.Context, c *redis.Client, s *RedisStore) error {
			acct, _, _ := s.keys("alice")
			return c.HSet(ctx, acct, "spent_eps", "0").Err()
		}, "account does not equal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			c := redisClient(t)
			s, _ := NewRedis(c, RedisOptions{})
			for i := range 5 {
				who := []string{"alice", "bob"}[i%2]
				if _, err := s.Debit(ctx, charge(who, idN(i), 0.1, Budget{Epsilon: 10})); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Verify(ctx); err != nil {
				t.Fatalf("before tampering: %v", err)
			}
			if err := tc.tamper(ctx, c, s); err != nil {
				t.Fatal(err)
			}
			err := s.Verify(ctx)
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want ErrTampered naming %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestRedisCrashRestart crashes redis-server (DEBUG SEGFAULT) after some
// debits and restarts it on the same AOF: nothing spent may be forgotten.
// Redis runs as the DBA guide says it must, with appendfsync always: with
// everysec, a write Redis postpones behind a slow background fsync (a
// loaded machine) is acknowledged before it reaches the file, and a crash
// then loses it (seen in this test before it set always).
func TestRedisCrashRestart(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	addr := testenv.StartRedis(t, "--dir", dir, "--enable-debug-command", "local", "--appendfsync", "always")
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer c.Close()
	s, _ := NewRedis(c, RedisOptions{})
	for i := range 7 {
		if _, err := s.Debit(ctx, charge("alice", idN(i), 0.1, Budget{Epsilon: 1})); err != nil {
			t.Fatal(err)
		}
	}
	c.Do(ctx, "DEBUG", "SEGFAULT") // the connection drops; no reply expected
	if _, err := s.Debit(ctx, charge("alice", "after-crash", 0.1, Budget{Epsilon: 1})); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Debit against a crashed Redis: %v", err)
	}

	c2 := redis.NewClient(&redis.Options{Addr: testenv.StartRedis(t, "--dir", dir), ContextTimeoutEnabled: true})
	defer c2.Close()
	s2, _ := NewRedis(c2, RedisOptions{})
	b, err := s2.Balance(ctx, "alice")
	if err != nil || b.Queries != 7 || b.SpentEpsilon != 0.7 {
		t.Fatalf("after restart: %+v, %v", b, err)
	}
	if err := s2.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Debit(ctx, charge("alice", "x", 0.4, Budget{Epsilon: 1})); !isBudgetErr(err) {
		t.Fatalf("0.7 + 0.4 > 1 after restart: %v", err)
	}
}
