// Package jsonstr quotes strings as JSON exactly as encoding/json or
// log/slog's JSON handler does, without reflection: the ledger's entries
// are hashed byte for byte, and log lines must read as slog's.
package jsonstr

import "unicode/utf8"

// Style is whose quoting to reproduce.
type Style bool

const (
	// EncodingJSON: <, > and & escaped as \u003c…, \b and \f written short.
	EncodingJSON Style = true
	// Slog: HTML characters as they are, \b and \f as \u0008 and \u000c.
	Slog Style = false
)

const hexDigits = "0123456789abcdef"

// Append appends s to buf as a quoted JSON string in the given style.
// Invalid UTF-8 becomes \ufffd, and U+2028 and U+2029 are escaped.
func Append(buf []byte, s string, style Style) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (style == Slog || b != '<' && b != '>' && b != '&') {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch {
			case b == '\\' || b == '"':
				buf = append(buf, '\\', b)
			case b == '\n':
				buf = append(buf, '\\', 'n')
			case b == '\r':
				buf = append(buf, '\\', 'r')
			case b == '\t':
				buf = append(buf, '\\', 't')
			case b == '\b' && style == EncodingJSON:
				buf = append(buf, '\\', 'b')
			case b == '\f' && style == EncodingJSON:
				buf = append(buf, '\\', 'f')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
