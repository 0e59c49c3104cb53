package mechanisms

import (
	"testing"
)

var sinkInt int64
var sinkFloat float64

func BenchmarkSecureSourceUint64(b *testing.B) {
	src := NewSecureSource()
	var x uint64
	for i := 0; i < b.N; i++ {
		x ^= src.Uint64()
	}
	sinkInt = int64(x)
}

func benchLaplace(b *testing.B, eps float64) {
	m, err := NewLaplace(LaplaceOptions{Epsilon: eps, L1Sensitivity: 1})
	if err != nil {
		b.Fatal(err)
	}
	src := NewSecureSource()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkInt = m.AddNoiseInt(src, 100)
	}
}

func BenchmarkLaplaceEps1(b *testing.B)   { benchLaplace(b, 1) }
func BenchmarkLaplaceEps0_1(b *testing.B) { benchLaplace(b, 0.1) }
func BenchmarkLaplaceEps10(b *testing.B)  { benchLaplace(b, 10) }

func BenchmarkLaplaceEps1Parallel(b *testing.B) {
	m, _ := NewLaplace(LaplaceOptions{Epsilon: 1, L1Sensitivity: 1})
	b.RunParallel(func(pb *testing.PB) {
		src := NewSecureSource() // one per goroutine: no shared lock
		var s int64
		for pb.Next() {
			s += m.AddNoiseInt(src, 100)
		}
		sinkInt = s
	})
}

func BenchmarkLaplaceAddNoiseFloat(b *testing.B) {
	m, _ := NewLaplace(LaplaceOptions{Epsilon: 1, L1Sensitivity: 1, Granularity: 0.01})
	src := NewSecureSource()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkFloat = m.AddNoise(src, 1234.5678)
	}
}

func benchGaussian(b *testing.B, sens float64) {
	m, err := NewGaussian(GaussianOptions{Epsilon: 1, Delta: 1e-5, L2Sensitivity: sens})
	if err != nil {
		b.Fatal(err)
	}
	src := NewSecureSource()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkInt = m.AddNoiseInt(src, 100)
	}
}

// Sigma 3.74 (sensitivity 1), 374 and 37400 (big-integer path).
func BenchmarkGaussianEps1Delta1e5(b *testing.B)        { benchGaussian(b, 1) }
func BenchmarkGaussianEps1Delta1e5Sens100(b *testing.B) { benchGaussian(b, 100) }
func BenchmarkGaussianEps1Delta1e5Sens1e4(b *testing.B) { benchGaussian(b, 1e4) }

func BenchmarkGaussianEps1Delta1e5Parallel(b *testing.B) {
	m, _ := NewGaussian(GaussianOptions{Epsilon: 1, Delta: 1e-5, L2Sensitivity: 1})
	b.RunParallel(func(pb *testing.PB) {
		src := NewSecureSource()
		var s int64
		for pb.Next() {
			s += m.AddNoiseInt(src, 100)
		}
		sinkInt = s
	})
}

func BenchmarkBernoulliExpNeg(b *testing.B) {
	src := NewSecureSource()
	var k int64
	for i := 0; i < b.N; i++ {
		if bernoulliExpNeg(src, 3, 7) {
			k++
		}
	}
	sinkInt = k
}

func BenchmarkNewGaussian(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := NewGaussian(GaussianOptions{Epsilon: 1, Delta: 1e-5, L2Sensitivity: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHalfWidthGaussian(b *testing.B) {
	m, _ := NewGaussian(GaussianOptions{Epsilon: 1, Delta: 1e-5, L2Sensitivity: 1})
	for i := 0; i < b.N; i++ {
		sinkFloat = m.HalfWidth(0.95)
	}
}

func BenchmarkRDPEpsilon(b *testing.B) {
	v := RDPGaussian(4, 1).Add(RDPDiscreteLaplace(2, 1))
	for i := 0; i < b.N; i++ {
		e, _, _ := v.Epsilon(1e-6)
		sinkFloat = e
	}
}

func BenchmarkRDPDiscreteLaplace(b *testing.B) {
	for i := 0; i < b.N; i++ {
		sinkFloat = RDPDiscreteLaplace(2, 1)[0]
	}
}

func BenchmarkRDPVectorAdd(b *testing.B) {
	v := RDPGaussian(4, 1)
	w := RDPDiscreteLaplace(2, 1)
	for i := 0; i < b.N; i++ {
		v = v.Add(w)
	}
	sinkFloat = v[0]
}

func BenchmarkZCDPEpsilon(b *testing.B) {
	for i := 0; i < b.N; i++ {
		sinkFloat, _ = ZCDPEpsilon(0.5, 1e-6)
	}
}

func BenchmarkComposeOptimalK100(b *testing.B) {
	for i := 0; i < b.N; i++ {
		c, _ := ComposeOptimal(ApproxDP{0.1, 0}, 100, 1e-6)
		sinkFloat = c.Epsilon
	}
}

func BenchmarkGDPEpsilon(b *testing.B) {
	for i := 0; i < b.N; i++ {
		sinkFloat, _ = GDPEpsilon(0.5, 1e-6)
	}
}

func BenchmarkNewGaussianSens1e6(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := NewGaussian(GaussianOptions{Epsilon: 1, Delta: 1e-5, L2Sensitivity: 1e6}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReportNoisyMax10(b *testing.B) {
	src := NewSecureSource()
	u := []int64{5, 3, 9, 9, 1, 0, 4, 8, 2, 7}
	for i := 0; i < b.N; i++ {
		j, _ := ReportNoisyMax(src, u, 1, 1)
		sinkInt = int64(j)
	}
}

func BenchmarkExponentialSelect10(b *testing.B) {
	m, _ := NewExponential(ExponentialOptions{Epsilon: 1, Sensitivity: 1})
	src := NewSecureSource()
	u := []int64{5, 3, 9, 9, 1, 0, 4, 8, 2, 7}
	for i := 0; i < b.N; i++ {
		j, _ := m.Select(src, u, nil)
		sinkInt = int64(j)
	}
}

func BenchmarkQuantileMedian1000(b *testing.B) {
	q, _ := NewQuantile(QuantileOptions{Epsilon: 1, Lower: 0, Upper: 1e6})
	values := make([]float64, 1000)
	for i := range values {
		values[i] = float64(i * 37 % 1000)
	}
	src := NewSecureSource()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sinkFloat, _ = q.Release(src, values, 0.5)
	}
}

func BenchmarkPartitionSelectionKeep(b *testing.B) {
	p, _ := NewPartitionSelection(PartitionSelectionOptions{Epsilon: 1, Delta: 1e-5})
	src := NewSecureSource()
	for i := 0; i < b.N; i++ {
		n, _ := p.Keep(src, 20)
		sinkInt = n
	}
}
