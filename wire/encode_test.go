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
	want := make([][]byte, len(values))
	for i, c := range values {
		b, err := encodeBinary(c.typ, c.v)
		if err != nil {
			t.Fatalf("%s %q: %v", c.typ.Name, c.v, err)
		}
		want[i] = b
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < 200; r++ {
				for i, c := range values {
					b, err := encodeBinary(c.typ, c.v)
					if err != nil || !bytes.Equal(b, want[i]) {
						errs <- c.typ.Name
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for name := range errs {
		t.Errorf("concurrent encoding of a %s value failed or differed from the serial one", name)
	}
}
