package answer

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/rewrite"
)

// Row is one row of the rewritten query's result: group keys as Postgres's
// text (nil for NULL), then exact quantities.
type Row struct {
	Keys []*string
	Q    []float64
	// Exact holds, where Q[i] is not exactly PostgreSQL's value (a decimal
	// sum a float64 cannot hold), that value: noise is added to it on the
	// grid (mechanisms.Laplace.AddNoiseExact), since rounding to float64
	// first could move two neighbouring sums one grid step further apart
	// than the sensitivity allows. Nil, or nil entries, where Q is exact.
	Exact []*big.Rat
}

// exactAt is Row.Exact[i], or nil.
func (r Row) exactAt(i int) *big.Rat {
	if i < len(r.Exact) {
		return r.Exact[i]
	}
	return nil
}

// ExactQ is quantity i's exact value.
func (r Row) ExactQ(i int) *big.Rat {
	if x := r.exactAt(i); x != nil {
		return x
	}
	return new(big.Rat).SetFloat64(r.Q[i])
}

// Value is one post-processed value.
type Value struct {
	Null  bool
	Num   float64
	Str   string
	IsStr bool
}

// Result is the analyst's answer.
type Result struct {
	Rows     [][]string // text form, in output order; a nil-able form is in Nulls
	Nulls    [][]bool
	Accuracy []string // one note per aggregate: "count ±6 at 95%"
}

// Mechanisms is the calibrated noise of one plan at one ε. It holds
// parameters only and is not changed after Calibrate, so answers may share
// it (wire keeps a session's last one); the noise comes from the Source
// given to Compute.
type Mechanisms struct {
	laplace         []*mechanisms.Laplace // nil at the selection quantity and at choices
	choiceEps       []float64             // ε of each Choice quantity
	selection       *mechanisms.PartitionSelection
	selectionGroups int
}

// Calibrate builds the mechanisms of plan for a query budget of (eps, delta).
// delta is used only by partition selection.
func Calibrate(plan *rewrite.Plan, eps, delta float64) (*Mechanisms, error) {
	m := &Mechanisms{laplace: make([]*mechanisms.Laplace, len(plan.Quantities)), choiceEps: make([]float64, len(plan.Quantities))}
	for i, q := range plan.Quantities {
		if q.Choice != nil {
			m.choiceEps[i] = eps * q.Weight
			continue
		}
		if plan.Selection != nil && i == plan.Selection.Units {
			ps, err := mechanisms.NewPartitionSelection(mechanisms.PartitionSelectionOptions{
				Epsilon: eps * q.Weight, Delta: delta, MaxPartitionsContributed: int64(plan.Selection.MaxGroups),
			})
			if err != nil {
				return nil, fmt.Errorf("partition selection: %w", err)
			}
			m.selection, m.selectionGroups = ps, plan.Selection.MaxGroups
			continue
		}
		l, err := mechanisms.NewLaplace(mechanisms.LaplaceOptions{Epsilon: eps * q.Weight, L1Sensitivity: q.L1Sensitivity, Granularity: q.Granularity})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.Expr, err)
		}
		m.laplace[i] = l
	}
	return m, nil
}

// RDP is the Rényi-DP curve of answering with these mechanisms: the sum of
// the discrete Laplace curves (composition), partition selection included
// as the discrete Laplace on the unit counts (its delta is accounted apart).
func (m *Mechanisms) RDP() mechanisms.RDPVector {
	var v mechanisms.RDPVector
	for i, l := range m.laplace {
		if l != nil {
			v = v.Add(l.RDP())
		}
		if m.choiceEps[i] > 0 {
			v = v.Add(mechanisms.RDPPureDP(m.choiceEps[i]))
		}
	}
	if m.selection != nil {
		v = v.Add(mechanisms.RDPDiscreteLaplace(m.selection.Scale(), float64(m.selectionGroups)))
	}
	return v
}

// Summary describes the mechanisms for the audit trail.
func (m *Mechanisms) Summary(plan *rewrite.Plan) string {
	parts := make([]string, 0, len(plan.Quantities))
	for i, q := range plan.Quantities {
		if q.Choice != nil {
			parts = append(parts, fmt.Sprintf("exponential(%s) epsilon=%s", q.Expr, ftoa(m.choiceEps[i])))
			continue
		}
		if m.laplace[i] == nil {
			parts = append(parts, fmt.Sprintf("partition selection(threshold=%d units, scale=%s)", m.selection.Threshold(), strconv.FormatFloat(m.selection.Scale(), 'g', 6, 64)))
			continue
		}
		parts = append(parts, fmt.Sprintf("laplace(%s) scale=%s", q.Expr, strconv.FormatFloat(m.laplace[i].Scale(), 'g', 6, 64)))
	}
	return strings.Join(parts, "; ")
}

// Compute adds noise to the exact rows and post-processes them.
func Compute(plan *rewrite.Plan, mech *Mechanisms, exact []Row, src mechanisms.Source) (*Result, error) {
	groups, err := selectGroups(plan, mech, exact, src)
	if err != nil {
		return nil, err
	}
	type outRow struct {
		vals []Value
		sort []Value
	}
	var rows []outRow
	aggHW := make([][]float64, len(plan.Aggs))
	for _, g := range groups {
		noisy := make([]float64, len(plan.Quantities))
		chosen := make([]Value, len(plan.Quantities))
		for i, q := range plan.Quantities {
			off := plan.ColumnOffset(i)
			if q.Choice != nil {
				chosen[i], err = choose(q, mech.choiceEps[i], g.Q[off:off+q.Columns()], src)
				if err != nil {
					return nil, err
				}
				continue
			}
			if mech.laplace[i] == nil {
				continue
			}
			if x := g.exactAt(off); x != nil {
				noisy[i] = mech.laplace[i].AddNoiseExact(src, x)
			} else {
				noisy[i] = mech.laplace[i].AddNoise(src, g.Q[off])
			}
			if q.NonNegative {
				noisy[i] = math.Max(0, noisy[i])
			}
		}
		aggs := make([]Value, len(plan.Aggs))
		for i, a := range plan.Aggs {
			if a.Kind == rewrite.AggQuantile || a.Kind == rewrite.AggMode {
				aggs[i] = chosen[a.Value]
				aggHW[i] = append(aggHW[i], 0)
				continue
			}
			aggs[i], err = aggValue(a, noisy)
			if err != nil {
				return nil, err
			}
			aggHW[i] = append(aggHW[i], aggHalfWidth(a, mech, noisy))
		}
		ev := &evaluator{plan: plan, keys: g.Keys, aggs: aggs}
		if plan.Having != nil {
			h := ev.eval(plan.Having)
			if h.Null || h.Num == 0 {
				continue
			}
		}
		r := outRow{vals: make([]Value, len(plan.Outputs))}
		for i, o := range plan.Outputs {
			r.vals[i] = cast(ev.eval(o.Expr), o.Type)
			if e := o.Expr; e.Kind == rewrite.ExprKey && g.Keys[e.Index] != nil && plan.Keys[e.Index].Type == rewrite.TypeNumeric {
				// A numeric key is released as written (1.5), not as a
				// number with the output's decimals (which rounded it).
				r.vals[i] = Value{Str: *g.Keys[e.Index], IsStr: true}
			}
		}
		for _, o := range plan.Order {
			r.sort = append(r.sort, ev.eval(o.Expr))
		}
		rows = append(rows, r)
	}
	if len(plan.Order) > 0 {
		sort.SliceStable(rows, func(i, j int) bool {
			for k, o := range plan.Order {
				c := compareForSort(rows[i].sort[k], rows[j].sort[k], o.NullsFirst)
				if c != 0 {
					if o.Desc {
						return c > 0
					}
					return c < 0
				}
			}
			return false
		})
	}
	if plan.Offset > 0 {
		rows = rows[min(int(plan.Offset), len(rows)):]
	}
	if plan.Limit >= 0 && int(plan.Limit) < len(rows) {
		rows = rows[:plan.Limit]
	}
	res := &Result{}
	for _, r := range rows {
		texts := make([]string, len(r.vals))
		nulls := make([]bool, len(r.vals))
		for i, v := range r.vals {
			texts[i], nulls[i] = format(v, plan.Outputs[i])
		}
		res.Rows = append(res.Rows, texts)
		res.Nulls = append(res.Nulls, nulls)
	}
	for i, a := range plan.Aggs {
		res.Accuracy = append(res.Accuracy, accuracyNote(a, aggHW[i]))
	}
	if plan.Selection != nil {
		res.Accuracy = append(res.Accuracy, fmt.Sprintf("%d groups released (threshold %d privacy units)", len(groups), mech.selection.Threshold()))
	}
	return res, nil
}

// selectGroups returns the groups to answer with their exact quantities:
// one row without GROUP BY; every combination of the public domains, empty
// ones included; or the groups that pass partition selection.
func selectGroups(plan *rewrite.Plan, mech *Mechanisms, exact []Row, src mechanisms.Source) ([]Row, error) {
	nq := plan.Columns()
	if len(plan.Keys) == 0 {
		if len(exact) > 1 {
			return nil, fmt.Errorf("ungrouped query returned %d rows", len(exact))
		}
		if len(exact) == 0 {
			return []Row{{Q: make([]float64, nq)}}, nil
		}
		return exact, nil
	}
	if plan.Selection != nil {
		var out []Row
		for _, r := range exact {
			if _, keep := mech.selection.Keep(src, int64(r.Q[plan.ColumnOffset(plan.Selection.Units)])); keep {
				out = append(out, r)
			}
		}
		return out, nil
	}
	// Matched by value (rewrite.Key.Match), released as the domain's
	// entries.
	match := func(keys []*string) string {
		m := make([]*string, len(keys))
		for i, k := range keys {
			if k != nil {
				s := plan.Keys[i].Match(*k)
				m[i] = &s
			}
		}
		return joinKeys(m)
	}
	byKey := make(map[string]Row, len(exact))
	for _, r := range exact {
		byKey[match(r.Keys)] = r
	}
	var out []Row
	combo := make([]*string, len(plan.Keys))
	var walk func(int)
	walk = func(i int) {
		if i == len(plan.Keys) {
			keys := append([]*string(nil), combo...)
			r, ok := byKey[match(keys)]
			if !ok {
				r = Row{Q: make([]float64, nq)}
			}
			r.Keys = keys
			out = append(out, r)
			return
		}
		for j := range plan.Keys[i].Domain {
			combo[i] = &plan.Keys[i].Domain[j]
			walk(i + 1)
		}
	}
	walk(0)
	return out, nil
}

func joinKeys(keys []*string) string {
	var b strings.Builder
	for _, k := range keys {
		if k == nil {
			b.WriteString("\x00N")
		} else {
			b.WriteString("\x00V")
			b.WriteString(*k)
		}
	}
	return b.String()
}

func aggValue(a rewrite.Agg, noisy []float64) (Value, error) {
	switch a.Kind {
	case rewrite.AggCount:
		return Value{Num: math.Round(noisy[a.Value])}, nil
	case rewrite.AggSum:
		return Value{Num: noisy[a.Value]}, nil
	case "variance", "var_samp", "var_pop", "stddev", "stddev_samp", "stddev_pop":
		n := noisy[a.Count]
		samp := a.Kind != "var_pop" && a.Kind != "stddev_pop"
		if n < 1 || (samp && n < 2) {
			return Value{Null: true}, nil
		}
		half := (a.Upper - a.Lower) / 2
		mean := noisy[a.Value] / n
		v := noisy[a.Square]/n - mean*mean
		v = math.Min(half*half, math.Max(0, v))
		if samp {
			v *= n / (n - 1)
		}
		if a.Kind[0] == 's' {
			v = math.Sqrt(v)
		}
		return Value{Num: v}, nil
	case rewrite.AggAvg:
		n := noisy[a.Count]
		if n < 1 {
			// Postgres returns NULL for the avg of no rows; a noisy count
			// below one is the DP equivalent.
			return Value{Null: true}, nil
		}
		avg := a.Mid + noisy[a.Value]/n
		return Value{Num: math.Min(a.Upper, math.Max(a.Lower, avg))}, nil
	}
	return Value{}, fmt.Errorf("unknown aggregate %q", a.Kind)
}

func aggHalfWidth(a rewrite.Agg, mech *Mechanisms, noisy []float64) float64 {
	hw := mech.laplace[a.Value].HalfWidth(0.95)
	if a.Kind != rewrite.AggAvg && a.Kind != rewrite.AggCount && a.Kind != rewrite.AggSum {
		return math.NaN()
	}
	if a.Kind == rewrite.AggAvg {
		return hw / math.Max(1, noisy[a.Count])
	}
	return hw
}

func accuracyNote(a rewrite.Agg, hws []float64) string {
	if len(hws) == 0 {
		return fmt.Sprintf("%s: no groups", a.Text)
	}
	switch a.Kind {
	case rewrite.AggQuantile:
		return fmt.Sprintf("%s by the exponential mechanism over %d buckets", a.Text, 64)
	case rewrite.AggMode:
		return fmt.Sprintf("%s by report noisy max", a.Text)
	}
	lo, hi := hws[0], hws[0]
	for _, h := range hws {
		lo, hi = math.Min(lo, h), math.Max(hi, h)
	}
	name := a.Text
	if a.Kind == rewrite.AggCount && name == "count(*)" {
		name = "count"
	}
	if math.IsNaN(hi) {
		return fmt.Sprintf("%s from noisy moments (no closed-form interval)", name)
	}
	if a.Kind != rewrite.AggAvg {
		return fmt.Sprintf("%s ±%s at 95%%", name, fmtAccuracy(hi))
	}
	if lo == hi {
		return fmt.Sprintf("%s ±%s at 95%% (approx.)", name, fmtAccuracy(hi))
	}
	return fmt.Sprintf("%s ±%s–%s at 95%% (approx.)", name, fmtAccuracy(lo), fmtAccuracy(hi))
}

func fmtAccuracy(hw float64) string {
	if hw >= 100 {
		return strconv.FormatFloat(math.Ceil(hw), 'f', 0, 64)
	}
	return strconv.FormatFloat(hw, 'g', 3, 64)
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
