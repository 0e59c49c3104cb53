// Package ledger is dpproxy's privacy budget ledger: it makes the
// differential-privacy guarantee hold over time by making every answer paid
// for, exactly once, before it is released.
//
// # Invariants
//
//  1. Charge before release, never refund. The proxy releases nothing
//     computed from private rows until Store.Debit has returned success (it
//     may run the query upstream meanwhile: wire/overlap.go), and refuses the
//     query if Debit fails for any reason (*BudgetError, ErrUnavailable, a
//     cancelled context), dropping any rows. A debit is never undone: a refund after an upstream error would leak through the
//     error. There is no Refund method.
//
//  2. One atomic step. The budget check, the debit and the append of the
//     audit entry happen in one step of BoltStore's single writer (made
//     durable as one journal frame) or one Lua script (RedisStore,
//     lua/debit.lua). No interleaving of concurrent
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
// # Budget levels and periods
//
// A charge draws on the analyst's own Budget and on every Charge.Shared
// Limit (a team's budget, a dataset's budget across all analysts). Every
// level must hold, and all are checked and debited in the same atomic step;
// a refusal names the level (BudgetError.Account, Bucket) and debits none.
// Each budget has a Period: lifetime, daily, monthly or yearly. A periodic
// budget keeps one account per period ("bucket": "2025-06-01", "2025-06",
// "2025"), chosen from Charge.Time in UTC, so it starts afresh at midnight
// UTC / the first of the month / January 1st. Independently of periods,
// every analyst has a lifetime account (Store.Balance, reports) whose totals
// are the ones in the hash chain. Budgets still arrive with each charge:
// the policy (teams, datasets, periods) is mapped to levels by the caller.
//
// # Admin grants and resets
//
// Store.Grant writes an entry of kind "grant" or "reset" to the analyst's
// chain and, in the same atomic step, adds its amounts to the granted
// amounts of one account (the lifetime one, or the current period's). A
// grant RAISES THE BUDGET: a charge fits when spent + charge <= budget +
// granted; spent amounts are never lowered, so the chain's running totals
// stay the sums of all charges ever answered. A reset is a grant of exactly
// spent - granted, after which the remaining budget is the whole Budget
// again; its entry records the amount it computed. Negative grants take
// budget back. Verify replays the entries: spent sums from charges, granted
// sums from grants and resets, for every account and bucket.
//
// # Accounting modes
//
// ModeBasic (basic composition): epsilons and deltas add up, and a charge
// fits when the sums stay within the budget.
//
// ModeRDP (Rényi DP): every account also holds the sum of the charges'
// RDP curves at mechanisms.RDPOrders, in fixed point (epsilon units, each
// charge rounded up), plus an "approximate" (epsilon, delta) part for
// charges that have no curve and a positive delta. A charge without a curve
// and with delta 0 is accounted with mechanisms.RDPPureDP (tight for any
// pure-DP mechanism); a charge with a curve contributes its Delta to the
// approximate part. A charge fits a level when EITHER the basic sums fit,
// OR approximate epsilon + the conversion of the curve sums at
// (budget delta - approximate delta) fits the budget epsilon (conversion of
// Canonne, Kamath & Steinke 2020, Prop. 12, as mechanisms.RDPVector.Epsilon;
// the two composed guarantees are both valid, so the tighter one may be
// used). The check and the update happen in the bolt writer and inside
// the Lua script (which receives the per-order constants from Go and only
// computes log(delta) itself, so the backends agree to within one 1e-9
// unit at an exact boundary). A bolt file remembers its mode; a Redis
// ledger's mode is checked entry by entry by Verify.
//
// # Answer cache
//
// AnswerCache (BoltCache: its own file, one node; RedisCache: shared by all
// nodes on one Redis) stores noisy answers so that a repeated statement
// returns the same answer without a new charge. The caller (wire/) owns the
// protocol:
//
//	key := "v1\x00" + policyVersion + "\x00" + analyst + "\x00" + statement + "\x00" + encodedParams
//	if val, ok, err := cache.Get(ctx, key); ok { answer val; Debit a zero charge with CacheHit }
//	else { Debit the full charge; run; noise; cache.Put(ctx, key, encodedAnswer, window); answer }
//
//   - The key must distinguish every input the answer depends on: the exact
//     statement text, or the canonical deparse of its parse tree with every
//     constant kept, NEVER pg_query's fingerprint or normalised text (they
//     merge statements that differ only in constants, which would answer
//     "age > 41" with the noisy answer of "age > 40"); the bound parameters
//     with their types and formats; the analyst (answers are not shared
//     between analysts: each pays for their own); the policy version (a
//     new policy may change bounds, noise or access); and the session
//     settings the answer depends on (dp.epsilon). Length-prefix or
//     NUL-separate the parts so they cannot run together.
//   - Put only after the charge succeeded; Put never replaces a live entry
//     (first answer wins), so concurrent identical statements that both
//     missed are both charged and later readers see one answer.
//   - A hit is still recorded with a zero Debit (CacheHit true) so the
//     audit trail lists every answer (before the answer, or with the
//     policy's cache_hit_audit: batched, in a batch just after it); a cache
//     error is a miss (charge and compute), never a free answer.
//   - The window is the ttl; BoltCache uses an injected clock (default
//     time.Now), RedisCache Redis's expiry. The cache holds noisy (already
//     DP) answers only, never exact values, and never goes in the ledger file.
//
// # Backends
//
// BoltStore (OpenBolt) is a bbolt file and its journal (<file>-journal), the
// default for one node: one chain for the whole file, group commit with one
// fdatasync of the journal before any debit returns; a checkpointer copies
// the journal into the bbolt file (two fsyncs per bbolt transaction, off
// the debit's path), and opening the file replays what a crash left only
// in the journal (boltwriter.go, boltcheckpoint.go, journal.go). Frames
// are block-aligned, so writing one never rewrites an acknowledged one;
// replay skips unreadable frames and refuses a gap in the chain, so a
// corrupt frame whose entries the file lacks stops the ledger from opening
// rather than losing them.
//
// RedisStore (NewRedis) is shared by many proxies: per analyst, an account
// hash, an idempotency hash and an audit Stream, all under the hash tag
// {analyst} so one script touches one Cluster slot; one chain per analyst.
// Its durability is Redis's: run it with appendonly yes (CheckDurability
// refuses a volatile server) and appendfsync always if losing the last second
// of debits in a crash is not acceptable.
//
// Redis Cluster: one script may only touch keys of one hash slot. Keys are
// tagged per analyst ({analyst}), which spreads analysts over shards; a
// charge with Shared budgets touches the shared accounts too, so a Cluster
// deployment with team or dataset budgets must set RedisOptions.HashTag,
// which puts the whole ledger in one slot (one shard, ~6–7k debits/s).
// NewRedis refuses nothing, but such a Debit fails with ErrInvalidCharge.
// Single-node Redis and Sentinel have no such constraint.
//
// Durability recommendations for Redis: appendonly yes with appendfsync
// always (every debit is on disk before the script returns, so a crash of
// Redis loses no answered charge), or, for replicated setups, appendfsync
// everysec on a primary whose replicas acknowledge each write (WAIT 1 0
// after the debit, which the proxy does not do today: a failover may lose
// the last second of debits otherwise). CheckDurability refuses a Redis
// with appendonly no unless RedisOptions.AllowVolatile (policy
// ledger.redis.allow_volatile), which is logged.

package ledger
