// Package rewrite classifies each SQL statement an analyst sends and, for
// queries over private tables, checks it against the policy and plans it: the
// rewritten SQL that computes exact, clamped aggregates, and for each output
// the noisy quantities it needs with their sensitivities and shares of the
// query's ε.
//
// Invariants:
//   - Planning is pure: no I/O, no clock, no randomness. The same statement
//     text under the same policy gives the same plan, so plans can be cached.
//   - Fail closed: the validator is a typed allowlist. A node kind, function,
//     operator or clause it does not positively recognise is refused with a
//     pgerror.Refusal (SQLSTATE, message, HINT), never passed through.
//   - The rewritten SQL is re-parsed and re-validated before it is returned,
//     since a deparser can emit SQL that means something else.
//   - Sensitivities follow from the policy's bounds, never from the data.
//
// A DP query reads one private table, possibly through a row-level view
// (a FROM subquery or CTE selecting its columns), joined to public tables
// (deduplicated on their join columns) or to other privacy-unit tables on
// the unit. Its plan (statement.go) is the rewritten SQL plus what answer/
// needs: group keys with their public domains, noisy quantities with their
// sensitivity and share of ε, aggregates built from them, and the output,
// HAVING and ORDER BY expressions evaluated after noise. The SQL shapes:
//
//   - row-level tables: one aggregation over clamped values (sqlgen.go);
//   - privacy-unit tables: per-unit pre-aggregation, per-unit totals clamped
//     to max_rows_per_unit × bounds, random choice of max_groups_per_unit
//     groups per unit, then the final aggregation;
//   - privacy-unit tables grouped by public-domain keys, for counts, sums,
//     averages and variances: at most max_rows_per_unit random rows per
//     unit, then the row-level shape (sampling.go);
//   - `shadow: true` tables: the row-level shape over the pre-bounded copy.
//
// Files: classify.go (statement kinds), select.go and catalog.go (what a
// SELECT is), scope.go (FROM), predicate.go (conditions), comparison.go
// (the types and collations comparisons are made in), params.go (the
// types bound parameters take), literals.go (quoted constants and bound
// values PostgreSQL would refuse for their type), walk.go (parse-tree
// walks, schema-qualified names), groupby.go and keys.go (group keys and
// how their printed values match public domains), aggregate.go, choice.go
// (quantiles, mode), bounded.go (aggregated
// expressions), bounds.go (bounds proven by CHECK constraints), output.go
// (post-processing expressions), plan.go and sqlgen.go (the plan and its
// SQL), sampling.go (row sampling), verify.go (the independent check),
// render.go (EXPLAIN text), cache.go (the plan cache).
//
// pg_query (libpg_query, the real Postgres parser) is used only through
// pgquery.go, which also enforces a size and nesting limit before calling it:
// libpg_query spends seconds on ~80 KB of nested expressions and crashes the
// process at ~96 KB.
package rewrite
