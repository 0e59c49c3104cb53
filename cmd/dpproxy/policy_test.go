package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpproxy/dpproxy/policy"
)

func TestPolicyCheckDemo(t *testing.T) {
	t.Setenv("DPPROXY_UPSTREAM_DSN", "host=db dbname=demo")
	var out, errOut bytes.Buffer
	if err := cmdPolicyCheck([]string{"--strict", "../../demo/policy.yaml"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"is valid (version ", "0 errors, 0 warnings",
		"bob          budget epsilon 2 lifetime; per query epsilon <= 0.5",
		"public.visits: private, all rows with one patient_id are one person; at most 10 rows and 3 groups per person count",
		"hidden (never usable): patient_id",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPolicyCheckBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nlisten: nowhere\nanalysts: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := cmdPolicyCheck([]string{path}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "is invalid: 4 errors, 1 warning") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(errOut.String(), path+`:2:9: listen must be host:port such as 127.0.0.1:6432, not "nowhere"`) {
		t.Errorf("stderr:\n%s", errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("summary printed for an invalid policy:\n%s", out.String())
	}
}

// TestDraftFromSchema checks policy init's heuristics on a schema like the
// demo's, without a database: the draft fails check only on its TODO bounds.
func TestDraftFromSchema(t *testing.T) {
	patients := &dbTable{oid: 1, schema: "public", name: "patients", kind: "r", pk: []string{"patient_id"},
		columns: []*dbColumn{{num: 1, name: "patient_id", pgType: "integer"}, {num: 2, name: "age", pgType: "integer"},
			{num: 3, name: "mood", pgType: "mood", labels: []string{"happy", "sad", "null"}}, {num: 4, name: "doc", pgType: "jsonb"}},
		checks:       []string{"CHECK ((age >= 0))"},
		referencedBy: []string{"public.visits.patient_id"}}
	departments := &dbTable{oid: 2, schema: "public", name: "departments", kind: "r", pk: []string{"name"},
		columns:      []*dbColumn{{num: 1, name: "name", pgType: "text"}},
		referencedBy: []string{"public.visits.department"}}
	visits := &dbTable{oid: 3, schema: "clinic", name: "visits", kind: "r", pk: []string{"visit_id"},
		columns: []*dbColumn{{num: 1, name: "visit_id", pgType: "bigint"}, {num: 2, name: "department", pgType: "text"},
			{num: 3, name: "patient_id", pgType: "integer"}, {num: 4, name: "cost", pgType: "numeric(10,2)"},
			{num: 5, name: "urgent", pgType: "boolean"}, {num: 6, name: "at", pgType: "timestamp(3) with time zone"}},
		fks: []dbFK{{column: "department", refTable: "public.departments", refCol: "name", refOID: 2},
			{column: "patient_id", refTable: "public.patients", refCol: "patient_id", refOID: 1}}}
	var b bytes.Buffer
	if err := writeDraft(&b, &dbSchema{tables: []*dbTable{departments, patients, visits}}, "database demo", "DSN"); err != nil {
		t.Fatal(err)
	}
	draft := b.String()
	for _, want := range []string{
		"    schema: clinic\n    # patient_id references public.patients(patient_id): all rows with one patient_id are one privacy unit.\n    # Other candidate: department references public.departments(name).\n    privacy: unit\n    unit: patient_id\n",
		"# Its text primary key, referenced by other tables, suggests a lookup table.",
		`{name: mood, type: text, domain: [happy, sad, "null"]}`,
		"# - {name: doc, type: jsonb}  # not supported",
		"{name: visit_id, type: bigint, hidden: true}",
		"{name: cost, type: numeric, bounds: TODO}",
		"{name: urgent, type: boolean, domain: [true, false]}",
		"{name: at, type: timestamptz}",
		"# CHECK constraints: CHECK ((age >= 0))",
	} {
		if !strings.Contains(draft, want) {
			t.Errorf("draft lacks %q", want)
		}
	}
	env := policy.Env{Getenv: func(string) string { return "host=db" }}
	_, errs, _ := policy.Check("draft.yaml", []byte(draft), env)
	for _, e := range errs {
		if !strings.Contains(e.Message, "still TODO") {
			t.Errorf("unexpected error in the draft: %v", e)
		}
	}
	if len(errs) != 2 {
		t.Errorf("want 2 TODO errors (age, cost), got %v", errs)
	}
	filled := strings.ReplaceAll(draft, "bounds: TODO", "bounds: [0, 100]")
	if _, errs, warns := policy.Check("draft.yaml", []byte(filled), env); len(errs)+len(warns) > 0 {
		t.Errorf("filled draft: %v %v\n%s", errs, warns, filled)
	}
}
