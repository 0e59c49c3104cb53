package rewrite

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

func goldenPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("testdata/policy.yaml", data, policy.Env{Getenv: func(string) string { return "host=x" }, ReadFile: os.ReadFile})
	if err != nil {
		t.Fatal(err)
	}
	// As wire would after finding a unique index on members(member_id).
	return p.WithUniqueUnits(map[string]bool{"public.members": true}).WithProvenBounds(map[string][]string{
		// As wire would after reading these CHECK constraints (ProveBounds).
		"public.readings.value": {"((value >= 0) AND (value <= 1000))"},
		"public.readings.temp":  {"(temp >= ('-50'::integer)::double precision)", "(temp <= (60)::double precision)"},
		"public.uploads.bytes":  {"((bytes >= 0) AND (bytes <= 10000))"},
		// The shadow copy's, as `dpproxy shadow refresh` adds it: the shadow
		// queries of unit.test sum dose unclamped.
		"dpproxy_shadow.public__prescriptions.dose": {"((dose >= 0) AND (dose <= 1000))"},
		// And the source table's own: queries the copy cannot answer read
		// the source unclamped, those it can read the copy unclamped.
		"public.prescriptions.dose": {"(dose >= 0)", "(dose <= 1000)"},
	})
}

// goldenCase is one statement of a golden file:
//
//	statement
//	<sql, one or more lines>
//	----
//	<rendered result>
//	<blank line>
type goldenCase struct {
	sql, want string
}

func readGolden(t *testing.T, path string) (header string, cases []goldenCase) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var head []string
	state, cur := "head", goldenCase{}
	var sqlLines, wantLines []string
	flush := func() {
		if state == "want" {
			cur.sql = strings.Join(sqlLines, "\n")
			cur.want = strings.TrimRight(strings.Join(wantLines, "\n"), "\n")
			cases = append(cases, cur)
		}
		sqlLines, wantLines, cur = nil, nil, goldenCase{}
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "statement" && (state == "head" || state == "gap"):
			state = "sql"
		case state == "head":
			head = append(head, line)
		case state == "sql" && line == "----":
			state = "want"
		case state == "sql":
			sqlLines = append(sqlLines, line)
		case state == "want" && line == "":
			flush()
			state = "gap"
		case state == "want":
			wantLines = append(wantLines, line)
		}
	}
	flush()
	return strings.Join(head, "\n"), cases
}

func renderResult(sql string, pol *policy.Policy) string {
	stmts, err := Classify(sql, pol)
	if err != nil {
		pe := pgerror.As(err)
		s := fmt.Sprintf("refused %s %s: %s", pe.ID, pe.Code, pe.Message)
		if pe.Hint != "" {
			s += "\nhint: " + pe.Hint
		}
		return s
	}
	var b strings.Builder
	for i, st := range stmts {
		if i > 0 {
			b.WriteString("\n")
		}
		switch st.Kind {
		case KindEmpty:
			b.WriteString("empty")
		case KindSession:
			fmt.Fprintf(&b, "session %s name=%q value=%q", st.Session.Tag, st.Session.Name, st.Session.Value)
		case KindPassthrough:
			b.WriteString("passthrough")
			if st.SQL != strings.TrimSpace(sql) {
				b.WriteString("\nsql: " + st.SQL)
			}
		case KindDP:
			b.WriteString(RenderPlan(st.Plan))
		case KindExplain:
			b.WriteString("explain of " + RenderPlan(st.Plan))
		}
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	pol := goldenPolicy(t)
	files, _ := filepath.Glob("testdata/*.test")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	total := 0
	for _, path := range files {
		header, cases := readGolden(t, path)
		total += len(cases)
		var out strings.Builder
		if header != "" {
			out.WriteString(header + "\n")
		}
		for _, c := range cases {
			got := renderResult(c.sql, pol)
			if *update {
				fmt.Fprintf(&out, "statement\n%s\n----\n%s\n\n", c.sql, got)
				continue
			}
			if got != c.want {
				t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", filepath.Base(path), c.sql, got, c.want)
			}
		}
		if *update {
			if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d golden statements in %d files", total, len(files))
}
