package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logWriter gathers serve's log lines and writes them in batches, at most
// logFlushEvery apart: one line per statement made a write(2) per
// statement, about a tenth of a cached answer's CPU. Warnings and errors
// are written at once (flushOnWarn), and everything on Close; a proxy
// killed with SIGKILL can lose the last logFlushEvery of info lines. The
// audit trail is the ledger, never the log. The flush timer runs only
// while lines wait: an idle proxy is not woken (a 10 ms ticker was about
// 1% of a core on an idle proxy).
type logWriter struct {
	out   io.Writer
	every time.Duration
	timer *time.Timer

	mu     sync.Mutex
	buf    []byte
	armed  bool // the timer will flush
	closed bool // after Close every line is written at once
}

const (
	logFlushEvery = 10 * time.Millisecond
	logBufferMax  = 64 << 10 // written at once when this much is waiting
)

func newLogWriter(out io.Writer, every time.Duration) *logWriter {
	w := &logWriter{out: out, every: every}
	w.timer = time.AfterFunc(every, w.timedFlush)
	w.timer.Stop()
	return w
}

func (w *logWriter) timedFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	w.flushLocked()
}

// Write queues one log line (slog handlers write a record at a time).
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	switch {
	case w.closed || len(w.buf) >= logBufferMax:
		w.flushLocked()
	case !w.armed:
		w.armed = true
		w.timer.Reset(w.every)
	}
	return len(p), nil
}

// Flush writes what is waiting.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

func (w *logWriter) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	_, _ = w.out.Write(w.buf) // stderr: nowhere to report its failure
	if cap(w.buf) > 4*logBufferMax {
		w.buf = nil // a burst's buffer is not kept
	} else {
		w.buf = w.buf[:0]
	}
}

// Close stops the timer and writes what is waiting; later lines are
// written at once.
func (w *logWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	w.closed = true
	w.flushLocked()
}

// flushOnWarn writes warnings and errors out at once.
type flushOnWarn struct {
	slog.Handler
	w *logWriter
}

func (h flushOnWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.Flush()
	}
	return err
}

func (h flushOnWarn) WithAttrs(as []slog.Attr) slog.Handler {
	return flushOnWarn{h.Handler.WithAttrs(as), h.w}
}

func (h flushOnWarn) WithGroup(name string) slog.Handler {
	return flushOnWarn{h.Handler.WithGroup(name), h.w}
}
