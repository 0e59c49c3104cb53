package rewrite

import (
	"os"
	"testing"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

func demoPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile("../demo/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("demo/policy.yaml", data, policy.Env{
		Getenv:   func(string) string { return "host=127.0.0.1 dbname=demo" },
		ReadFile: os.ReadFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClassifyKinds(t *testing.T) {
	pol := demoPolicy(t)
	tests := []struct {
		sql  string
		kind Kind
	}{
		{"", KindEmpty},
		{"SELECT 1", KindPassthrough},
		{"select version()", KindPassthrough},
		{"SET extra_float_digits = 3", KindSession},
		{"SHOW dp.epsilon", KindSession},
		{"BEGIN", KindSession},
		{"COMMIT", KindSession},
		{"SELECT count(*) FROM patients WHERE age > 40", KindDP},
		{`SELECT avg("age") AS a, sum(income) FROM public.patients p WHERE p.sex = 'F' AND diagnosis IN ('flu', 'covid')`, KindDP},
	}
	for _, tt := range tests {
		sts, err := Classify(tt.sql, pol)
		if err != nil {
			t.Errorf("%q: %v", tt.sql, err)
			continue
		}
		if len(sts) != 1 || sts[0].Kind != tt.kind {
			t.Errorf("%q: got %+v, want kind %d", tt.sql, sts[0], tt.kind)
		}
	}
}

func TestClassifyRefusals(t *testing.T) {
	pol := demoPolicy(t)
	tests := []struct {
		sql string
		id  string
	}{
		{"SELECT * FROM patients", "DP001"},
		{"SELECT age FROM patients", "DP001"},
		{"SELECT patient_id FROM patients", "DP015"},
		{"SELECT count(*) FROM patients WHERE patient_id = 7", "DP015"},
		{"DELETE FROM patients", "DP002"},
		{"INSERT INTO patients VALUES (1)", "DP002"},
		{"DROP TABLE patients", "DP002"},
		{"COPY patients TO STDOUT", "DP002"},
		{"SELECT count(*) FROM secrets", "DP004"},
		{"SELECT count(*) FROM patients WHERE nosuch = 1", "DP005"},
		{"SELECT sum(zip) FROM patients", "DP003"},
		{"SELECT max(age) FROM patients", "DP003"},
		{"SELECT pg_sleep(1)", "DP012"},
		{"SELECT count(*) FROM patients WHERE age / 1e13 > 1", "DP003"},
		{"SELECT count(*) FROM patients WHERE income * 1e13 > 1", "DP003"},
		{"SELECT count(*) FROM patients WHERE zip::int > 1", "DP003"},
		{"SELECT count(*) FROM patients WHERE zip ~ 'a+'", "DP012"},
		{"SELECT count(*) FROM patients WHERE age IN (SELECT 1)", "DP003"},
		{"SELECT count(*) FROM pg_stats", "DP014"},
		{"EXPLAIN ANALYZE SELECT count(*) FROM patients", "DP014"},
		{"EXPLAIN SELECT 1", "DP014"},
		{"SELEC 1", "DP009"},
		{"SELECT zip FROM patients GROUP BY zip", "DP001"},
	}
	for _, tt := range tests {
		_, err := Classify(tt.sql, pol)
		pe := pgerror.As(err)
		if err == nil || pe.ID != tt.id {
			t.Errorf("%q: got %v (id %q), want %s", tt.sql, err, pe.ID, tt.id)
			continue
		}
		if pe.Hint == "" && tt.id != "DP011" {
			t.Errorf("%q: refusal without a hint", tt.sql)
		}
	}
}

func TestPlanAvg(t *testing.T) {
	pol := demoPolicy(t)
	sts, err := Classify("SELECT count(*), avg(age) FROM patients WHERE sex = 'F'", pol)
	if err != nil {
		t.Fatal(err)
	}
	p := sts[0].Plan
	t.Log(p.SQL)
	if len(p.Quantities) != 3 || len(p.Outputs) != 2 {
		t.Fatalf("plan = %+v", p)
	}
	if q := p.Quantities[1]; q.L1Sensitivity != 50 {
		t.Errorf("centred sum sensitivity = %v, want 50", q.L1Sensitivity)
	}
	// The SQL sums the clamped ages (skipping NULL, as count(age) does: the
	// clamp would make it lo); the answer centres the sum exactly.
	if c := p.Quantities[1].Centre; c == nil || c.Mid != "50" || c.Count != 2 {
		t.Errorf("centred sum's centring = %+v, want 50 × q2", c)
	}
	want := `SELECT count(*) AS q0, sum(LEAST(GREATEST(age, 0), 100)) FILTER (WHERE age IS NOT NULL) AS q1, count(age) AS q2 FROM "public"."patients" AS "patients" WHERE (sex = 'F')`
	if p.SQL != want {
		t.Errorf("SQL =\n%s\nwant\n%s", p.SQL, want)
	}
}

func TestNestingLimitBeforeParser(t *testing.T) {
	pol := demoPolicy(t)
	deep := "SELECT " + repeat("(", 5000) + "1" + repeat(")", 5000)
	_, err := Classify(deep, pol)
	if pgerror.As(err).ID != "DP010" {
		t.Fatalf("got %v, want DP010", err)
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}
