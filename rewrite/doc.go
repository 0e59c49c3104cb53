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
// pg_query (libpg_query, the real Postgres parser) is used only through
// pgquery.go, which also enforces a size and nesting limit before calling it:
// libpg_query spends seconds on ~80 KB of nested expressions and crashes the
// process at ~96 KB.
package rewrite
