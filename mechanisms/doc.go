// Package mechanisms holds dpproxy's differential-privacy mathematics: noise
// samplers, their calibration, accuracy statements and privacy accountants.
//
// # Invariants
//
// Pure: no I/O, no clock, no globals that change. Randomness has one door:
// every sampler takes a [Source], production code gets one only from
// [NewSecureSource] (crypto/rand, read 4 KiB at a time), and the seeded
// source of [NewSeededSourceForTest] panics outside a test binary. A Source
// is owned by one goroutine (one per connection), so sampling takes no lock.
// Mechanisms are immutable after construction and safe to share.
//
// Exact sampling: a sampled number never passes through floating point. All
// probabilities are exact rationals evaluated with integer arithmetic
// (uint64 and 128-bit fast paths, math/big only when those overflow), and
// uniform integers are drawn by rejection, without modulo bias. Floating point
// is used only to calibrate public parameters and to report costs and
// accuracy, and every such result is rounded in the safe direction: scales
// and sigmas up (never less noise than the float calibration asks for),
// privacy costs up. Timing: a sample's running time depends on the noise
// drawn (the samplers loop a random number of times) but never on the value
// being protected, and there are no data-dependent floating-point
// operations, so the floating-point attacks of Mironov (CCS 2012) and the
// subnormal timing attacks on float samplers do not apply. The noise itself
// could be estimated from a precise timing of the sampler; the proxy's
// network path hides sub-microsecond differences, and callers that fear a
// co-located timing adversary should pad responses.
//
// # Granularity rule
//
// Real values are released on a grid of step g (the Granularity option,
// default 1). A value x is mapped to the grid index floor(x/g + 1/2),
// computed exactly from the binary values of x and g (ties go up; NaN maps to
// 0; indices are clamped to +-2^52). The sensitivity is rounded UP to a
// whole number of steps, k = ceil(sensitivity/g), computed exactly. Because
// floor(y + 1/2) is monotone and commutes with integer shifts, grid indices
// of neighbouring inputs differ by at most k, so integer noise calibrated to
// k protects them. The noisy index is multiplied by g on the way out:
// outputs are integer multiples of g. Rounding and clamping are
// 1-Lipschitz, so they never increase sensitivity; the reported accuracy
// covers the noise, and the value itself is within a further g/2.
//
// # Mechanisms
//
// Bernoulli(exp(-gamma)), discrete Laplace and discrete Gaussian samplers
// implement Algorithms 1, 2 and 3 of Canonne, Kamath & Steinke, "The Discrete
// Gaussian for Differential Privacy" (NeurIPS 2020), cited as CKS20 in
// comments next to each step.
//
// [Laplace] adds discrete Laplace noise, P[X = x] proportional to
// exp(-|x|/b), with scale b >= k/epsilon in grid units, an exact dyadic
// rational rounded up. It is epsilon-DP for L1 sensitivity k (the geometric
// mechanism of Ghosh, Roughgarden & Sundararajan, STOC 2009; CKS20 Sect. 2).
// Its Renyi-DP curve is the discrete Laplace's own, [RDPDiscreteLaplace],
// which exceeds the continuous Laplace curve of Mironov 2017.
//
// [Gaussian] adds discrete Gaussian noise, P[X = x] proportional to
// exp(-x^2/(2 sigma^2)), with sigma^2 an exact rational. Given (epsilon,
// delta), sigma is the smallest (to 1e-9, rounded up) for which the discrete
// Gaussian's exact privacy curve, CKS20 Theorem 7 ([DiscreteGaussianDelta]),
// meets delta. The continuous analytic Gaussian calibration of Balle & Wang
// (ICML 2018, [AnalyticGaussianSigma]) does not carry over: at epsilon 1,
// delta 1e-5, sensitivity 1 its sigma gives the discrete Gaussian delta
// 1.03e-5 (and at large epsilon the discrete Gaussian needs less noise). Given rho, sigma = k/sqrt(2 rho), which is rho-zCDP
// (CKS20 Theorem 4).
//
// Accuracy: HalfWidth(c) of each mechanism is the smallest half-width, a
// multiple of g, of a symmetric interval holding at least a fraction c of the
// noise distribution, computed from the discrete pmf (closed form for the
// discrete Laplace, summation or a bounded Euler-Maclaurin formula for the
// discrete Gaussian), not from a continuous approximation.
//
// [Exponential] is the exponential mechanism (McSherry & Talwar, FOCS 2007)
// with integer utilities and integer base weights, sampled exactly: its base
// exp(-epsilon/(2 sensitivity)) is rounded up to a dyadic rational beta (so
// the true epsilon is at most the configured one) and the index is drawn by
// inversion against interval bounds on the weights, computed with directed
// rounding and refined until the draw is decided. It is epsilon-DP.
// [Quantile] applies it to the intervals between sorted clamped values
// (Smith, "Privacy-preserving statistical estimation with optimal
// convergence rates", STOC 2011) for percentiles, medians, minima and maxima.
// [ReportNoisyMax] is the permute-and-flip mechanism (McKenna & Sheldon,
// NeurIPS 2020), equivalent to report-noisy-max with exponential noise (Ding,
// Kifer et al., 2021); it is epsilon-DP, never less accurate than the
// exponential mechanism, and exact through Bernoulli(exp(-gamma)) coins.
// [Mode] applies it to the counts of a declared domain.
//
// [PartitionSelection] decides which GROUP BY keys without a public domain
// may be released: each key's count of privacy units gets discrete Laplace
// noise of scale m/epsilon (m = partitions one unit may contribute to), and
// the key is kept if the noisy count reaches a threshold chosen so that a key
// held by a single unit survives with probability at most delta/m. The result
// is (epsilon, delta)-DP (Korolova, Kenthapadi, Mishra & Ntoulas, WWW 2009;
// Wilson et al., "Differentially Private SQL with Bounded User
// Contribution", PoPETs 2020).
//
// # Accounting
//
// [ApproxDP] guarantees compose by [ComposeBasic] (epsilons and deltas add),
// [ComposeParallel] (maximum, for disjoint privacy units), [ComposeAdvanced]
// (Dwork, Rothblum & Vadhan, FOCS 2010) and [ComposeOptimal] (Kairouz, Oh &
// Viswanath, ICML 2015, exact for k-fold homogeneous composition).
// [RDPVector] tracks Renyi DP (Mironov, CSF 2017) at the 13 fixed
// [RDPOrders]; vectors add element-wise and convert to (epsilon, delta) by
// the tight conversion of CKS20 Proposition 12 / Balle et al. (AISTATS 2020)
// in well under a microsecond. zCDP (Bun & Steinke, TCC 2016) converts by
// [ZCDPEpsilon]; mu-GDP (Dong, Roth & Su, JRSS-B 2022) by [GDPEpsilon] and
// composes by [ComposeGDP]. Every reported cost is rounded up.
package mechanisms
