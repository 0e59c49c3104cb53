package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
)

// preflight rejects a truncated bbolt file before bbolt maps it: bbolt
// trusts the meta page's page count, and touching a mapped page beyond the
// end of the file is a SIGBUS that no recover can catch. It reads the two
// meta pages (layout of go.etcd.io/bbolt/internal/common.Meta, little-endian)
// and checks the file holds every page the newest valid meta claims. Files
// it cannot judge are left to bbolt, which reports them.
func preflight(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil
	}
	const (
		boltMagic   = 0xED0CDAED
		metaOff     = 16 // page header: id u64, flags u16, count u16, overflow u32
		checksumOff = metaOff + 56
	)
	buf := make([]byte, 80)
	var best struct {
		ok         bool
		txid, pgid uint64
		pageSize   uint32
	}
	pageSize := int64(0)
	for i := range 2 {
		if _, err := f.ReadAt(buf, int64(i)*pageSize); err != nil && err != io.EOF {
			return err
		}
		m := buf[metaOff:]
		le := binary.LittleEndian
		if le.Uint32(m[0:]) != boltMagic {
			continue
		}
		ps := le.Uint32(m[8:])
		if i == 0 {
			pageSize = int64(ps)
		}
		h := fnv.New64a()
		h.Write(buf[metaOff:checksumOff])
		if h.Sum64() != le.Uint64(buf[checksumOff:]) {
			continue
		}
		pgid, txid := le.Uint64(m[40:]), le.Uint64(m[48:])
		if !best.ok || txid > best.txid {
			best.ok, best.txid, best.pgid, best.pageSize = true, txid, pgid, ps
		}
		if pageSize == 0 {
			break // cannot locate the second meta page
		}
	}
	if !best.ok || best.pageSize == 0 {
		return nil
	}
	if need := int64(best.pgid) * int64(best.pageSize); st.Size() < need {
		return fmt.Errorf("file truncated: %d bytes, its meta page needs %d", st.Size(), need)
	}
	return nil
}
