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
// audit trail is the ledger, never the log.
type logWriter struct {
	out io.Writer

	mu     sync.Mutex
	buf    []byte
	closed bool // after Close every line is written at once

	stop chan struct{}
	done chan struct{}
}

const (
	logFlushEvery = 10 * time.Millisecond
	logBufferMax  = 64 << 10 // written at once when this much is waiting
)

func newLogWriter(out io.Writer, every time.Duration) *logWriter {
	w := &logWriter{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(every)
	return w
}

func (w *logWriter) run(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write queues one log line (slog handlers write a record at a time).
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if w.closed || len(w.buf) >= logBufferMax {
		w.flushLocked()
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
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
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
