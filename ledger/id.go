package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewID returns a fresh charge ID: 32 hex digits, the first 16 the current
// time in nanoseconds and the rest 64 random bits. IDs that grow with time
// land next to each other in the bolt ledger's index of charge IDs, so a
// commit rewrites one or two index pages instead of one random page per
// charge (random IDs made every debit dirty its own 4 KiB page). Uniqueness
// rests on the random half; the time half is not trusted for anything.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}
