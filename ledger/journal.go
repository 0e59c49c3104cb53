package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The bolt ledger's journal: each group commit is one frame written to
// <file>-journal and made durable with a single fdatasync before any of its
// debits returns. bbolt needs two fsyncs per transaction (pages, then the
// meta page), so the journal halves the disk round trips on the debit path;
// a checkpointer copies frames into the bolt file behind it, in larger
// transactions. Opening the ledger replays the frames the bolt file lacks,
// so an acknowledged debit survives a crash of the process or of the
// machine at any point.
//
// A frame is: payload length (u32), CRC-32C of the payload (u32), payload,
// zero padding to the next journalBlock. The payload is the batch's bolt
// writes: the sequence number and hash the batch continues from, the head
// it leaves, and the key/value puts.

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// journalBuckets are the buckets a frame writes to, by their put* number.
var journalBuckets = [][]byte{bucketAudit, bucketIDs, bucketAccounts, bucketBudgets}

const (
	putAudit byte = iota
	putIDs
	putAccounts
	putBudgets
)

// maxFrame bounds a frame's payload when reading: a larger length is a torn
// or corrupt header, not a frame.
const maxFrame = 256 << 20

// journalBlock aligns frames: each starts on a block of its own, so writing
// a frame never rewrites a block that holds an acknowledged one, and a
// reader can find the frames after a corrupt one.
const journalBlock = 4096

// boltBatch is one group commit's writes to the bolt file.
type boltBatch struct {
	FromSeq  uint64 // the head before the batch
	FromHash string
	HeadSeq  uint64 // the head after it
	HeadHash string
	Puts     []boltPut
}

type boltPut struct {
	Bucket byte
	Key    []byte
	Value  []byte
}

func (b *boltBatch) put(bucket byte, k, v []byte) {
	b.Puts = append(b.Puts, boltPut{bucket, k, v})
}

// frame encodes the batch as one journal frame.
func (b *boltBatch) frame() []byte {
	n := 64 + len(b.FromHash) + len(b.HeadHash)
	for _, p := range b.Puts {
		n += 1 + 2*binary.MaxVarintLen32 + len(p.Key) + len(p.Value)
	}
	buf := make([]byte, 8, 8+n)
	buf = binary.AppendUvarint(buf, b.FromSeq)
	buf = appendBytes(buf, []byte(b.FromHash))
	buf = binary.AppendUvarint(buf, b.HeadSeq)
	buf = appendBytes(buf, []byte(b.HeadHash))
	buf = binary.AppendUvarint(buf, uint64(len(b.Puts)))
	for _, p := range b.Puts {
		buf = append(buf, p.Bucket)
		buf = appendBytes(buf, p.Key)
		buf = appendBytes(buf, p.Value)
	}
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(buf)-8))
	binary.BigEndian.PutUint32(buf[4:8], crc32.Checksum(buf[8:], crc32c))
	return append(buf, make([]byte, alignUp(len(buf))-len(buf))...)
}

func alignUp(n int) int { return (n + journalBlock - 1) / journalBlock * journalBlock }

func appendBytes(buf, b []byte) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(b))), b...)
}

// decodeBatch decodes a frame's payload (already checksummed).
func decodeBatch(p []byte) (*boltBatch, error) {
	d := decoder{p: p}
	b := &boltBatch{FromSeq: d.uvarint(), FromHash: string(d.bytes())}
	b.HeadSeq, b.HeadHash = d.uvarint(), string(d.bytes())
	n := d.uvarint()
	if n > uint64(len(p)) {
		return nil, errors.New("put count exceeds the frame")
	}
	for range n {
		bucket := d.byte()
		b.Puts = append(b.Puts, boltPut{Bucket: bucket, Key: d.bytes(), Value: d.bytes()})
		if int(bucket) >= len(journalBuckets) {
			return nil, fmt.Errorf("unknown bucket %d", bucket)
		}
	}
	if d.err != nil || len(d.p) != 0 {
		return nil, errors.New("malformed frame payload")
	}
	if b.HeadSeq < b.FromSeq {
		return nil, errors.New("frame head precedes its start")
	}
	return b, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err, d.p = io.ErrUnexpectedEOF, nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.p) == 0 {
		d.err = io.ErrUnexpectedEOF
		return 0
	}
	c := d.p[0]
	d.p = d.p[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.p)) {
		d.err, d.p = io.ErrUnexpectedEOF, nil
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

// readJournal returns the intact frames of f (the journal file) in file
// order, reading every block-aligned frame of the file (zero blocks ahead
// of the writes are passed over). A short or corrupt frame is skipped: frames are written one
// at a time, each synced before the next is written, so normally only the
// last can be torn, and a torn frame was never acknowledged. Frames after
// the newest ones may be older ones, already in the bolt file, which the
// writer wrote over from the journal's start. Replay skips frames the file
// holds and refuses a gap, so a corrupt frame whose entries the file lacks
// stops the ledger from opening instead of losing what follows it.
func readJournal(f io.ReaderAt) (batches []*boltBatch, corrupt int, err error) {
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
	if err != nil {
		return nil, 0, err
	}
	for off := 0; len(data)-off >= 8; off += journalBlock {
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 && sum == 0 {
			continue // zero-filled ahead of the writes (or zeroed by a fault: read on)
		}
		if n > maxFrame || len(data)-off-8 < n || crc32.Checksum(data[off+8:off+8+n], crc32c) != sum {
			corrupt++
			continue
		}
		b, err := decodeBatch(data[off+8 : off+8+n])
		if err != nil { // checksummed but undecodable: not a torn write
			return nil, 0, fmt.Errorf("journal frame at offset %d: %w", off, err)
		}
		batches = append(batches, b)
		off += alignUp(8+n) - journalBlock
	}
	return batches, corrupt, nil
}

// syncDir makes the directory's entries (a file just created) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
