package policy

import (
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader. Properties: it never
// panics; it returns either a policy or at least one error, never both; every
// problem has a position inside the file; a policy's lookups agree with its
// lists. Seeds: testdata/fuzz/FuzzParse plus the policies of the tests.
func FuzzParse(f *testing.F) {
	f.Add([]byte(basePolicy))
	f.Add([]byte(fullPolicy))
	if demo, err := os.ReadFile("../demo/policy.yaml"); err == nil {
		f.Add(demo)
	}
	for _, tc := range brokenCases {
		if tc.text != "" {
			f.Add([]byte(tc.text))
		}
	}
	env := Env{Getenv: testEnv.Getenv, ReadFile: testEnv.ReadFile}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, errs, warns := Check("f.yaml", data, env)
		if (p == nil) == (len(errs) == 0) {
			t.Fatalf("policy %v with errors %v", p != nil, errs)
		}
		lines := 1
		for _, b := range data {
			if b == '\n' || b == '\r' { // YAML breaks lines at CR too
				lines++
			}
		}
		for _, pr := range append(errs, warns...) {
			if pr.Line < 1 || pr.Column < 1 || pr.Line > lines+1 || pr.Message == "" {
				t.Fatalf("bad problem position or message: %+v (file has at most %d lines)", pr, lines)
			}
		}
		if p == nil {
			return
		}
		for _, a := range p.Analysts {
			if p.Analyst(a.Name) == nil || !(a.Budget.Epsilon > 0) {
				t.Fatalf("analyst %+v", a)
			}
		}
		for _, tb := range p.Tables {
			if p.Table(tb.Schema, tb.Name) == nil {
				t.Fatalf("table %s not found", tb.QualifiedName())
			}
			for _, c := range tb.Columns {
				if tb.Column(c.Name) == nil || c.Type == "" {
					t.Fatalf("column %+v", c)
				}
			}
			if tb.Privacy == PrivacyUnit && (tb.Column(tb.Unit) == nil || tb.MaxRowsPerUnit < 1) {
				t.Fatalf("unit table %+v", tb)
			}
		}
	})
}
