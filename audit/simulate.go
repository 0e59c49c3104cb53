package audit

import (
	"fmt"
	"math"
	"math/big"
	"strconv"

	"github.com/dpproxy/dpproxy/answer"
	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Absent is the statistic of an answer in which the audited group was not
// released (partition selection suppressed it): below every real value.
const Absent = -1e300

// Statistic picks the audited number out of an answer: column Col of the
// row whose first column is Group (or of the first row when Group is "").
type Statistic struct {
	Group string
	Col   int
}

// Of returns the statistic of res, Absent when the group is missing and
// NaN for a NULL or non-numeric value.
func (s Statistic) Of(res *answer.Result) float64 {
	for i, row := range res.Rows {
		if s.Group != "" && (len(row) == 0 || row[0] != s.Group) {
			continue
		}
		if s.Col >= len(row) || res.Nulls[i][s.Col] {
			return math.NaN()
		}
		f, err := strconv.ParseFloat(row[s.Col], 64)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	return Absent
}

// Case is one audit: a plan, the exact results of its rewritten SQL on two
// neighbouring databases, and the ε and δ the proxy charges for it.
type Case struct {
	Plan           *rewrite.Plan
	Exact0, Exact1 []answer.Row
	Epsilon, Delta float64
	Stat           Statistic
	// NoiseFactor scales the noise down: the mechanisms are calibrated at
	// ε·NoiseFactor while ε is charged. 1 (or 0) is the real mechanism; 2
	// is the deliberately broken one with half the noise.
	NoiseFactor float64
}

// Simulate answers c n times on each database with fresh noise from src,
// exactly as the proxy post-processes an upstream result, and returns the
// two samples of the statistic.
func Simulate(c Case, n int, src mechanisms.Source) (s0, s1 []float64, err error) {
	f := c.NoiseFactor
	if f == 0 {
		f = 1
	}
	mech, err := answer.Calibrate(c.Plan, c.Epsilon*f, c.Delta)
	if err != nil {
		return nil, nil, err
	}
	s0, s1 = make([]float64, 0, n), make([]float64, 0, n)
	for range n {
		for _, side := range []struct {
			exact []answer.Row
			out   *[]float64
		}{{c.Exact0, &s0}, {c.Exact1, &s1}} {
			res, err := answer.Compute(c.Plan, mech, copyRows(side.exact), src)
			if err != nil {
				return nil, nil, fmt.Errorf("audit: answering: %w", err)
			}
			v := c.Stat.Of(res)
			if math.IsNaN(v) {
				v = Absent
			}
			*side.out = append(*side.out, v)
		}
	}
	return s0, s1, nil
}

func copyRows(rows []answer.Row) []answer.Row {
	out := make([]answer.Row, len(rows))
	for i, r := range rows {
		out[i] = answer.Row{Keys: append([]*string(nil), r.Keys...), Q: append([]float64(nil), r.Q...), Exact: append([]*big.Rat(nil), r.Exact...)}
	}
	return out
}

// AddUnit returns the exact results on the neighbouring database D1 = D0 +
// one unit, from the exact results on D0 and those on a database holding
// only that unit: quantities of the same group add up, the unit's new
// groups are appended. The rewritten SQL bounds each unit's contribution
// independently of the others (per-unit row and group sampling included),
// so this is the result on D1 with every other unit's random choices held
// fixed: running the SQL twice would redraw them and the two samples would
// differ by much more than one unit.
func AddUnit(d0, unit []answer.Row) []answer.Row {
	out := copyRows(d0)
	index := map[string]int{}
	for i, r := range out {
		index[keyOf(r)] = i
	}
	for _, r := range unit {
		if i, ok := index[keyOf(r)]; ok {
			for j := range r.Q {
				if len(out[i].Exact) == 0 && len(r.Exact) == 0 {
					out[i].Q[j] += r.Q[j]
					continue
				}
				// Add exactly, as PostgreSQL would sum the rows: the
				// noise is added to the exact sum (answer.Row.Exact).
				x := new(big.Rat).Add(out[i].ExactQ(j), r.ExactQ(j))
				if out[i].Exact == nil {
					out[i].Exact = make([]*big.Rat, len(out[i].Q))
				}
				out[i].Q[j], _ = x.Float64()
				out[i].Exact[j] = x
			}
			continue
		}
		out = append(out, copyRows([]answer.Row{r})...)
	}
	return out
}

func keyOf(r answer.Row) string {
	k := ""
	for _, s := range r.Keys {
		if s == nil {
			k += "\x00N"
		} else {
			k += "\x00V" + *s
		}
	}
	return k
}
