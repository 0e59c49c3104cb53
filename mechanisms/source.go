package mechanisms

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"testing"
)

// Source is a stream of uniformly random bits, 64 at a time.
//
// A Source is not safe for concurrent use: each connection or goroutine holds
// its own, so there is no shared lock on the sampling path. Production code
// obtains one only from [NewSecureSource]; this is the package's single door
// for randomness.
type Source interface {
	Uint64() uint64
}

// secureBufSize is how many bytes a secure source reads from crypto/rand at a
// time, amortising the system call over 512 draws.
const secureBufSize = 4096

type secureSource struct {
	pos int
	buf [secureBufSize]byte
}

// NewSecureSource returns a Source backed by crypto/rand. It reads
// secureBufSize bytes at a time and hands them out 8 bytes per call. Bytes are
// never reused: a consumed buffer is refilled before the next draw.
func NewSecureSource() Source {
	return &secureSource{pos: secureBufSize}
}

func (s *secureSource) Uint64() uint64 {
	if s.pos+8 > secureBufSize {
		// crypto/rand.Read never returns an error on supported platforms
		// (Go >= 1.24 aborts the program instead of returning short reads).
		_, _ = rand.Read(s.buf[:])
		s.pos = 0
	}
	v := binary.LittleEndian.Uint64(s.buf[s.pos:])
	s.pos += 8
	return v
}

// seededSource is xoshiro256** seeded by SplitMix64 (Blackman & Vigna 2018).
// It exists only so that statistical tests are reproducible.
type seededSource struct{ s [4]uint64 }

// NewSeededSourceForTest returns a deterministic Source for tests. It panics
// unless called from a test binary (testing.Testing()), so production code
// can never be given predictable noise.
func NewSeededSourceForTest(seed uint64) Source {
	if !testing.Testing() {
		panic("mechanisms: NewSeededSourceForTest called outside a test binary")
	}
	var r seededSource
	x := seed
	for i := range r.s {
		// SplitMix64.
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return &r
}

func (r *seededSource) Uint64() uint64 {
	s := &r.s
	result := bits.RotateLeft64(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = bits.RotateLeft64(s[3], 45)
	return result
}

// uniform returns an integer uniformly distributed on [0, n), n >= 1, using
// Lemire's multiply-and-reject method ("Fast random integer generation in an
// interval", ACM TOMS 2019). There is no modulo bias: draws whose low product
// word falls below 2^64 mod n are rejected.
func uniform(src Source, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// bernoulliRat returns true with probability num/den exactly (0 <= num <= den,
// den >= 1).
func bernoulliRat(src Source, num, den uint64) bool {
	return uniform(src, den) < num
}

// bernoulliHalf returns true with probability 1/2.
func bernoulliHalf(src Source) bool {
	return src.Uint64()>>63 == 1
}
