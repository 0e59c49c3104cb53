package wire

import (
	"container/list"
	"sync"
	"time"
)

// answerMemo keeps answers this process has read from the answer cache,
// decoded, so that a repeat costs a map lookup instead of a store read and
// a JSON decode (about a tenth of a cache hit's CPU with bolt, a round trip
// with Redis).
//
// It is only a copy of the store: it takes values the store returned,
// never its own writes (the store keeps the first answer written under a
// key, which may be another session's or node's), so every node still
// gives the store's answer. A value leaves the memo when its window ends,
// read from the expiry its writer recorded in it (cachedAnswer.Expires,
// the writer's clock: nodes whose clocks differ by s may repeat an answer
// up to s longer than the store; an answer repeated late releases nothing
// new). A new policy version changes every key, so a reload needs no
// purge. The memo is bounded in entries and bytes, least recently used
// first out.
type answerMemo struct {
	maxEntries int
	maxBytes   int

	mu    sync.Mutex
	m     map[string]*list.Element
	lru   list.List // of *memoEntry, most recent first
	bytes int
}

type memoEntry struct {
	key     string
	val     *cachedAnswer
	size    int
	expires time.Time
}

const (
	memoMaxEntries = 4096
	memoMaxBytes   = 32 << 20
	memoMaxValue   = 1 << 20 // larger answers are read from the store each time
)

func newAnswerMemo(maxEntries, maxBytes int) *answerMemo {
	return &answerMemo{maxEntries: maxEntries, maxBytes: maxBytes, m: map[string]*list.Element{}}
}

func (am *answerMemo) get(key string, now time.Time) (*cachedAnswer, bool) {
	am.mu.Lock()
	defer am.mu.Unlock()
	el, ok := am.m[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*memoEntry)
	if !now.Before(e.expires) {
		am.remove(el)
		return nil, false
	}
	am.lru.MoveToFront(el)
	return e.val, true
}

// put remembers val, which the store returned under key and which is
// size bytes encoded, until val.Expires.
func (am *answerMemo) put(key string, val *cachedAnswer, size int, now time.Time) {
	if val.Expires == 0 || size > memoMaxValue || size > am.maxBytes {
		return
	}
	expires := time.UnixMilli(val.Expires)
	if !now.Before(expires) {
		return
	}
	am.mu.Lock()
	defer am.mu.Unlock()
	if el, ok := am.m[key]; ok {
		am.remove(el)
	}
	am.m[key] = am.lru.PushFront(&memoEntry{key: key, val: val, size: size, expires: expires})
	am.bytes += size
	for len(am.m) > am.maxEntries || am.bytes > am.maxBytes {
		am.remove(am.lru.Back())
	}
}

func (am *answerMemo) remove(el *list.Element) {
	e := am.lru.Remove(el).(*memoEntry)
	delete(am.m, e.key)
	am.bytes -= e.size
}
