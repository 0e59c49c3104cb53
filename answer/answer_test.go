package answer

import (
	"math/big"
	"os"
	"strconv"
	"testing"

	"github.com/dpproxy/dpproxy/mechanisms"
	"github.com/dpproxy/dpproxy/policy"
	"github.com/dpproxy/dpproxy/rewrite"
)

func testPlan(t *testing.T, sql string) *rewrite.Plan {
	t.Helper()
	data, err := os.ReadFile("../rewrite/testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse("policy.yaml", data, policy.Env{Getenv: func(string) string { return "host=x" }, ReadFile: os.ReadFile})
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := rewrite.Classify(sql, pol)
	if err != nil {
		t.Fatal(err)
	}
	return stmts[0].Plan
}

func str(s string) *string { return &s }

// With ε large enough the noise is almost always zero at granularity 1, so
// post-processing can be checked exactly; a huge ε makes the discrete
// Laplace's P(noise != 0) below 1e-40.
const hugeEpsilon = 1000

func TestComputePostProcessing(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		rows []Row
		want [][]string
	}{
		{"empty result of an ungrouped count is a zero count",
			"SELECT count(*) FROM patients", nil, [][]string{{"0"}}},
		{"public domain answers empty groups in domain order",
			"SELECT sex, count(*) FROM patients GROUP BY sex",
			[]Row{{Keys: []*string{str("M")}, Q: []float64{7}}},
			[][]string{{"F", "0"}, {"M", "7"}}},
		{"order by noisy count desc with limit",
			"SELECT diagnosis, count(*) FROM patients GROUP BY 1 ORDER BY 2 DESC LIMIT 2",
			[]Row{{Keys: []*string{str("flu")}, Q: []float64{30}}, {Keys: []*string{str("covid")}, Q: []float64{50}}, {Keys: []*string{str("none")}, Q: []float64{40}}},
			[][]string{{"covid", "50"}, {"none", "40"}}},
		{"having filters after noise",
			"SELECT sex, count(*) FROM patients GROUP BY sex HAVING count(*) > 5",
			[]Row{{Keys: []*string{str("M")}, Q: []float64{7}}, {Keys: []*string{str("F")}, Q: []float64{3}}},
			[][]string{{"M", "7"}}},
		{"integer division truncates like Postgres",
			"SELECT count(*) / 2 FROM patients", []Row{{Q: []float64{7}}}, [][]string{{"3"}}},
		{"numeric division keeps decimals",
			"SELECT count(*) / 2.0 AS half FROM patients", []Row{{Q: []float64{7}}}, [][]string{{"3.50000"}}},
		{"avg is the midpoint plus the centred sum over the count",
			"SELECT avg(age) FROM patients", []Row{{Q: []float64{-40, 4}}}, [][]string{{"40.00"}}},
		{"avg of no rows is NULL",
			"SELECT avg(age) FROM patients", []Row{{Q: []float64{0, 0}}}, [][]string{{""}}},
		{"round with digits",
			"SELECT round(avg(age), 1) FROM patients", []Row{{Q: []float64{-41, 3}}}, [][]string{{"36.3"}}},
		{"constants pass through",
			"SELECT 'x' AS label, count(*) FROM patients", []Row{{Q: []float64{2}}}, [][]string{{"x", "2"}}},
		{"offset skips rows",
			"SELECT sex, count(*) FROM patients GROUP BY sex ORDER BY sex OFFSET 1", nil, [][]string{{"M", "0"}}},
		{"division by a zero count is NULL, not an error",
			"SELECT sum(age) / count(*) FROM patients", []Row{{Q: []float64{0, 0}}}, [][]string{{""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := testPlan(t, tt.sql)
			mech, err := Calibrate(plan, hugeEpsilon, 0)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Compute(plan, mech, tt.rows, mechanisms.NewSeededSourceForTest(1))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) != len(tt.want) {
				t.Fatalf("rows %v, want %v", res.Rows, tt.want)
			}
			for i := range tt.want {
				for j := range tt.want[i] {
					got := res.Rows[i][j]
					if res.Nulls[i][j] {
						got = ""
					}
					if got != tt.want[i][j] {
						t.Errorf("row %d col %d = %q, want %q (rows %v)", i, j, got, tt.want[i][j], res.Rows)
					}
				}
			}
		})
	}
}

// TestPartitionSelectionDropsSmallGroups: a group with one privacy unit is
// released with probability at most delta; one with thousands always is.
func TestPartitionSelectionDropsSmallGroups(t *testing.T) {
	plan := testPlan(t, "SELECT zip, count(*) FROM patients GROUP BY zip")
	mech, err := Calibrate(plan, 1, 1e-9)
	if err != nil {
		t.Fatal(err)
	}
	src := mechanisms.NewSeededSourceForTest(2)
	released := 0
	for range 500 {
		res, err := Compute(plan, mech, []Row{
			{Keys: []*string{str("10001")}, Q: []float64{1, 1}},
			{Keys: []*string{str("10002")}, Q: []float64{5000, 5000}},
		}, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Rows {
			if r[0] == "10001" {
				released++
			}
		}
		if len(res.Rows) == 0 || res.Rows[len(res.Rows)-1][0] != "10002" {
			t.Fatalf("large group not released: %v", res.Rows)
		}
	}
	// Seeded, so deterministic; with a fresh source a correct mechanism
	// would fail this with probability <= 500 * 1e-9 = 5e-7.
	if released > 0 {
		t.Errorf("a single-unit group was released %d times in 500", released)
	}
}

func TestEpsilonForTarget(t *testing.T) {
	plan := testPlan(t, "SELECT count(*), sum(age) FROM patients")
	eps, err := EpsilonForTarget(plan, 1000, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Calibrate(plan, eps, 0)
	if err != nil {
		t.Fatal(err)
	}
	// sum(age) (sensitivity 100, half of ε) is the binding constraint.
	if hw := m.laplace[1].HalfWidth(0.95); hw > 1000 {
		t.Errorf("at epsilon %v the sum's half-width is %v > 1000", eps, hw)
	}
	m2, _ := Calibrate(plan, eps*0.98, 0)
	if hw := m2.laplace[1].HalfWidth(0.95); hw <= 1000 {
		t.Errorf("epsilon %v is not the smallest: 2%% less still gives %v", eps, hw)
	}
	if _, err := EpsilonForTarget(plan, 0.01, 0, 1); err == nil {
		t.Error("an unreachable target was accepted")
	}
}

// TestExactSumsOnTheGrid: two sums one sensitivity apart must be released
// at most one sensitivity apart when the noise is (almost surely) zero.
// PostgreSQL's numeric sums are decimals; rounded to float64 before the
// grid, a sum just below a tie point could become the tie and round up
// while its neighbour rounded down, one grid step more than the
// sensitivity (a red team's 0.4999999999999999 and 1.4999999999999999).
func TestExactSumsOnTheGrid(t *testing.T) {
	plan := testPlan(t, "SELECT sum(cost) FROM visits") // sensitivity 25000, granularity 0.01
	mech, err := Calibrate(plan, 1e12, 0)
	if err != nil {
		t.Fatal(err)
	}
	parser := NewRowParser(plan)
	release := func(sum string) float64 {
		t.Helper()
		r, err := parser.Parse([][]byte{[]byte(sum)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Compute(plan, mech, []Row{r}, mechanisms.NewSeededSourceForTest(3))
		if err != nil {
			t.Fatal(err)
		}
		f, err := strconv.ParseFloat(res.Rows[0][0], 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, base := range []string{"0.004999999999999999", "0.014999999999999999", "12.344999999999999999", "0.0049999999999999999999999"} {
		lo, _ := new(big.Rat).SetString(base)
		hi := new(big.Rat).Add(lo, big.NewRat(25000, 1))
		a, b := release(base), release(hi.FloatString(30))
		if d := b - a; d > 25000+1e-6 {
			t.Errorf("sums %s and %s, 25000 apart, released %v and %v: %v apart", base, hi.FloatString(30), a, b, d)
		}
	}
}
