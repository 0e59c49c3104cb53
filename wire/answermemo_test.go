package wire

import (
	"fmt"
	"testing"
	"time"
)

func TestAnswerMemo(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	answer := func(ttl time.Duration) *cachedAnswer {
		return &cachedAnswer{Rows: [][]string{{"42"}}, Expires: now.Add(ttl).UnixMilli()}
	}
	t.Run("until its window ends", func(t *testing.T) {
		am := newAnswerMemo(10, 1<<20)
		am.put("k", answer(time.Minute), 100, now)
		if _, ok := am.get("k", now.Add(59*time.Second)); !ok {
			t.Error("miss within the window")
		}
		if _, ok := am.get("k", now.Add(time.Minute)); ok {
			t.Error("hit at the window's end")
		}
		if len(am.m) != 0 || am.bytes != 0 {
			t.Errorf("expired entry kept: %d entries, %d bytes", len(am.m), am.bytes)
		}
	})
	t.Run("not remembered", func(t *testing.T) {
		am := newAnswerMemo(10, 4<<20)
		cases := []struct {
			name string
			val  *cachedAnswer
			size int
		}{
			{"no recorded expiry", &cachedAnswer{}, 100},
			{"already expired", answer(-time.Second), 100},
			{"larger than memoMaxValue", answer(time.Minute), memoMaxValue + 1},
		}
		for _, c := range cases {
			am.put(c.name, c.val, c.size, now)
			if _, ok := am.get(c.name, now); ok {
				t.Errorf("%s: remembered", c.name)
			}
		}
	})
	t.Run("least recently used out", func(t *testing.T) {
		am := newAnswerMemo(3, 1<<20)
		for i := range 3 {
			am.put(fmt.Sprint(i), answer(time.Minute), 10, now)
		}
		am.get("0", now) // 1 is now the least recently used
		am.put("3", answer(time.Minute), 10, now)
		for key, want := range map[string]bool{"0": true, "1": false, "2": true, "3": true} {
			if _, ok := am.get(key, now); ok != want {
				t.Errorf("entry %s present %v, want %v", key, ok, want)
			}
		}
	})
	t.Run("bounded in bytes", func(t *testing.T) {
		am := newAnswerMemo(100, 250)
		for i := range 5 {
			am.put(fmt.Sprint(i), answer(time.Minute), 100, now)
		}
		if len(am.m) != 2 || am.bytes != 200 {
			t.Errorf("%d entries of %d bytes, want the last 2 (200 bytes)", len(am.m), am.bytes)
		}
		if _, ok := am.get("4", now); !ok {
			t.Error("the newest entry was evicted")
		}
	})
	t.Run("replacing a key", func(t *testing.T) {
		am := newAnswerMemo(10, 1<<20)
		am.put("k", answer(time.Minute), 100, now)
		am.put("k", answer(time.Minute), 50, now)
		if len(am.m) != 1 || am.lru.Len() != 1 || am.bytes != 50 {
			t.Errorf("%d entries, %d in the list, %d bytes; want 1, 1, 50", len(am.m), am.lru.Len(), am.bytes)
		}
	})
}
