package main

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpproxy/dpproxy/internal/testenv"
)

func TestLogWriter(t *testing.T) {
	t.Run("info waits for a flush, warnings do not", func(t *testing.T) {
		var out testenv.Buffer
		w := newLogWriter(&out, time.Hour) // no timed flush in this test
		defer w.Close()
		log := newLoggerTo(w, "text")
		log.Info("statement", "id", 1)
		if out.String() != "" {
			t.Fatalf("an info line was written before a flush: %q", out.String())
		}
		log.Warn("ledger slow")
		if got := out.String(); !strings.Contains(got, "msg=statement") || !strings.Contains(got, `msg="ledger slow"`) {
			t.Fatalf("after a warning: %q; want both lines, in order", got)
		}
	})
	t.Run("the timer flushes", func(t *testing.T) {
		var out testenv.Buffer
		w := newLogWriter(&out, time.Millisecond)
		defer w.Close()
		newLoggerTo(w, "json").Info("statement")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), `"msg":"statement"`) {
			if time.Now().After(deadline) {
				t.Fatal("the line was not written within 10s")
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("a full buffer is written at once", func(t *testing.T) {
		var out testenv.Buffer
		w := newLogWriter(&out, time.Hour)
		defer w.Close()
		line := strings.Repeat("x", 1023) + "\n"
		for range logBufferMax / len(line) {
			w.Write([]byte(line))
		}
		if n := len(out.String()); n != logBufferMax {
			t.Fatalf("%d bytes written after %d buffered, want all", n, logBufferMax)
		}
	})
	t.Run("close writes everything; later lines go at once", func(t *testing.T) {
		var out testenv.Buffer
		w := newLogWriter(&out, time.Hour)
		log := newLoggerTo(w, "text")
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 500 {
					log.Info("statement", "g", g, "i", i)
				}
			}()
		}
		wg.Wait()
		w.Close()
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		seen := map[string]bool{}
		whole := regexp.MustCompile(`^time=\S+ level=INFO msg=statement (g=\d+ i=\d+)$`)
		for _, l := range lines {
			m := whole.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("mangled line %q", l)
			}
			seen[m[1]] = true
		}
		if len(lines) != 4000 || len(seen) != 4000 {
			t.Fatalf("%d lines, %d distinct after close; want 4000", len(lines), len(seen))
		}
		log.Info("after close")
		if !strings.Contains(out.String(), `msg="after close"`) {
			t.Error("a line logged after close was not written at once")
		}
	})
}
