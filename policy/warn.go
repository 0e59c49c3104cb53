package policy

import (
	"math"
	"strings"
)

// Warnings flag choices that are valid but risky. Each names the risk and
// the usual value, and leaves the decision to the DBA.

// Thresholds for warnings.
const (
	warnEpsilonPerQuery = 1.0
	warnEpsilonPerYear  = 10.0
	warnDelta           = 1e-5
	warnBoundMagnitude  = 1e12
)

func (d *decoder) policyWarnings(p *Policy, o *object) {
	if p.TLS.Mode == TLSDisable && !loopback(p.Listen) && o.has("listen") {
		d.warnf(o.valueAt("listen"), "dpproxy listens on %s without TLS, so statements and answers cross the network in clear; set `tls: {mode: require, cert_file: ..., key_file: ...}`", p.Listen)
	}
	if p.Admin != "" && !loopback(p.Admin) && o.has("admin") {
		d.warnf(o.valueAt("admin"), "the admin endpoint %s is reachable from the network and serves the ledger report (who spent what); bind it to 127.0.0.1 or a private network", p.Admin)
	}
	if len(p.Tables) == 0 {
		d.warnf(o.keyAt("tables"), "no tables are declared, so every query on data is refused; add a `tables:` list")
	}
}

// epsilonWarning flags a per-query epsilon above 1.
func (d *decoder) epsilonWarning(at pos, key string, eps float64) {
	if eps > warnEpsilonPerQuery {
		d.warnf(at, "%s %g per query is above 1: each answer may change the odds of guessing anything about one person by a factor up to e^%g ≈ %.3g; 0.1 to 1 is usual", key, eps, eps, math.Exp(eps))
	}
}

// deltaWarning flags a delta above 1e-5.
func (d *decoder) deltaWarning(at pos, key string, delta float64) {
	if delta > warnDelta {
		d.warnf(at, "%s %g is above 1e-5: with that probability an answer may reveal a person outright; keep delta well below 1/(number of people), e.g. 1e-7", key, delta)
	}
}

func (d *decoder) budgetWarnings(bo *object, owner string, b Budget) {
	if y := b.EpsilonPerYear(); y > warnEpsilonPerYear {
		at := bo.valueAt("epsilon")
		if b.Period == PeriodLifetime {
			d.warnf(at, "%s has a lifetime budget epsilon %g, above 10: over all its queries it offers little protection; 1 to 10 is usual", owner, b.Epsilon)
		} else {
			d.warnf(at, "%s has a %s budget epsilon %g, i.e. %g per year, above 10: over a year it offers little protection; lower the budget or lengthen the period", owner, b.Period, b.Epsilon, y)
		}
	}
	d.deltaWarning(bo.valueAt("delta"), "budget delta", b.Delta)
}

func (d *decoder) boundsWarnings(at pos, c *Column, b *Bounds) {
	var lo, hi float64
	switch c.Type {
	case "smallint":
		lo, hi = math.MinInt16, math.MaxInt16
	case "integer":
		lo, hi = math.MinInt32, math.MaxInt32
	}
	switch {
	case hi != 0 && (b.Lower < lo || b.Upper > hi):
		d.warnf(at, "bounds [%g, %g] are wider than %s %s column can hold ([%g, %g]); bounds should be what the column plausibly holds, e.g. [0, 120] for an age", b.Lower, b.Upper, article(c.Type), c.Type, lo, hi)
	case math.Abs(b.Lower) > warnBoundMagnitude || math.Abs(b.Upper) > warnBoundMagnitude:
		d.warnf(at, "bounds [%g, %g] of %q are absurdly wide: noise on sums and averages scales with them, so answers will be useless; choose the range values plausibly take", b.Lower, b.Upper, c.Name)
	}
}

func article(word string) string {
	if strings.ContainsAny(word[:1], "aeiou") {
		return "an"
	}
	return "a"
}
