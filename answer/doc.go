// Package answer turns the exact quantities a rewritten query returned into
// the analyst's answer: it adds the noise of each quantity's mechanism,
// selects groups (public domains, or DP partition selection), then applies
// only post-processing, which costs no privacy: aggregates from noisy
// quantities (avg = midpoint + noisy centred sum / noisy count), output
// expressions, HAVING, ORDER BY, OFFSET/LIMIT, rounding and formatting.
//
// It is pure: no I/O and no clock; randomness comes in as a
// mechanisms.Source. Invariant: nothing exact leaves this package except
// group keys of public domains or of groups that passed partition selection.
package answer
