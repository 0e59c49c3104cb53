package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// AnswerCache stores noisy answers so that a repeated statement returns the
// same answer at no new cost (see doc.go, "Answer cache", for the key the
// caller must compute). Implementations are safe for concurrent use.
type AnswerCache interface {
	// Get returns the live value under key; ok is false on a miss or when
	// the entry has expired.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Put stores val under key for ttl (> 0) unless a live value is
	// already stored there: the first answer wins, so every reader within
	// the window sees the same answer.
	Put(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// MaxAnswerSize is the largest value an AnswerCache accepts.
const MaxAnswerSize = 16 << 20

func checkPut(key string, val []byte, ttl time.Duration) error {
	switch {
	case key == "":
		return errors.New("ledger: answer cache: empty key")
	case ttl <= 0:
		return fmt.Errorf("ledger: answer cache: ttl must be positive, got %v", ttl)
	case len(val) > MaxAnswerSize:
		return fmt.Errorf("ledger: answer cache: value of %d bytes exceeds %d", len(val), MaxAnswerSize)
	}
	return nil
}

// BoltCacheOptions configures OpenBoltCache. All fields are optional.
type BoltCacheOptions struct {
	LockTimeout time.Duration    // default 1s
	Now         func() time.Time // the clock for expiry (default time.Now)
}

// BoltCache is an AnswerCache in its own bbolt file, for one node. It is a
// separate file from the ledger so that the ledger never holds results.
// Expired entries are deleted by Put, a batch at a time.
type BoltCache struct {
	db   *bolt.DB
	now  func() time.Time
	puts atomic.Uint64
}

var _ AnswerCache = (*BoltCache)(nil)

var bucketAnswers = []byte("answers")

// OpenBoltCache opens (creating if needed) the cache file at path.
func OpenBoltCache(path string, opts BoltCacheOptions) (*BoltCache, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := preflight(path); err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnavailable, path, err)
	}
	// The cache may lose its last writes in a crash (answers are recomputed
	// and charged again), so commits are not fsynced.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("%w: opening answer cache %s: %w", ErrUnavailable, path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAudit) != nil {
			return errors.New("this is a ledger file, not an answer cache")
		}
		_, err := tx.CreateBucketIfNotExists(bucketAnswers)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: opening answer cache %s: %w", ErrUnavailable, path, err)
	}
	return &BoltCache{db: db, now: opts.Now}, nil
}

// A stored answer is its expiry (Unix nanoseconds, big-endian) then the value.

// Get implements AnswerCache.
func (c *BoltCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var out []byte
	now := c.now().UnixNano()
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAnswers).Get([]byte(key))
		if len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) > now {
			out = append([]byte{}, v[8:]...)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("%w: answer cache: %w", ErrUnavailable, err)
	}
	return out, out != nil, nil
}

// Put implements AnswerCache.
func (c *BoltCache) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkPut(key, val, ttl); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	now := c.now()
	sweep := c.puts.Add(1)%256 == 0
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAnswers)
		if v := b.Get([]byte(key)); len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) > now.UnixNano() {
			return nil // a live answer wins
		}
		rec := make([]byte, 8, 8+len(val))
		binary.BigEndian.PutUint64(rec, uint64(now.Add(ttl).UnixNano()))
		if err := b.Put([]byte(key), append(rec, val...)); err != nil {
			return err
		}
		if sweep {
			return sweepExpired(b, now.UnixNano(), 10_000)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: answer cache: %w", ErrUnavailable, err)
	}
	return nil
}

// sweepExpired deletes up to limit expired answers.
func sweepExpired(b *bolt.Bucket, now int64, limit int) error {
	var dead [][]byte
	cur := b.Cursor()
	for k, v := cur.First(); k != nil && len(dead) < limit; k, v = cur.Next() {
		if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) <= now {
			dead = append(dead, append([]byte{}, k...))
		}
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (c *BoltCache) Close() error { return c.db.Close() }

// RedisCache is an AnswerCache in Redis, shared by every proxy node using
// the same Redis: a statement answered on one node is answered the same on
// the others within the window. Each answer is one string key
// <prefix>:ans:<hex SHA-256 of the caller's key>, written with SET NX PX
// (first answer wins; Redis expires it). Keys spread over Cluster slots.
type RedisCache struct {
	client redis.UniversalClient
	prefix string
}

var _ AnswerCache = (*RedisCache)(nil)

// NewRedisCache returns a cache using client (which the caller owns) under
// prefix (default "dpledger", like RedisOptions.Prefix).
func NewRedisCache(client redis.UniversalClient, prefix string) (*RedisCache, error) {
	if client == nil {
		return nil, errors.New("ledger: NewRedisCache: nil client")
	}
	if prefix == "" {
		prefix = "dpledger"
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("ledger: NewRedisCache: prefix %q must not contain '{' or '}'", prefix)
	}
	return &RedisCache{client: client, prefix: prefix}, nil
}

func (c *RedisCache) key(k string) string {
	sum := sha256.Sum256([]byte(k))
	return c.prefix + ":ans:" + hex.EncodeToString(sum[:])
}

// Get implements AnswerCache.
func (c *RedisCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := c.client.Get(ctx, c.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("GET answer", err)
	}
	return v, true, nil
}

// Put implements AnswerCache.
func (c *RedisCache) Put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkPut(key, val, ttl); err != nil {
		return err
	}
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	if err := c.client.SetNX(ctx, c.key(key), val, ttl).Err(); err != nil {
		return unavailable("SET answer", err)
	}
	return nil
}
