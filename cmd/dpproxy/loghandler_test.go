package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"
)

// sameLine handles one record with lineHandler and with the standard
// handler of the same format, both derived by with, and fails unless the
// lines are identical.
func sameLine(t *testing.T, json bool, with func(slog.Handler) slog.Handler, r slog.Record) {
	t.Helper()
	var got, want bytes.Buffer
	var std slog.Handler = slog.NewTextHandler(&want, nil)
	if json {
		std = slog.NewJSONHandler(&want, nil)
	}
	fast := with(newLineHandler(&got, json))
	std = with(std)
	ctx := context.Background()
	if fast.Enabled(ctx, r.Level) != std.Enabled(ctx, r.Level) {
		t.Fatalf("Enabled(%v) differs", r.Level)
	}
	if !std.Enabled(ctx, r.Level) {
		return
	}
	if err := fast.Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := std.Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("json=%v\n got: %q\nwant: %q", json, got.String(), want.String())
	}
}

func record(tm time.Time, level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(tm, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

func TestLineHandlerMatchesSlog(t *testing.T) {
	tm := time.Date(2026, 11, 30, 7, 20, 38, 123456789, time.UTC)
	odd := []string{"", "plain", "two words", "a=b", `quote"d`, `back\slash`, "tab\there", "new\nline",
		"ctl\x01\x7f", "SELECT count(*) FROM t WHERE a > 1 AND b < 2 & c", "héllo", "snow ☃", "bad \xff utf8",
		"sep \u2028 \u2029", "nbsp\u00a0", "zero\u200bwidth", `say "hi" \ now`, `end\`}
	floats := []float64{0, -0.0, 0.034, 1, 1e-7, 1.5e-6, 1e20, 1e21, 123456789.125, -2.5e-9, math.NaN(), math.Inf(1), math.MaxFloat64}
	var attrs []slog.Attr
	for _, s := range odd {
		attrs = append(attrs, slog.String("s", s), slog.String(s, "v"))
	}
	for _, f := range floats {
		attrs = append(attrs, slog.Float64("f", f))
	}
	attrs = append(attrs, slog.Int("i", -42), slog.Uint64("u", math.MaxUint64), slog.Bool("b", true),
		slog.Duration("d", 1500*time.Microsecond), slog.Any("err", errors.New("boom")), slog.Time("t", tm),
		slog.Group("g", slog.Int("x", 1)), slog.Any("nil", nil), slog.Attr{}, slog.Int("", 3))
	plain := func(h slog.Handler) slog.Handler { return h }
	withs := map[string]func(slog.Handler) slog.Handler{
		"plain": plain,
		"attrs": func(h slog.Handler) slog.Handler {
			return h.WithAttrs([]slog.Attr{slog.Int("conn", 7), slog.String("user", "ann lee")})
		},
		"err attrs": func(h slog.Handler) slog.Handler { return h.WithAttrs([]slog.Attr{slog.Any("err", io.EOF)}) },
		"group": func(h slog.Handler) slog.Handler {
			return h.WithGroup("sess").WithAttrs([]slog.Attr{slog.Int("conn", 7)})
		},
		"empty": func(h slog.Handler) slog.Handler { return h.WithAttrs(nil).WithGroup("") },
	}
	for _, json := range []bool{false, true} {
		for name, with := range withs {
			t.Run(name, func(t *testing.T) {
				for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2} {
					sameLine(t, json, with, record(tm, level, "statement"))
				}
				sameLine(t, json, with, record(time.Time{}, slog.LevelInfo, "no time", slog.Int("n", 1)))
				sameLine(t, json, with, record(time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "far"))
				sameLine(t, json, with, record(tm.In(time.FixedZone("X", 3600)), slog.LevelWarn, "zone", slog.String("k", "v")))
				for _, a := range attrs {
					sameLine(t, json, with, record(tm, slog.LevelInfo, "one", a))
				}
				sameLine(t, json, with, record(tm, slog.LevelInfo, "all", attrs...))
				for _, s := range odd {
					sameLine(t, json, with, record(tm, slog.LevelInfo, s))
					sameLine(t, json, func(h slog.Handler) slog.Handler {
						return with(h).WithAttrs([]slog.Attr{slog.String(s, s)})
					}, record(tm, slog.LevelInfo, "m", slog.Int("n", 1)))
				}
			})
		}
	}
}

func FuzzLineHandler(f *testing.F) {
	f.Add("statement", "k", "SELECT 1", 0.5, int64(-3))
	f.Add("", "", "\xff", math.Inf(-1), int64(0))
	f.Fuzz(func(t *testing.T, msg, key, val string, fl float64, n int64) {
		tm := time.Unix(0, n).UTC()
		r := record(tm, slog.LevelInfo, msg, slog.String(key, val), slog.Float64("f", fl), slog.Int64(val, n))
		with := func(h slog.Handler) slog.Handler { return h.WithAttrs([]slog.Attr{slog.String(val, key)}) }
		sameLine(t, false, with, r)
		sameLine(t, true, with, r)
	})
}

// BenchmarkStatementLine: one statement line, as wire's logStatement
// writes it, by lineHandler and by the standard handler.
func BenchmarkStatementLine(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    slog.Handler
	}{
		{"line_text", newLineHandler(io.Discard, false)},
		{"line_json", newLineHandler(io.Discard, true)},
		{"slog_text", slog.NewTextHandler(io.Discard, nil)},
		{"slog_json", slog.NewJSONHandler(io.Discard, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := slog.New(bc.h).With("conn", 1234, "user", "bench", "remote", "127.0.0.1:5555").Handler()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() { // as logStatement: a record without a caller's PC
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "statement", 0)
				r.AddAttrs(slog.String("id", "q-0123456789abcdef"),
					slog.String("kind", "dp"), slog.String("outcome", "cache hit"), slog.String("sql", "SELECT count(*) FROM tiny"),
					slog.Float64("epsilon", 0.1), slog.Float64("delta", 0), slog.Int("rows", 1), slog.Float64("parse_ms", 0.012),
					slog.Float64("ledger_ms", 0), slog.Float64("upstream_ms", 0), slog.Float64("total_ms", 0.034))
				if err := h.Handle(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
