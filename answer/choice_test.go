package answer

import (
	"math/rand/v2"
	"testing"
)

// TestChoiceUtilitySensitivity: for counts and neighbouring counts one unit
// apart (one count moved by at most the row bound m, fractional counts
// included), no utility moves by more than m·utilityScale + utilitySlack,
// the sensitivity choose passes to the mechanism: rounding to the integer
// scale and a quantile's float rank sums may add to the scaled bound, never
// more than the slack.
func TestChoiceUtilitySensitivity(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8)) // test data, not noise
	for trial := 0; trial < 20000; trial++ {
		m := float64(1 + rng.IntN(10))
		counts := make([]float64, 1+rng.IntN(12))
		for i := range counts {
			counts[i] = float64(rng.IntN(1000))
			if rng.IntN(2) == 0 {
				counts[i] += float64(rng.IntN(1<<20)) / (1 << 20) * m // scaled counts
			}
		}
		next := append([]float64(nil), counts...)
		j := rng.IntN(len(next))
		delta := m * float64(rng.IntN(1<<20)) / (1 << 20)
		if rng.IntN(4) == 0 {
			delta = m
		}
		if rng.IntN(2) == 0 && next[j] >= delta {
			delta = -delta
		}
		next[j] += delta
		bound := int64(m)*utilityScale + utilitySlack
		q := rng.Float64()
		for name, pair := range map[string][2][]int64{
			"mode":     {modeUtilities(counts), modeUtilities(next)},
			"quantile": {quantileUtilities(q, counts), quantileUtilities(q, next)},
		} {
			for i := range pair[0] {
				d := pair[0][i] - pair[1][i]
				if d < 0 {
					d = -d
				}
				if d > bound {
					t.Fatalf("%s: utility %d moved by %d, over %d (counts %v, neighbour %v)", name, i, d, bound, counts, next)
				}
			}
		}
	}
}
