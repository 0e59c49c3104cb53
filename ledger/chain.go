package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/dpproxy/dpproxy/mechanisms"
)

// The hash chain, shared by both backends.
//
// body   = canonical JSON of entryBody (the charge as given, in fixed point)
// digest = SHA-256(body)
// link   = prev (32 bytes) ‖ digest (32 bytes) ‖ seq "\n" spentEps "\n" spentDelta "\n" queries
// hash   = SHA-256(link), stored in hex
//
// prev is the hash of the previous entry in the chain (32 zero bytes for the
// first). The numbers are decimal integers (fixed-point units); with typical
// values link fits in two SHA-256 blocks. RedisStore computes link and hash
// inside its Lua script (lua/debit.lua); Go computes them for BoltStore and
// for Verify.

const genesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// bodyVersion 2 added the optional fields after Mode; version 1 bodies
// (without them) still verify and decode.
const bodyVersion = 2

// entryBody is the canonical encoding of a charge. Field order is fixed by
// the struct; do not reorder or rename (bump bodyVersion instead).
type entryBody struct {
	V             int      `json:"v"`
	ID            string   `json:"id"`
	Time          string   `json:"time"` // RFC 3339, nanoseconds, UTC
	Analyst       string   `json:"analyst"`
	EpsUnits      int64    `json:"eps_units"`
	DeltaUnits    int64    `json:"delta_units"`
	BudgetEps     int64    `json:"budget_eps_units"`
	BudgetDelta   int64    `json:"budget_delta_units"`
	Statement     string   `json:"statement"`
	Fingerprint   string   `json:"fingerprint"`
	Tables        []string `json:"tables"`
	Mechanisms    string   `json:"mechanisms"`
	PolicyVersion string   `json:"policy_version"`
	CacheHit      bool     `json:"cache_hit"`
	Mode          Mode     `json:"mode"`
	Kind          string   `json:"kind,omitempty"` // "" (a charge), KindGrant or KindReset
	// The analyst's budget period and bucket, and the shared levels.
	Period   Period       `json:"period,omitempty"`
	Bucket   string       `json:"bucket,omitempty"`
	Shared   []level      `json:"shared,omitempty"`
	RDPUnits []int64      `json:"rdp_units,omitempty"`
	XEps     int64        `json:"x_eps_units,omitempty"`
	XDelta   int64        `json:"x_delta_units,omitempty"`
	Repeats  []repeatBody `json:"repeats,omitempty"`
}

type repeatBody struct {
	ID   string `json:"id"`
	Time string `json:"time"` // as entryBody.Time
}

func newBody(c *Charge, a amounts, mode Mode) entryBody {
	tables := c.Tables
	if tables == nil {
		tables = []string{}
	}
	own := a.levels[0]
	return entryBody{
		V:             bodyVersion,
		ID:            c.ID,
		Time:          c.Time.UTC().Format(time.RFC3339Nano),
		Analyst:       c.Analyst,
		EpsUnits:      a.eps,
		DeltaUnits:    a.delta,
		BudgetEps:     own.BudgetEps,
		BudgetDelta:   own.BudgetDelta,
		Statement:     c.Statement,
		Fingerprint:   c.Fingerprint,
		Tables:        tables,
		Mechanisms:    c.Mechanisms,
		PolicyVersion: c.PolicyVersion,
		CacheHit:      c.CacheHit,
		Mode:          mode,
		Period:        own.Period,
		Bucket:        own.Bucket,
		Shared:        a.levels[1:],
		RDPUnits:      a.rdp,
		XEps:          a.xeps,
		XDelta:        a.xdelt,
		Repeats:       repeatBodies(c.Repeats),
	}
}

func repeatBodies(rs []Repeat) []repeatBody {
	if len(rs) == 0 {
		return nil
	}
	out := make([]repeatBody, len(rs))
	for i, r := range rs {
		out[i] = repeatBody{ID: r.ID, Time: r.Time.UTC().Format(time.RFC3339Nano)}
	}
	return out
}

// newGrantBody encodes an admin adjustment of level l by (eps, delta) units.
func newGrantBody(g *Grant, l level, eps, delta int64, mode Mode) entryBody {
	kind := KindGrant
	if g.Reset {
		kind = KindReset
	}
	return entryBody{
		V:          bodyVersion,
		ID:         g.ID,
		Time:       g.Time.UTC().Format(time.RFC3339Nano),
		Analyst:    g.Analyst,
		EpsUnits:   eps,
		DeltaUnits: delta,
		Statement:  g.Note,
		Tables:     []string{},
		Mode:       mode,
		Kind:       kind,
		Period:     l.Period,
		Bucket:     l.Bucket,
	}
}

// ownLevel is the analyst's level recorded in a body (its budget included).
func (b *entryBody) ownLevel() level {
	return level{Account: analystAccount(b.Analyst), Period: b.Period, Bucket: b.Bucket, BudgetEps: b.BudgetEps, BudgetDelta: b.BudgetDelta}
}

func (b *entryBody) encode() (body []byte, digest string) {
	body = b.appendJSON(make([]byte, 0, 512))
	return body, sha256Hex(body)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func linkHash(prev string, seq uint64, spentEps, spentDelta, queries int64, digest string) string {
	buf := make([]byte, 0, 64+4*20)
	buf = appendHex(buf, prev)
	buf = appendHex(buf, digest)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, '\n')
	buf = strconv.AppendInt(buf, spentEps, 10)
	buf = append(buf, '\n')
	buf = strconv.AppendInt(buf, spentDelta, 10)
	buf = append(buf, '\n')
	buf = strconv.AppendInt(buf, queries, 10)
	return sha256Hex(buf)
}

// appendHex appends the bytes of hex string h. A malformed h (only possible
// in a tampered record) is appended as is, so the hash simply mismatches.
func appendHex(buf []byte, h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return append(buf, h...)
	}
	return append(buf, b...)
}

const digestLen = 64

// record is a stored audit entry: the exact body bytes plus what the store
// determined when it appended it.
type record struct {
	Seq        uint64 `json:"seq"`
	Prev       string `json:"prev"`
	Hash       string `json:"hash"`
	SpentEps   int64  `json:"spent_eps_units"`
	SpentDelta int64  `json:"spent_delta_units"`
	Queries    int64  `json:"queries"`
	Body       string `json:"body"`
}

// check recomputes the record's hash given the expected previous hash and
// position and returns the decoded body.
func (r *record) check(prev string, seq uint64) (entryBody, error) {
	var b entryBody
	if r.Seq != seq {
		return b, fmt.Errorf("entry %d: holds the record of entry %d (entries deleted or reordered)", seq, r.Seq)
	}
	if r.Prev != prev {
		return b, fmt.Errorf("entry %d: previous-hash link broken (an earlier entry was deleted, reordered or edited)", seq)
	}
	if got := linkHash(r.Prev, r.Seq, r.SpentEps, r.SpentDelta, r.Queries, sha256Hex([]byte(r.Body))); got != r.Hash {
		return b, fmt.Errorf("entry %d: hash mismatch (entry edited)", seq)
	}
	if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
		return b, fmt.Errorf("entry %d: undecodable body: %v", seq, err)
	}
	return b, nil
}

func (r *record) entry() (Entry, error) {
	var b entryBody
	if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: undecodable body: %v", ErrUnavailable, r.Seq, err)
	}
	t, err := time.Parse(time.RFC3339Nano, b.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: entry %d: bad time: %v", ErrUnavailable, r.Seq, err)
	}
	kind := b.Kind
	if kind == "" {
		kind = KindCharge
	}
	var shared []Limit
	for _, l := range b.Shared {
		shared = append(shared, Limit{Account: l.Account, Budget: Budget{Epsilon: fromEps(l.BudgetEps), Delta: fromDelta(l.BudgetDelta), Period: l.Period}})
	}
	var rdp *mechanisms.RDPVector
	if len(b.RDPUnits) == mechanisms.NumRDPOrders {
		rdp = new(mechanisms.RDPVector)
		for i, u := range b.RDPUnits {
			rdp[i] = fromEps(u)
		}
	}
	var repeats []Repeat
	for _, rb := range b.Repeats {
		rt, err := time.Parse(time.RFC3339Nano, rb.Time)
		if err != nil {
			return Entry{}, fmt.Errorf("%w: entry %d: bad time of repeat %q: %v", ErrUnavailable, r.Seq, rb.ID, err)
		}
		repeats = append(repeats, Repeat{ID: rb.ID, Time: rt})
	}
	eps, delta := fromEps(b.EpsUnits), fromDelta(b.DeltaUnits)
	return Entry{
		Seq:           r.Seq,
		Kind:          kind,
		ID:            b.ID,
		Time:          t,
		Analyst:       b.Analyst,
		Epsilon:       eps,
		Delta:         delta,
		Budget:        Budget{Epsilon: fromEps(b.BudgetEps), Delta: fromDelta(b.BudgetDelta), Period: b.Period},
		Statement:     b.Statement,
		Fingerprint:   b.Fingerprint,
		Tables:        b.Tables,
		Mechanisms:    b.Mechanisms,
		PolicyVersion: b.PolicyVersion,
		CacheHit:      b.CacheHit,
		Repeats:       repeats,
		Mode:          b.Mode,
		Bucket:        b.Bucket,
		Shared:        shared,
		RDP:           rdp,
		SpentEpsilon:  fromEps(r.SpentEps),
		SpentDelta:    fromDelta(r.SpentDelta),
		Queries:       r.Queries,
		PrevHash:      r.Prev,
		Hash:          r.Hash,
	}, nil
}
