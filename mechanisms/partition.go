package mechanisms

import (
	"fmt"
	"math"
)

// PartitionSelectionOptions configures DP partition selection for GROUP BY
// keys that have no public domain.
type PartitionSelectionOptions struct {
	// Epsilon and Delta are the privacy parameters of the selection.
	// Required: epsilon > 0 and finite, 0 < delta < 1.
	Epsilon, Delta float64
	// MaxPartitionsContributed is m, the largest number of partitions
	// (groups) one privacy unit contributes to (max_groups_per_unit).
	// Optional, default 1.
	MaxPartitionsContributed int64
}

// PartitionSelection is Laplace thresholding (Korolova, Kenthapadi, Mishra
// & Ntoulas, "Releasing Search Queries and Clicks Privately", WWW 2009;
// Wilson, Zhang, Lam, Desfontaines, Simmons-Marengo & Gipson, "Differentially
// Private SQL with Bounded User Contribution", PoPETs 2020, Sect. 3).
//
// For each candidate partition, the number of distinct privacy units in it
// gets discrete Laplace noise of scale b >= m/epsilon (L1 sensitivity m: one
// unit changes at most m counts by 1), and the partition is kept iff the
// noisy count is at least the threshold tau. tau is the smallest integer
// with P[1 + Z >= tau] <= delta/m, Z ~ Lap_Z(b), where
// P[Z >= k] = p^k/(1+p), p = exp(-1/b). Adding one unit can create at most m
// partitions of count 1, each released with probability at most delta/m;
// partitions present on both sides are protected by the Laplace noise. So
// releasing the kept keys, and their noisy counts, is (epsilon, delta)-DP.
type PartitionSelection struct {
	epsilon, delta float64
	m              int64
	sampler        discreteLaplace
	scale          float64
	threshold      int64
}

// NewPartitionSelection validates opts and computes the threshold.
func NewPartitionSelection(opts PartitionSelectionOptions) (*PartitionSelection, error) {
	if err := checkPositiveFinite("epsilon", opts.Epsilon); err != nil {
		return nil, err
	}
	if err := checkDelta("delta", opts.Delta); err != nil {
		return nil, err
	}
	m := opts.MaxPartitionsContributed
	if m == 0 {
		m = 1
	}
	if m < 1 || m > maxGridSensitivity {
		return nil, fmt.Errorf("max partitions contributed must be between 1 and 2^40, got %d", m)
	}
	t, s, err := dyadicCeil("partition selection scale", nextUp(float64(m)/opts.Epsilon))
	if err != nil {
		return nil, err
	}
	// float64(t) may round t by half an ulp (s is a power of two), so the
	// tail is computed at the next float up: never below the true t/s.
	scale := float64(t) / float64(s)
	b := nextUp(scale)
	logp := -1 / b
	// Smallest k >= 1 with k log p - log(1+p) <= log(delta/m), with a
	// relative 1e-12 margin against rounding.
	target := math.Log(opts.Delta/float64(m)) - 1e-12*math.Abs(math.Log(opts.Delta/float64(m)))
	logTail := func(k float64) float64 { return k*logp - math.Log1p(math.Exp(logp)) }
	k := math.Max(1, math.Ceil((target+math.Log1p(math.Exp(logp)))/logp))
	for k > 1 && logTail(k-1) <= target {
		k--
	}
	for logTail(k) > target {
		k++
	}
	if k+1 > math.MaxInt64/2 {
		return nil, fmt.Errorf("partition selection threshold overflows; increase epsilon or delta")
	}
	return &PartitionSelection{
		epsilon: opts.Epsilon, delta: opts.Delta, m: m,
		sampler:   discreteLaplace{s: s, t: t},
		scale:     scale,
		threshold: int64(k) + 1,
	}, nil
}

// Threshold returns tau: a partition is kept iff its noisy unit count is at
// least tau.
func (p *PartitionSelection) Threshold() int64 { return p.threshold }

// Scale returns the discrete Laplace scale of the noisy counts.
func (p *PartitionSelection) Scale() float64 { return p.scale }

// Keep adds noise to a partition's count of distinct privacy units and
// reports whether the partition may be released. The noisy count is part of
// the same (epsilon, delta) release and may be shown for kept partitions.
func (p *PartitionSelection) Keep(src Source, units int64) (noisyUnits int64, keep bool) {
	noisy := saturatingAdd(units, p.sampler.sample(src))
	return noisy, noisy >= p.threshold
}

// KeepProbability returns the probability that a partition with the given
// unit count is kept, from the discrete Laplace pmf (for documentation and
// EXPLAIN output).
func (p *PartitionSelection) KeepProbability(units int64) float64 {
	// P[units + Z >= tau] = P[Z >= tau - units].
	k := p.threshold - units
	b := p.scale
	q := math.Exp(-1 / b)
	if k >= 1 {
		return math.Exp(float64(k)*(-1/b)) / (1 + q)
	}
	// P[Z >= k] for k <= 0 is 1 - P[Z <= k-1] = 1 - P[Z >= 1-k].
	return 1 - math.Exp(float64(1-k)*(-1/b))/(1+q)
}
