package mechanisms

import (
	"fmt"
	"math"
	"testing"
)

// bruteDiscreteLaplaceRDP sums the pmf of Lap_Z(scale) directly.
func bruteDiscreteLaplaceRDP(scale float64, sens int64, a float64) float64 {
	pmf := discreteLaplacePMF(scale)
	var s float64
	r := int64(200*scale) + sens + 200
	for k := -r; k <= r; k++ {
		s += math.Pow(pmf(k), a) * math.Pow(pmf(k-sens), 1-a)
	}
	return math.Log(s) / (a - 1)
}

func TestRDPDiscreteLaplaceExact(t *testing.T) {
	for _, scale := range []float64{0.5, 1, 2, 3.7, 10} {
		for _, sens := range []int64{1, 2, 5} {
			got := RDPDiscreteLaplace(scale, float64(sens))
			for i, a := range RDPOrders {
				want := math.Min(bruteDiscreteLaplaceRDP(scale, sens, a), float64(sens)/scale)
				if math.IsInf(want, 0) || math.IsNaN(want) {
					continue // brute force overflowed at high order
				}
				if got[i] < want || got[i] > want*(1+1e-9)+1e-15 {
					t.Errorf("scale %v sens %d order %v: %v, brute force %v", scale, sens, a, got[i], want)
				}
			}
		}
	}
}

// TestRDPDiscreteLaplaceTrap pins the second calibration trap: the
// continuous Laplace curve (Mironov 2017, Prop. 6) under-counts the discrete
// Laplace, 0.619 against 0.735 at scale 1, sensitivity 1, order 2.
func TestRDPDiscreteLaplaceTrap(t *testing.T) {
	const order2 = 3 // RDPOrders[3] == 2
	if RDPOrders[order2] != 2 {
		t.Fatal("order index")
	}
	cont := RDPLaplace(1, 1)[order2]
	disc := RDPDiscreteLaplace(1, 1)[order2]
	if math.Abs(cont-0.6191) > 1e-4 || math.Abs(disc-0.7353) > 1e-4 {
		t.Fatalf("continuous %v (want 0.6191), discrete %v (want 0.7353)", cont, disc)
	}
	// Closed form of the discrete curve at order 2: log((e + e^-2)/(1 + e^-1)).
	if want := math.Log((math.E + math.Exp(-2)) / (1 + math.Exp(-1))); math.Abs(disc-want) > 1e-12 {
		t.Fatalf("discrete %v, closed form %v", disc, want)
	}
	// The mechanism reports the discrete curve at its exact (rounded-up)
	// scale, which is within 2^-20 of 1.
	m, _ := NewLaplace(LaplaceOptions{Epsilon: 1, L1Sensitivity: 1})
	if got := m.RDP()[order2]; got < RDPDiscreteLaplace(m.scaleGrid, 1)[order2] || got < disc*(1-1e-5) {
		t.Fatalf("Laplace.RDP() = %v, want about %v", got, disc)
	}
}

func TestRDPClosedForms(t *testing.T) {
	// Gaussian: alpha * sens^2 / (2 sigma^2) (Mironov 2017, Prop. 7).
	g := RDPGaussian(2, 1)
	for i, a := range RDPOrders {
		if want := a / 8; g[i] < want || g[i] > want*(1+3e-12) {
			t.Errorf("gaussian order %v: %v want %v", a, g[i], want)
		}
	}
	// Continuous Laplace at order 2, lambda = 1: log(2/3 e + 1/3 e^-2).
	if got, want := RDPLaplace(1, 1)[3], math.Log(2.0/3*math.E+math.Exp(-2)/3); math.Abs(got-want) > 1e-12 {
		t.Errorf("laplace order 2: %v want %v", got, want)
	}
	// Pure DP: never above eps nor alpha eps^2 / 2 (Bun & Steinke 2016, Prop. 3.3).
	for _, eps := range []float64{0.01, 0.1, 1, 5} {
		v := RDPPureDP(eps)
		for i, a := range RDPOrders {
			if v[i] > eps*(1+1e-11) || v[i] > a*eps*eps/2*(1+1e-11) {
				t.Errorf("pure eps %v order %v: %v", eps, a, v[i])
			}
		}
	}
	// A discrete Laplace with epsilon = sens/scale is eps-DP, so its exact
	// curve lies under the pure-DP curve.
	for _, scale := range []float64{0.5, 1, 4} {
		d, p := RDPDiscreteLaplace(scale, 1), RDPPureDP(1/scale)
		for i := range d {
			if d[i] > p[i]*(1+1e-9) {
				t.Errorf("scale %v order %v: discrete laplace %v above pure-DP bound %v", scale, RDPOrders[i], d[i], p[i])
			}
		}
	}
}

func TestRDPConversion(t *testing.T) {
	// Against the formula at each order, Mironov's weaker conversion, and
	// Bun & Steinke's zCDP bound eps = rho + 2 sqrt(rho log(1/delta)).
	for _, rho := range []float64{0.001, 0.05, 0.5, 2} {
		for _, delta := range []float64{1e-5, 1e-8} {
			v := RDPZCDP(rho)
			eps, order, err := v.Epsilon(delta)
			if err != nil {
				t.Fatal(err)
			}
			best := math.Inf(1)
			mironov := math.Inf(1)
			for i, a := range RDPOrders {
				e := v[i] + math.Log((a-1)/a) - (math.Log(delta)+math.Log(a))/(a-1)
				best = math.Min(best, e)
				mironov = math.Min(mironov, v[i]+math.Log(1/delta)/(a-1))
			}
			if math.Abs(eps-best) > 1e-9*best {
				t.Errorf("rho %v delta %v: %v want %v", rho, delta, eps, best)
			}
			if eps > mironov {
				t.Errorf("tight conversion %v above Mironov's %v", eps, mironov)
			}
			if bs := rho + 2*math.Sqrt(rho*math.Log(1/delta)); eps > bs*1.2 {
				t.Errorf("rho %v: %v far above Bun-Steinke %v (order %v)", rho, eps, bs, order)
			}
			// Delta(eps) is the inverse at the chosen order.
			if d, _ := v.Delta(eps); d > delta*(1+1e-6) {
				t.Errorf("Delta(Epsilon(%v)) = %v", delta, d)
			}
		}
	}
	// The conversion can never beat the exact curve: the analytic Gaussian
	// at (1, 1e-5) has exact epsilon 1, so its RDP conversion is >= 1.
	sigma, _ := AnalyticGaussianSigma(1, 1e-5, 1)
	eps, _, _ := RDPGaussian(sigma, 1).Epsilon(1e-5)
	if eps < 1 || eps > 1.5 {
		t.Errorf("RDP epsilon of the (1,1e-5) Gaussian = %v", eps)
	}
	if _, _, err := (RDPVector{}).Epsilon(0); err == nil {
		t.Error("delta 0 accepted")
	}
	v := RDPVector{}
	v[2] = -1
	if _, _, err := v.Epsilon(1e-5); err == nil {
		t.Error("negative RDP accepted")
	}
}

func TestRDPVectorAdd(t *testing.T) {
	a := RDPGaussian(3, 1)
	b := a.Add(a).Add(a)
	c := a.Scale(3)
	for i := range b {
		if math.Abs(b[i]-c[i]) > 1e-15 || math.Abs(b[i]-3*a[i]) > 1e-15 {
			t.Fatal(fmt.Sprint(b, c))
		}
	}
}
