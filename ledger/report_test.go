package ledger

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

var reportBalances = []Balance{
	{Analyst: "zoe", SpentEpsilon: 0.5, Budget: Budget{Epsilon: 1, Delta: 1e-6}, SpentDelta: 1e-7, Queries: 3},
	{Analyst: "amy, \"the\" analyst", SpentEpsilon: 1, Budget: Budget{Epsilon: 1}, Queries: 10},
}

func TestWriteReport(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(t *testing.T, out []byte)
	}{
		{FormatCSV, func(t *testing.T, out []byte) {
			recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 3 || recs[0][0] != "analyst" || recs[1][0] != "amy, \"the\" analyst" || recs[2][3] != "0.5" || recs[2][6] != "9e-07" {
				t.Fatalf("csv %q", recs)
			}
		}},
		{FormatJSON, func(t *testing.T, out []byte) {
			var rows []map[string]any
			if err := json.Unmarshal(out, &rows); err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || rows[1]["analyst"] != "zoe" || rows[1]["remaining_epsilon"] != 0.5 || rows[0]["queries"] != 10.0 {
				t.Fatalf("json %v", rows)
			}
		}},
		{FormatTable, func(t *testing.T, out []byte) {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 3 || !strings.Contains(lines[0], "REMAINING_EPSILON") || !strings.Contains(lines[2], "zoe") {
				t.Fatalf("table:\n%s", out)
			}
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteReport(&buf, reportBalances, tc.format); err != nil {
				t.Fatal(err)
			}
			tc.check(t, buf.Bytes())
		})
	}
	if err := WriteReport(&bytes.Buffer{}, nil, "xml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestWriteHTMLReport(t *testing.T) {
	var es []Entry
	spent := map[string]float64{}
	for i, a := range []string{"alice", "<script>bob</script>", "alice", "alice"} {
		spent[a] += 0.25
		es = append(es, Entry{
			Seq: uint64(i + 1), Analyst: a, Time: t0.Add(time.Duration(i) * time.Hour), Epsilon: 0.25,
			SpentEpsilon: spent[a], Budget: Budget{Epsilon: 1}, Statement: "SELECT 1 < 2 & <b>",
			Hash: strings.Repeat("ab", 32), Tables: []string{"t"},
		})
	}
	var buf bytes.Buffer
	if err := WriteHTMLReport(&buf, es); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"<svg", "<polyline", `class="budget"`, `data-analyst="alice"`, "&lt;script&gt;bob", "SELECT 1 &lt; 2 &amp; &lt;b&gt;"} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "<link"} {
		if strings.Contains(out, bad) {
			t.Errorf("HTML contains %q (must be self-contained and escaped)", bad)
		}
	}
	// The chart must be well-formed XML: two series, each a polyline.
	start, end := strings.Index(out, "<svg"), strings.Index(out, "</svg>")
	var svg struct {
		Groups []struct {
			Analyst  string `xml:"data-analyst,attr"`
			Polyline []struct {
				Points string `xml:"points,attr"`
			} `xml:"polyline"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal([]byte(out[start:end+len("</svg>")]), &svg); err != nil {
		t.Fatalf("svg does not parse: %v", err)
	}
	series := 0
	for _, g := range svg.Groups {
		if len(g.Polyline) == 1 {
			series++
			if g.Analyst == "alice" && len(strings.Fields(g.Polyline[0].Points)) != 2+2*3 {
				t.Errorf("alice's line has points %q", g.Polyline[0].Points)
			}
		}
	}
	if series != 2 {
		t.Fatalf("%d series in the chart, want 2", series)
	}
	buf.Reset()
	if err := WriteHTMLReport(&buf, nil); err != nil || !strings.Contains(buf.String(), "no entries") {
		t.Fatalf("empty report: %v", err)
	}
}

// TestWriteHTMLReportRepeats: an entry recording repeated cache hits shows
// how many answers it records.
func TestWriteHTMLReportRepeats(t *testing.T) {
	es := []Entry{{Seq: 1, Analyst: "alice", Time: t0, CacheHit: true, Budget: Budget{Epsilon: 1},
		Statement: "SELECT 1", Repeats: []Repeat{{ID: "r1", Time: t0}, {ID: "r2", Time: t0}}}}
	var buf bytes.Buffer
	if err := WriteHTMLReport(&buf, es); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "<td>yes ×3</td>") {
		t.Errorf("the entry's cache-hit cell does not read \"yes ×3\":\n%s", buf.String())
	}
}
