package ledger

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// Report formats accepted by WriteReport.
const (
	FormatTable = "table"
	FormatCSV   = "csv"
	FormatJSON  = "json"
)

// reportRow is one balance as reported (CSV columns and JSON fields).
type reportRow struct {
	Analyst          string  `json:"analyst"`
	SpentEpsilon     float64 `json:"spent_epsilon"`
	BudgetEpsilon    float64 `json:"budget_epsilon"`
	RemainingEpsilon float64 `json:"remaining_epsilon"`
	SpentDelta       float64 `json:"spent_delta"`
	BudgetDelta      float64 `json:"budget_delta"`
	RemainingDelta   float64 `json:"remaining_delta"`
	Queries          int64   `json:"queries"`
}

var reportHeader = []string{
	"analyst", "spent_epsilon", "budget_epsilon", "remaining_epsilon",
	"spent_delta", "budget_delta", "remaining_delta", "queries",
}

func (r reportRow) fields() []string {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return []string{
		r.Analyst, g(r.SpentEpsilon), g(r.BudgetEpsilon), g(r.RemainingEpsilon),
		g(r.SpentDelta), g(r.BudgetDelta), g(r.RemainingDelta), strconv.FormatInt(r.Queries, 10),
	}
}

// WriteReport writes balances in format "table" (aligned text), "csv"
// (header row, then one row per analyst) or "json" (an array of objects).
// Rows are sorted by analyst; the budget columns include admin grants
// (Balance.EffectiveBudget). It is pure: no I/O besides w.
func WriteReport(w io.Writer, balances []Balance, format string) error {
	rows := make([]reportRow, len(balances))
	for i, b := range balances {
		rows[i] = reportRow{
			Analyst:      b.Analyst,
			SpentEpsilon: b.SpentEpsilon, BudgetEpsilon: b.EffectiveBudget().Epsilon, RemainingEpsilon: b.RemainingEpsilon(),
			SpentDelta: b.SpentDelta, BudgetDelta: b.EffectiveBudget().Delta, RemainingDelta: b.RemainingDelta(),
			Queries: b.Queries,
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Analyst < rows[j].Analyst })
	switch format {
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(reportHeader, "\t"))+"\t")
		for _, r := range rows {
			f := r.fields()
			f[0] = printable(f[0])
			fmt.Fprintln(tw, strings.Join(f, "\t")+"\t")
		}
		return tw.Flush()
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(reportHeader)
		for _, r := range rows {
			cw.Write(r.fields())
		}
		cw.Flush()
		return cw.Error()
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	default:
		return fmt.Errorf("ledger: unknown report format %q (want table, csv or json)", format)
	}
}

// WriteHTMLReport writes a self-contained HTML page (inline CSS and SVG, no
// scripts, no external resources): a chart of each analyst's cumulative
// epsilon spend over time, with its budget as a dashed line, a summary table
// and the audit entries. Entries may come from any Store.Entries call.
func WriteHTMLReport(w io.Writer, entries []Entry) error {
	es := append([]Entry(nil), entries...)
	sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
	data := htmlData{
		Generated: "",
		Chart:     template.HTML(spendChart(es)),
		Entries:   es,
	}
	if len(es) > 0 {
		data.Generated = fmt.Sprintf("%d entries from %s to %s", len(es),
			es[0].Time.UTC().Format(time.RFC3339), es[len(es)-1].Time.UTC().Format(time.RFC3339))
	}
	last := map[string]Entry{}
	for _, e := range es {
		last[e.Analyst] = e
	}
	for _, a := range sortedKeys(last) {
		e := last[a]
		data.Summary = append(data.Summary, Balance{
			Analyst: a, SpentEpsilon: e.SpentEpsilon, SpentDelta: e.SpentDelta, Budget: e.Budget, Queries: e.Queries,
		})
	}
	return htmlReport.Execute(w, data)
}

type htmlData struct {
	Generated string
	Chart     template.HTML
	Summary   []Balance
	Entries   []Entry
}

// printable quotes a name holding control characters or tabs so it cannot
// garble a terminal table.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func sortedKeys(m map[string]Entry) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

// spendChart draws cumulative epsilon per analyst as step lines. All text is
// escaped here because the result is inserted as trusted HTML.
func spendChart(es []Entry) string {
	const (
		width, height          = 800.0, 360.0
		left, right, top, bott = 60.0, 170.0, 20.0, 40.0
	)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="cumulative epsilon spent per analyst">`, width, height, width, height)
	if len(es) == 0 {
		sb.WriteString(`<text x="20" y="40">no entries</text></svg>`)
		return sb.String()
	}
	t0, t1 := es[0].Time, es[len(es)-1].Time
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	ymax := 0.0
	series := map[string][]Entry{}
	for _, e := range es {
		series[e.Analyst] = append(series[e.Analyst], e)
		ymax = max(ymax, e.SpentEpsilon, e.Budget.Epsilon)
	}
	if ymax <= 0 {
		ymax = 1
	}
	ymax *= 1.05
	pw, ph := width-left-right, height-top-bott
	x := func(t time.Time) float64 { return left + pw*t.Sub(t0).Seconds()/span }
	y := func(v float64) float64 { return top + ph*(1-v/ymax) }

	// Axes, gridlines and labels.
	fmt.Fprintf(&sb, `<g class="axes" stroke="#444" stroke-width="1"><line x1="%g" y1="%g" x2="%g" y2="%g"/><line x1="%g" y1="%g" x2="%g" y2="%g"/></g>`,
		left, top, left, top+ph, left, top+ph, left+pw, top+ph)
	for i := 0; i <= 4; i++ {
		v := ymax / 1.05 * float64(i) / 4
		fmt.Fprintf(&sb, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#ddd"/><text x="%g" y="%.1f" text-anchor="end" font-size="11">%s</text>`,
			left, y(v), left+pw, y(v), left-6, y(v)+4, strconv.FormatFloat(v, 'g', 3, 64))
	}
	fmt.Fprintf(&sb, `<text x="%g" y="%g" font-size="11">%s</text><text x="%g" y="%g" font-size="11" text-anchor="end">%s</text>`,
		left, height-12, html.EscapeString(t0.UTC().Format("2006-01-02 15:04")),
		left+pw, height-12, html.EscapeString(t1.UTC().Format("2006-01-02 15:04")))
	fmt.Fprintf(&sb, `<text x="14" y="%g" font-size="12" transform="rotate(-90 14 %g)" text-anchor="middle">cumulative ε</text>`, top+ph/2, top+ph/2)

	names := make([]string, 0, len(series))
	for a := range series {
		names = append(names, a)
	}
	sort.Strings(names)
	for i, a := range names {
		color := chartColors[i%len(chartColors)]
		pts := []string{fmt.Sprintf("%.1f,%.1f", left, y(0))}
		prev := 0.0
		for _, e := range series[a] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(e.Time), y(prev)), fmt.Sprintf("%.1f,%.1f", x(e.Time), y(e.SpentEpsilon)))
			prev = e.SpentEpsilon
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+pw, y(prev)))
		name := html.EscapeString(a)
		fmt.Fprintf(&sb, `<g class="series" data-analyst="%s"><title>%s</title><polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
			name, name, color, strings.Join(pts, " "))
		if b := series[a][len(series[a])-1].Budget.Epsilon; b > 0 {
			fmt.Fprintf(&sb, `<line class="budget" x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="%s" stroke-dasharray="6 4"/>`,
				left, y(b), left+pw, y(b), color)
		}
		ly := top + 14 + 18*float64(i)
		fmt.Fprintf(&sb, `<rect x="%g" y="%g" width="12" height="12" fill="%s"/><text x="%g" y="%g" font-size="12">%s (ε %s)</text></g>`,
			left+pw+14, ly-10, color, left+pw+30, ly, name, strconv.FormatFloat(prev, 'g', 6, 64))
	}
	sb.WriteString(`</svg>`)
	return sb.String()
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"g":    func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"join": func(s []string) string { return strings.Join(s, ", ") },
	// answers: an entry with repeats records them and its own.
	"answers": func(rs []Repeat) int { return 1 + len(rs) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dpproxy privacy budget report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.sql { font-family: ui-monospace, monospace; white-space: pre-wrap; max-width: 40em; }
.chart { border: 1px solid #eee; }
</style>
</head>
<body>
<h1>Privacy budget report</h1>
<p>{{.Generated}}</p>
<h2>Cumulative ε per analyst</h2>
{{.Chart}}
<h2>Analysts</h2>
<table>
<tr><th>analyst</th><th>spent ε</th><th>budget ε</th><th>remaining ε</th><th>spent δ</th><th>budget δ</th><th>queries</th></tr>
{{range .Summary}}<tr><td>{{.Analyst}}</td><td class="n">{{g .SpentEpsilon}}</td><td class="n">{{g .Budget.Epsilon}}</td><td class="n">{{g .RemainingEpsilon}}</td><td class="n">{{g .SpentDelta}}</td><td class="n">{{g .Budget.Delta}}</td><td class="n">{{.Queries}}</td></tr>
{{end}}</table>
<h2>Audit entries</h2>
<table>
<tr><th>time (UTC)</th><th>analyst</th><th>ε</th><th>δ</th><th>cache hit</th><th>statement</th><th>tables</th><th>mechanisms</th><th>policy</th><th>hash</th></tr>
{{range .Entries}}<tr><td>{{time .Time}}</td><td>{{.Analyst}}</td><td class="n">{{g .Epsilon}}</td><td class="n">{{g .Delta}}</td><td>{{if .CacheHit}}yes{{with .Repeats}} ×{{answers .}}{{end}}{{end}}</td><td class="sql">{{.Statement}}</td><td>{{join .Tables}}</td><td>{{.Mechanisms}}</td><td>{{.PolicyVersion}}</td><td title="{{.Hash}}">{{short .Hash}}</td></tr>
{{end}}</table>
</body>
</html>
`))
