package answer

import (
	"fmt"
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
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return Row{}, fmt.Errorf("quantity %d: %w", i, err)
		}
		r.Q[i] = f
	}
	for _, c := range p.centred {
		var err error
		if r.Q[c.at], err = CentredSum(c.centre, raw[p.nk+c.at], raw[p.nk+c.count]); err != nil {
			return Row{}, fmt.Errorf("quantity %d: %w", c.at, err)
		}
	}
	return r, nil
}
