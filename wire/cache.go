package wire

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"

	"github.com/dpproxy/dpproxy/answer"
)

// cacheTimeout bounds a cache lookup; a slow cache is a miss, never a
// failure: the query is then charged and answered fresh.
const cacheTimeout = 500 * time.Millisecond

// cachedAnswer is what the answer cache stores: the post-processed rows and
// the accuracy notes, never the exact values. Once decoded it is shared by
// every session that repeats it (answerMemo): read-only.
type cachedAnswer struct {
	Rows     [][]string `json:"rows"`
	Nulls    [][]bool   `json:"nulls"`
	Accuracy []string   `json:"accuracy"`
	Epsilon  float64    `json:"epsilon"`
	Delta    float64    `json:"delta"`
	// Expires is when the writer's window for this answer ends (Unix
	// milliseconds, the writer's clock), for answerMemo; 0 in answers
	// written before it was recorded, which are not memoised.
	Expires int64 `json:"expires,omitempty"`
}

// cacheKey identifies one answer: the canonical plan (rewrite.Plan's
// Canonical: the rewritten SQL with every constant kept and the
// post-processing; never pg_query's fingerprint, which merges different
// constants), the bound
// parameters with their formats and types, the analyst, the policy version
// and the settings the answer depends on. Parts are length-prefixed so they
// cannot run together.
func (sess *session) cacheKey(canonical string, a execArgs, eps, delta float64) string {
	b := make([]byte, 0, 64+len(sess.user)+len(canonical)+16*len(a.params))
	put := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	put("v1")
	put(sess.srv.Policy().Version)
	put(sess.user)
	put(canonical)
	put(strconv.FormatFloat(eps, 'g', -1, 64))
	put(strconv.FormatFloat(delta, 'g', -1, 64))
	for i, p := range a.params {
		put(strconv.Itoa(int(formatFor(a.paramFormats, i))))
		if i < len(a.paramOIDs) {
			put(strconv.FormatUint(uint64(a.paramOIDs[i]), 10))
		}
		if p == nil {
			put("\x00null")
		} else {
			put(string(p))
		}
	}
	return string(b)
}

// cacheOn reports whether answers are cached: a store is configured and the
// policy's window is positive.
func (sess *session) cacheOn() bool {
	return sess.srv.cfg.Cache != nil && sess.srv.Policy().Defaults.CacheWindow > 0
}

func (sess *session) cacheGet(key string) (*cachedAnswer, bool) {
	c := sess.srv.cfg.Cache
	if !sess.cacheOn() {
		return nil, false
	}
	if ca, ok := sess.srv.memo.get(key, time.Now()); ok {
		return ca, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), cacheTimeout)
	defer cancel()
	val, ok, err := c.Get(ctx, key)
	if err != nil {
		sess.log.Warn("answer cache lookup failed; answering fresh", "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	var ca cachedAnswer
	if err := json.Unmarshal(val, &ca); err != nil {
		sess.log.Warn("answer cache entry unreadable; answering fresh", "err", err)
		return nil, false
	}
	sess.srv.memo.put(key, &ca, len(val), time.Now())
	return &ca, true
}

func (sess *session) cachePut(key string, res *answer.Result, eps, delta float64) {
	if !sess.cacheOn() {
		return
	}
	c, window := sess.srv.cfg.Cache, sess.srv.Policy().Defaults.CacheWindow
	val, err := json.Marshal(cachedAnswer{Rows: res.Rows, Nulls: res.Nulls, Accuracy: res.Accuracy, Epsilon: eps, Delta: delta,
		Expires: time.Now().Add(window).UnixMilli()})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cacheTimeout)
	defer cancel()
	if err := c.Put(ctx, key, val, window); err != nil {
		sess.log.Warn("answer cache store failed", "err", err)
	}
}
