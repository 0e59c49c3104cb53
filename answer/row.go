package answer

import (
	"fmt"
	"math/big"
	"strconv"

	"github.com/dpproxy/dpproxy/rewrite"
)

// RowParser turns rows of a plan's rewritten SQL, as Postgres's text, into
// exact Rows: the group keys, then the quantities, centred sums centred
// (rewrite.Quantity.Centre).
type RowParser struct {
	nk, nq  int
	keys    []rewrite.Key
	centred []centredColumn
}

// centredColumn is a quantity column that holds a plain sum to centre, and
// the column of its count.
type centredColumn struct {
	at, count int
	centre    *rewrite.Centre
}

// NewRowParser parses the rows of plan's rewritten SQL. It is made once per
// statement: the centred columns are found once, not per row.
func NewRowParser(plan *rewrite.Plan) *RowParser {
	p := &RowParser{nk: len(plan.Keys), nq: plan.Columns(), keys: plan.Keys}
	for i, q := range plan.Quantities {
		if q.Centre != nil {
			p.centred = append(p.centred, centredColumn{at: plan.ColumnOffset(i), count: plan.ColumnOffset(q.Centre.Count), centre: q.Centre})
		}
	}
	return p
}

// Parse parses one row; nil values are NULL keys, or sums over no rows.
func (p *RowParser) Parse(raw [][]byte) (Row, error) {
	if len(raw) != p.nk+p.nq {
		return Row{}, fmt.Errorf("upstream row has %d columns, want %d", len(raw), p.nk+p.nq)
	}
	r := Row{Keys: make([]*string, p.nk), Q: make([]float64, p.nq)}
	for i := range p.nk {
		if raw[i] != nil {
			s := p.keys[i].Released(string(raw[i]))
			r.Keys[i] = &s
		}
	}
	for i, v := range raw[p.nk:] {
		if v == nil {
			continue
		}
		f, x, err := parseQuantity(v)
		if err != nil {
			return Row{}, fmt.Errorf("quantity %d: %w", i, err)
		}
		r.Q[i] = f
		r.setExact(i, x, p.nq)
	}
	for _, c := range p.centred {
		f, x, err := CentredSum(c.centre, raw[p.nk+c.at], raw[p.nk+c.count])
		if err != nil {
			return Row{}, fmt.Errorf("quantity %d: %w", c.at, err)
		}
		r.Q[c.at] = f
		r.setExact(c.at, x, p.nq)
	}
	return r, nil
}

// setExact records quantity i's exact value x, if it has one (Row.Exact).
func (r *Row) setExact(i int, x *big.Rat, n int) {
	if x == nil {
		if i < len(r.Exact) {
			r.Exact[i] = nil
		}
		return
	}
	if r.Exact == nil {
		r.Exact = make([]*big.Rat, n)
	}
	r.Exact[i] = x
}

// parseQuantity reads one of PostgreSQL's exact quantities: its nearest
// float64, and the exact value when the float64 is not it. Integers below
// 2^53 (counts, integer sums) are exact in a float64 and take no big.Rat.
func parseQuantity(v []byte) (float64, *big.Rat, error) {
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n > -1<<53 && n < 1<<53 {
		return float64(n), nil, nil
	}
	x, ok := new(big.Rat).SetString(string(v))
	if !ok {
		// NaN and infinities: no exact rational; as before, their float.
		f, err := strconv.ParseFloat(string(v), 64)
		return f, nil, err
	}
	f, exact := x.Float64()
	if exact {
		return f, nil, nil
	}
	return f, x, nil
}
