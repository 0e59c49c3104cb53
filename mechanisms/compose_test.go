package mechanisms

import (
	"math"
	"testing"
)

func TestComposeBasicParallel(t *testing.T) {
	costs := []ApproxDP{{0.5, 1e-6}, {1, 0}, {0.25, 1e-7}}
	b, err := ComposeBasic(costs...)
	if err != nil {
		t.Fatal(err)
	}
	if b.Epsilon < 1.75 || b.Epsilon > 1.75*(1+1e-11) || b.Delta < 1.1e-6 || b.Delta > 1.1e-6*(1+1e-11) {
		t.Errorf("basic = %+v", b)
	}
	p, _ := ComposeParallel(costs...)
	if p != (ApproxDP{1, 1e-6}) {
		t.Errorf("parallel = %+v", p)
	}
	if _, err := ComposeBasic(ApproxDP{-1, 0}); err == nil {
		t.Error("negative epsilon accepted")
	}
	if _, err := ComposeBasic(ApproxDP{1, 1}); err == nil {
		t.Error("delta 1 accepted")
	}
}

func TestComposeAdvanced(t *testing.T) {
	// Dwork & Roth 2014, Corollary 3.21's setting: k = 10000 steps of
	// eps = 0.01 with delta' = 1e-6: eps sqrt(2k ln(1/delta')) + k eps (e^eps - 1).
	got, err := ComposeAdvanced(ApproxDP{0.01, 0}, 10000, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.01*math.Sqrt(2*10000*math.Log(1e6)) + 10000*0.01*math.Expm1(0.01)
	if math.Abs(got.Epsilon-want) > 1e-9 || got.Delta < 1e-6 || got.Delta > 1e-6*(1+1e-11) {
		t.Errorf("advanced = %+v, want eps %v", got, want)
	}
	// Falls back to basic when that is better.
	got, _ = ComposeAdvanced(ApproxDP{1, 0}, 2, 1e-6)
	if got.Epsilon > 2*(1+1e-11) {
		t.Errorf("advanced worse than basic: %+v", got)
	}
}

func TestComposeOptimal(t *testing.T) {
	// k = 1: randomized response with eps is exactly (eps, 0)-DP, so for any
	// target delta the epsilon is below eps.
	got, err := ComposeOptimal(ApproxDP{1, 0}, 1, 1e-9)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epsilon > 1+1e-9 || got.Epsilon < 0.99 {
		t.Errorf("k=1: %+v", got)
	}
	// KOV15 Theorem 3.3 at i = 1: the k-fold composition of (eps, 0) is
	// ((k-2) eps, delta_1)-DP with delta_1 = (e^(k eps) - e^((k-2) eps))/(1+e^eps)^k.
	for _, c := range []struct {
		eps float64
		k   int
	}{{0.1, 10}, {0.5, 4}, {1, 3}} {
		kf := float64(c.k)
		d1 := (math.Exp(kf*c.eps) - math.Exp((kf-2)*c.eps)) / math.Pow(1+math.Exp(c.eps), kf)
		got, err := ComposeOptimal(ApproxDP{c.eps, 0}, c.k, d1)
		if err != nil {
			t.Fatal(err)
		}
		if want := (kf - 2) * c.eps; math.Abs(got.Epsilon-want) > 1e-6*want {
			t.Errorf("eps %v k %d: %v, want %v", c.eps, c.k, got.Epsilon, want)
		}
	}
	// Optimal is never worse than advanced composition.
	opt, _ := ComposeOptimal(ApproxDP{0.01, 0}, 10000, 1e-6)
	adv, _ := ComposeAdvanced(ApproxDP{0.01, 0}, 10000, 1e-6)
	if opt.Epsilon > adv.Epsilon {
		t.Errorf("optimal %v > advanced %v", opt.Epsilon, adv.Epsilon)
	}
	if _, err := ComposeOptimal(ApproxDP{1, 1e-3}, 10, 1e-3); err == nil {
		t.Error("target delta below 1-(1-delta)^k accepted")
	}
}

func TestZCDPEpsilon(t *testing.T) {
	for _, rho := range []float64{0.001, 0.1, 1, 10} {
		for _, delta := range []float64{1e-5, 1e-10} {
			eps, err := ZCDPEpsilon(rho, delta)
			if err != nil {
				t.Fatal(err)
			}
			bs := rho + 2*math.Sqrt(rho*math.Log(1/delta))
			if eps > bs*(1+1e-11) {
				t.Errorf("rho %v: %v above Bun-Steinke %v", rho, eps, bs)
			}
			// Never better than the grid of tracked orders allows by more
			// than the grid's coarseness, and never below it minus rounding.
			grid, _, _ := RDPZCDP(rho).Epsilon(delta)
			if eps > grid*(1+1e-9) {
				t.Errorf("rho %v: continuous-order %v above 13-order %v", rho, eps, grid)
			}
		}
	}
}

func TestGDP(t *testing.T) {
	// Dong, Roth & Su: a mu-GDP mechanism with mu = sens/sigma has the same
	// curve as Balle & Wang's analytic Gaussian.
	sigma, _ := AnalyticGaussianSigma(1, 1e-5, 1)
	eps, err := GDPEpsilon(1/sigma, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(eps-1) > 1e-6 {
		t.Errorf("GDP epsilon %v, want 1", eps)
	}
	if mu := ComposeGDP(0.3, 0.4); math.Abs(mu-0.5) > 1e-11 {
		t.Errorf("compose %v", mu)
	}
}
