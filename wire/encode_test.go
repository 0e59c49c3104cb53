package wire

import (
	"bytes"
	"sync"
	"testing"

	"github.com/dpproxy/dpproxy/rewrite"
)

// TestEncodeBinaryConcurrent encodes every result type from several
// goroutines at once, as concurrent sessions asking for binary results do.
// encodeBinary once shared one pgtype.Map, whose memoized plans are maps
// without locks: `go test -race ./wire` reported the write, and Go's
// "concurrent map writes" would have ended the process. Each goroutine
// also checks it got the same bytes as a serial encoding.
func TestEncodeBinaryConcurrent(t *testing.T) {
	values := []struct {
		typ rewrite.ResultType
		v   string
	}{
		{rewrite.TypeNumeric, "12345.6789"},
		{rewrite.TypeDate, "2025-03-01"},
		{rewrite.TypeTimestamp, "2025-03-01 12:34:56.789"},
		{rewrite.TypeTimestamptz, "2025-03-01 12:34:56.789+00"},
		{rewrite.TypeInt4, "42"},
		{rewrite.TypeInt2, "7"},
		{rewrite.TypeFloat4, "1.5"},
		{rewrite.TypeBool, "t"},
		{rewrite.TypeInt8, "-9"},
		{rewrite.TypeFloat8, "0.25"},
	}
	// The goroutines start together, before any encoding: a Map writes its
	// memo on a type's first encoding, so that is where they would race.
	const goroutines = 8
	got := make([][][]byte, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, c := range values {
				b, err := encodeBinary(c.typ, c.v)
				if err != nil {
					b = nil
				}
				got[g] = append(got[g], b)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, c := range values {
		want, err := encodeBinary(c.typ, c.v)
		if err != nil {
			t.Fatalf("%s %q: %v", c.typ.Name, c.v, err)
		}
		for g := range goroutines {
			if !bytes.Equal(got[g][i], want) {
				t.Errorf("goroutine %d encoded the %s value %q as %x, serially %x", g, c.typ.Name, c.v, got[g][i], want)
			}
		}
	}
}
