// Package ledger is dpproxy's privacy budget ledger: it makes the
// differential-privacy guarantee hold over time by making every answer paid
// for, exactly once, before it is computed.
//
// # Invariants
//
//  1. Charge before execute, never refund. The proxy calls Store.Debit before
//     it sends anything upstream and refuses the query if Debit fails for any
//     reason (*BudgetError, ErrUnavailable, a cancelled context). A debit is
//     never undone: a refund after an upstream error would leak through the
//     error. There is no Refund method.
//
//  2. One atomic step. The budget check, the debit and the append of the
//     audit entry happen in one bbolt transaction (BoltStore) or one Lua
//     script (RedisStore, lua/debit.lua). No interleaving of concurrent
//     debits, from one process or many proxies sharing one Redis, can let
//     an analyst's total exceed the budget passed with the charge. When
//     Debit returns an error, either nothing was debited or (on
//     ErrUnavailable / context expiry after the request was sent) the debit
//     may have happened: the caller must treat both as "refuse", which errs
//     on the side of overcharging. Retrying with the same Charge.ID is safe:
//     (analyst, ID) is an idempotency key, so a charge is debited at most
//     once and the retry returns the original Balance.
//
//  3. Fixed-point accounting. Amounts are integers: epsilon in units of 1e-9,
//     delta in units of 1e-15 (see EpsilonUnit). Each charge is rounded up
//     from its shortest decimal form, each budget rounded down, and
//     comparisons are exact, so ten charges of 0.1 fit in a budget of 1.0
//     and the eleventh does not, and rounding can never undercharge.
//
//  4. Hash-chained, append-only audit log. Every successful charge appends one
//     Entry holding the statement text (never results), tables, mechanisms,
//     policy version, cache-hit flag, amounts and the analyst's totals after
//     the charge. Each entry's hash covers the previous entry's hash, its
//     position, those totals and the SHA-256 of the entry's canonical
//     encoding (chain.go). Store.Verify recomputes the chain and checks that
//     every account equals the sum of its entries, so an edited, deleted or
//     reordered entry, or an edited balance, is reported with the first bad
//     entry. (A chain shows tampering; it cannot stop a writer who rewrites
//     the whole chain. Record the last Entry.Hash elsewhere to anchor it.)
//
// # Backends
//
// BoltStore (OpenBolt) is a single bbolt file, the default for one node: one
// chain for the whole file, group commit with fsync before any debit returns.
//
// RedisStore (NewRedis) is shared by many proxies: per analyst, an account
// hash, an idempotency hash and an audit Stream, all under the hash tag
// {analyst} so one script touches one Cluster slot; one chain per analyst.
// Its durability is Redis's: run it with appendonly yes (CheckDurability
// refuses a volatile server) and appendfsync always if losing the last second
// of debits in a crash is not acceptable.
//
// # Accounting modes
//
// Only ModeBasic (basic composition: epsilons and deltas add up against an
// (epsilon, delta) budget) is implemented; a store opened with another Mode
// fails with ErrUnsupportedMode, and a bolt file remembers its mode. ModeRDP
// is the reserved extension point for Rényi-DP accounting: a Charge will
// carry a mechanisms.RDPVector, the account will hold its per-order sums in
// fixed point (rounded up, like epsilon), and the budget check will accept a
// charge iff min(basic total, RDPVector.Epsilon(budget delta)) fits, in the
// same atomic step (bolt transaction / Lua script). The ledger does not
// import policy/, rewrite/ or wire/: budgets arrive with each charge.
package ledger
