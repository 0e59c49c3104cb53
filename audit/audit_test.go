package audit

import (
	"math"
	"testing"

	"github.com/dpproxy/dpproxy/mechanisms"
)

func TestClopperPearson(t *testing.T) {
	// Known values: k=0, n=10, 95%: [0, 0.3085]; k=5, n=10: [0.1871, 0.8129].
	lo, hi := ClopperPearson(0, 10, 0.05)
	if lo != 0 || math.Abs(hi-0.3085) > 1e-3 {
		t.Fatalf("CP(0,10) = [%g, %g]", lo, hi)
	}
	lo, hi = ClopperPearson(5, 10, 0.05)
	if math.Abs(lo-0.1871) > 1e-3 || math.Abs(hi-0.8129) > 1e-3 {
		t.Fatalf("CP(5,10) = [%g, %g]", lo, hi)
	}
}

// laplaceSamples draws n outputs of a discrete Laplace mechanism calibrated
// at calEps for sensitivity 1 on value v.
func laplaceSamples(t *testing.T, src mechanisms.Source, calEps float64, v float64, n int) []float64 {
	t.Helper()
	l, err := mechanisms.NewLaplace(mechanisms.LaplaceOptions{Epsilon: calEps, L1Sensitivity: 1})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = l.AddNoise(src, v)
	}
	return out
}

// TestLowerBoundLaplace: the bound on a correct ε=1 mechanism stays below
// 1, and the bound on one calibrated at 2 but "charged" 1 exceeds 1.
func TestLowerBoundLaplace(t *testing.T) {
	src := mechanisms.NewSeededSourceForTest(7)
	const n = 20000
	good, err := LowerBound(laplaceSamples(t, src, 1, 100, n), laplaceSamples(t, src, 1, 101, n), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if good.Epsilon > 1 || good.Epsilon < 0.5 {
		t.Fatalf("correct mechanism: %v, want a bound in [0.5, 1]", good)
	}
	bad, err := LowerBound(laplaceSamples(t, src, 2, 100, n), laplaceSamples(t, src, 2, 101, n), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Epsilon <= 1 {
		t.Fatalf("half-noise mechanism: %v, want a bound above the charged 1", bad)
	}
	// Identical distributions show nothing.
	none, _ := LowerBound(laplaceSamples(t, src, 1, 5, n), laplaceSamples(t, src, 1, 5, n), Options{})
	if none.Epsilon > 0.1 {
		t.Fatalf("identical inputs: %v", none)
	}
	t.Logf("correct: %v; broken: %v; identical: %v", good, bad, none)
}

func TestLowerBoundRejectsBadInput(t *testing.T) {
	if _, err := LowerBound([]float64{1}, []float64{2}, Options{}); err == nil {
		t.Fatal("tiny samples accepted")
	}
	if _, err := LowerBound(make([]float64, 50), make([]float64, 50), Options{Alpha: 2}); err == nil {
		t.Fatal("alpha 2 accepted")
	}
}
