package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

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
	c := redis.NewClient(&redis.Options{Addr: addr})
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
