package jsonstr

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

var seeds = []string{"", "plain", `q"uote`, `back\slash`, "a<b>c&d", "\b\f\n\r\t\x00\x1f\x7f", "héllo ☃",
	"bad \xff\xfe utf8", "\u2028\u2029", "\xed\xa0\x80 surrogate"}

// slogQuoted is how slog's JSON handler writes s as a value.
func slogQuoted(s string) string {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if len(a.Key) > 1 { // drop time, level and msg
			return slog.Attr{}
		}
		return a
	}})).Info("", "k", s)
	out := buf.String() // {"k":<quoted>}\n
	return out[len(`{"k":`) : len(out)-2]
}

func FuzzAppend(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := Append(nil, s, EncodingJSON); string(got) != string(want) {
			t.Errorf("EncodingJSON: got %s, want %s", got, want)
		}
		if got, want := Append(nil, s, Slog), slogQuoted(s); string(got) != want {
			t.Errorf("Slog: got %s, want %s", got, want)
		}
	})
}
