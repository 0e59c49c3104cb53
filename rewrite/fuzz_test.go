package rewrite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzClassify: for any input, Classify either refuses or returns statements
// whose DP plans pass the verifier again from their SQL text alone: one
// SELECT over the declared table releasing only counts and clamped sums,
// with per-unit bounding for privacy-unit tables. It must never panic.
func FuzzClassify(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.test")
	for _, path := range files {
		_, cases := readGoldenFile(path)
		for _, c := range cases {
			f.Add(c.sql)
		}
	}
	pol := goldenPolicy(f)
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := Classify(sql, pol)
		if err != nil {
			// A refusal is fine; the verifier rejecting what the planner
			// emitted is a bug in one of them.
			if strings.Contains(err.Error(), "failed verification") {
				t.Fatalf("%q: %v", sql, err)
			}
			return
		}
		for _, st := range stmts {
			if st.Kind != KindDP {
				continue
			}
			p := st.Plan
			schema, name, _ := strings.Cut(p.Tables[0], ".")
			sc := p.sc
			if pol.Table(schema, name) != sc.table || !sc.table.IsPrivate() {
				t.Fatalf("plan reads %v, not its private table", p.Tables)
			}
			for _, r := range sc.public {
				if r.table.IsPrivate() && (r.table.Privacy != "unit" || sc.table.Privacy != "unit") {
					t.Fatalf("plan joins private table %s without a shared privacy unit", r.table.QualifiedName())
				}
			}
			if err := verifyRewritten(p.SQL, sc, p); err != nil {
				t.Fatalf("%q: rewritten SQL fails verification: %v\n%s", sql, err, p.SQL)
			}
			w := 0.0
			for _, q := range p.Quantities {
				if !(q.L1Sensitivity > 0) || !(q.Weight > 0) {
					t.Fatalf("%q: quantity %+v without sensitivity or weight", sql, q)
				}
				w += q.Weight
			}
			if w < 0.999999 || w > 1.000001 {
				t.Fatalf("%q: weights sum to %v", sql, w)
			}
			for _, o := range p.Outputs {
				checkExprIndexes(t, p, o.Expr)
			}
		}
	})
}

func checkExprIndexes(t *testing.T, p *Plan, e *Expr) {
	switch e.Kind {
	case ExprAgg:
		if e.Index >= len(p.Aggs) {
			t.Fatalf("aggregate index %d out of range", e.Index)
		}
	case ExprKey:
		if e.Index >= len(p.Keys) {
			t.Fatalf("key index %d out of range", e.Index)
		}
	}
	for _, a := range e.Args {
		checkExprIndexes(t, p, a)
	}
}

func readGoldenFile(path string) (string, []goldenCase) {
	t := &testing.T{}
	if _, err := os.Stat(path); err != nil {
		return "", nil
	}
	return readGolden(t, path)
}
