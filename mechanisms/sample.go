package mechanisms

import (
	"math"
	"math/big"
	"math/bits"
)

// This file holds the exact samplers of Canonne, Kamath & Steinke,
// "The Discrete Gaussian for Differential Privacy", NeurIPS 2020
// (arXiv:2004.00010), referred to below as CKS20. Every probability is a
// rational number evaluated with integer arithmetic; no floating-point value
// ever touches a sampled number.

// bernoulliExpNeg1 returns true with probability exp(-1).
//
// CKS20 Algorithm 1 with gamma = 1: the first trial Bernoulli(gamma/1) always
// succeeds, so the loop starts at K = 2.
func bernoulliExpNeg1(src Source) bool {
	k := uint64(2)
	for uniform(src, k) == 0 { // A ~ Bernoulli(1/K)
		k++
	}
	return k&1 == 1 // return 1 iff K is odd
}

// bernoulliExpNegFrac returns true with probability exp(-num/den) for
// 0 <= num <= den, den >= 1.
//
// CKS20 Algorithm 1, case gamma in [0,1]:
//
//	K <- 1; loop { A ~ Bernoulli(gamma/K); if A = 0 break; K <- K+1 }; return [K odd]
func bernoulliExpNegFrac(src Source, num, den uint64) bool {
	if num == 0 {
		return true
	}
	k := uint64(1)
	for {
		// A ~ Bernoulli(num / (den*K)), by one uniform draw on [0, den*K)
		// when den*K fits in 64 bits, otherwise as the product of the
		// independent events Bernoulli(num/den) and Bernoulli(1/K).
		var a bool
		if hi, dk := bits.Mul64(den, k); hi == 0 {
			a = uniform(src, dk) < num
		} else {
			a = bernoulliRat(src, num, den) && uniform(src, k) == 0
		}
		if !a {
			break
		}
		k++
	}
	return k&1 == 1
}

// bernoulliExpNegParts returns true with probability exp(-(q + r/den)) for
// 0 <= r <= den.
//
// CKS20 Algorithm 1, case gamma > 1: draw floor(gamma) independent
// Bernoulli(exp(-1)) coins, failing at the first 0, then one
// Bernoulli(exp(-(gamma - floor(gamma)))).
func bernoulliExpNegParts(src Source, q, r, den uint64) bool {
	for i := uint64(0); i < q; i++ {
		if !bernoulliExpNeg1(src) {
			return false
		}
	}
	return bernoulliExpNegFrac(src, r, den)
}

// bernoulliExpNeg returns true with probability exp(-num/den), den >= 1.
func bernoulliExpNeg(src Source, num, den uint64) bool {
	return bernoulliExpNegParts(src, num/den, num%den, den)
}

// uniformBig returns an integer uniformly distributed on [0, n), n >= 1, by
// rejection of uniformly random bit strings of n's bit length.
func uniformBig(src Source, n *big.Int) *big.Int {
	bl := n.BitLen()
	words := (bl + 63) / 64
	buf := make([]big.Word, 0, words*2)
	v := new(big.Int)
	for {
		buf = buf[:0]
		for i := 0; i < words; i++ {
			w := src.Uint64()
			if i == words-1 && bl%64 != 0 {
				w &= (uint64(1) << (bl % 64)) - 1
			}
			if bits.UintSize == 64 {
				buf = append(buf, big.Word(w))
			} else {
				buf = append(buf, big.Word(uint32(w)), big.Word(w>>32))
			}
		}
		v.SetBits(buf)
		if v.Cmp(n) < 0 {
			return new(big.Int).Set(v)
		}
	}
}

// bernoulliExpNegBig returns true with probability exp(-num/den) for
// arbitrary-precision num >= 0, den >= 1: the slow path of CKS20 Algorithm 1,
// used only when the fast uint64 path would overflow.
func bernoulliExpNegBig(src Source, num, den *big.Int) bool {
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if q.IsUint64() {
		for i := q.Uint64(); i > 0; i-- {
			if !bernoulliExpNeg1(src) {
				return false
			}
		}
	} else {
		// floor(gamma) >= 2^64: every coin must succeed, which happens with
		// probability exp(-2^64); the loop ends at the first failure.
		for {
			if !bernoulliExpNeg1(src) {
				return false
			}
		}
	}
	if r.Sign() == 0 {
		return true
	}
	if den.IsUint64() {
		return bernoulliExpNegFrac(src, r.Uint64(), den.Uint64())
	}
	// gamma = r/den in (0,1): CKS20 Algorithm 1 with
	// Bernoulli(r/(den*K)) = Bernoulli(r/den) AND Bernoulli(1/K).
	k := uint64(1)
	for uniformBig(src, den).Cmp(r) < 0 && uniform(src, k) == 0 {
		k++
	}
	return k&1 == 1
}

// discreteLaplace samples the discrete Laplace distribution Lap_Z(t/s):
// P[X = x] proportional to exp(-|x| s/t), for integers s, t >= 1.
type discreteLaplace struct {
	s, t uint64
}

// sample implements CKS20 Algorithm 2, or for scales t/s <= 2 the same
// algorithm with steps 1-5 replaced by a direct geometric draw.
func (d discreteLaplace) sample(src Source) int64 {
	if d.t <= 2*d.s {
		return d.sampleSmallScale(src)
	}
	for {
		// Step 1: U uniform on {0, ..., t-1}.
		u := uniform(src, d.t)
		// Step 2: D ~ Bernoulli(exp(-U/t)); restart if D = 0.
		if !bernoulliExpNegFrac(src, u, d.t) {
			continue
		}
		// Step 3: V ~ Geometric(1 - exp(-1)), counting Bernoulli(exp(-1)) successes.
		var v uint64
		for bernoulliExpNeg1(src) {
			v++
		}
		// Step 4-5: X = U + t*V; Y = floor(X / s), in 128-bit arithmetic.
		hi, lo := bits.Mul64(d.t, v)
		var carry uint64
		lo, carry = bits.Add64(lo, u, 0)
		hi += carry
		var y uint64
		if hi >= d.s {
			y = math.MaxInt64 // |noise| >= 2^64: saturate (probability < exp(-2^64/scale))
		} else {
			y, _ = bits.Div64(hi, lo, d.s)
			if y > math.MaxInt64 {
				y = math.MaxInt64
			}
		}
		// Step 6: B ~ Bernoulli(1/2).
		b := bernoulliHalf(src)
		// Step 7: if B = 1 and Y = 0, reject (so that 0 is not counted twice).
		if b && y == 0 {
			continue
		}
		// Step 8: Z = (1 - 2B) * Y.
		if b {
			return -int64(y)
		}
		return int64(y)
	}
}

// sampleSmallScale draws Y ~ Geometric(1 - exp(-s/t)) by counting
// successes of Bernoulli(exp(-s/t)) coins (CKS20 Algorithm 1), then applies
// steps 6-8 of CKS20 Algorithm 2 to make it two-sided. For t/s <= 2 the
// expected number of coins, p/(1-p) with p = exp(-s/t) <= e^(-1/2), is at
// most 1.55, which makes this faster than steps 1-5 of Algorithm 2 (whose
// cost does not grow with the scale, unlike this one's).
func (d discreteLaplace) sampleSmallScale(src Source) int64 {
	for {
		var y uint64
		for bernoulliExpNeg(src, d.s, d.t) {
			y++
		}
		if y > math.MaxInt64 {
			y = math.MaxInt64
		}
		b := bernoulliHalf(src)
		if b && y == 0 { // step 7
			continue
		}
		if b { // step 8
			return -int64(y)
		}
		return int64(y)
	}
}

// discreteGaussian samples the discrete Gaussian N_Z(0, sigma^2):
// P[X = x] proportional to exp(-x^2 / (2 sigma^2)), with sigma^2 = a/b.
type discreteGaussian struct {
	a, b uint64
	t    uint64 // floor(sigma) + 1
	lap  discreteLaplace
	bt   uint64 // b*t, valid when fast
	den  uint64 // 2*a*b*t^2, valid when fast
	fast bool

	bigA, bigBT, bigDen *big.Int // slow path
}

func newDiscreteGaussian(a, b uint64) discreteGaussian {
	t := isqrtRat(a, b) + 1
	g := discreteGaussian{a: a, b: b, t: t, lap: discreteLaplace{s: 1, t: t}}
	bigA := new(big.Int).SetUint64(a)
	bigBT := new(big.Int).Mul(new(big.Int).SetUint64(b), new(big.Int).SetUint64(t))
	bigDen := new(big.Int).Mul(bigA, bigBT)
	bigDen.Mul(bigDen, new(big.Int).SetUint64(2*t))
	g.bigA, g.bigBT, g.bigDen = bigA, bigBT, bigDen
	if bigBT.IsUint64() && bigDen.IsUint64() {
		g.fast = true
		g.bt = bigBT.Uint64()
		g.den = bigDen.Uint64()
	}
	return g
}

// isqrtRat returns floor(sqrt(a/b)) for b >= 1.
func isqrtRat(a, b uint64) uint64 {
	n := uint64(math.Sqrt(float64(a) / float64(b)))
	le := func(n uint64) bool { // n^2 * b <= a ?
		h1, l1 := bits.Mul64(n, n)
		if h1 != 0 {
			return false
		}
		h2, l2 := bits.Mul64(l1, b)
		return h2 == 0 && l2 <= a
	}
	for n > 0 && !le(n) {
		n--
	}
	for le(n + 1) {
		n++
	}
	return n
}

// sample implements CKS20 Algorithm 3.
func (g *discreteGaussian) sample(src Source) int64 {
	for {
		// Step 1: Y ~ Lap_Z(t) with t = floor(sigma) + 1 (Algorithm 2, s = 1).
		y := g.lap.sample(src)
		ay := uint64(y)
		if y < 0 {
			ay = uint64(-y)
		}
		// Step 2: C ~ Bernoulli(exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))).
		// With sigma^2 = a/b the exponent is (|Y| b t - a)^2 / (2 a b t^2).
		if g.acceptFast(src, ay) {
			return y
		}
	}
}

func (g *discreteGaussian) acceptFast(src Source, ay uint64) bool {
	if g.fast {
		if ph, p := bits.Mul64(ay, g.bt); ph == 0 {
			var u uint64
			if p >= g.a {
				u = p - g.a
			} else {
				u = g.a - p
			}
			hi, lo := bits.Mul64(u, u)
			if hi < g.den {
				q, r := bits.Div64(hi, lo, g.den)
				return bernoulliExpNegParts(src, q, r, g.den)
			}
		}
	}
	return g.acceptBig(src, ay)
}

func (g *discreteGaussian) acceptBig(src Source, ay uint64) bool {
	u := new(big.Int).SetUint64(ay)
	u.Mul(u, g.bigBT)
	u.Sub(u, g.bigA)
	u.Mul(u, u)
	return bernoulliExpNegBig(src, u, g.bigDen)
}
