// Package wire is dpproxy's PostgreSQL front end: it speaks protocol 3.0 to
// analysts' clients with pgx's pgproto3 and runs what the rewriter allows on
// the upstream pool.
//
// Connection lifecycle, top to bottom (see serveConn):
//
//  1. Accept. One goroutine per connection; everything for one connection
//     happens on it, in order, so a session needs no locks (except the
//     cancel hook, which another connection's CancelRequest calls).
//     A panic is recovered, logged, and closes only that connection.
//  2. SSLRequest is answered 'S' and the TLS handshake runs when a
//     certificate is configured (the policy's tls section, or the serve
//     command's --tls-cert/--tls-key/--tls-mode), 'N' otherwise; in mode
//     require a plain startup is refused with 28000 (see tls.go).
//     GSSEncRequest is answered 'N'. A CancelRequest cancels the running
//     upstream statement of the session whose BackendKeyData it carries,
//     then closes.
//  3. StartupMessage: the user is an analyst of the policy; SCRAM-SHA-256
//     with verifiers in Postgres's own format (an unknown analyst goes
//     through a mock exchange and fails like a wrong password); under TLS
//     SCRAM-SHA-256-PLUS (tls-server-end-point) is offered first. Startup
//     `options` are refused.
//  4. AuthenticationOk, ParameterStatus (server_version and TimeZone from
//     upstream), BackendKeyData, ReadyForQuery.
//  5. The command loop: Query (simple protocol; several statements run in
//     turn and stop at the first error), Parse/Bind/Describe/Execute/Close/
//     Sync/Flush (extended protocol; an error discards messages until Sync),
//     Terminate. FunctionCall and COPY are refused.
//  6. Limits and the end (limits.go): connections, concurrent upstream
//     statements per analyst and the idle time are bounded (53300, 57P05);
//     a CancelRequest also cancels the statement upstream (57014);
//     Shutdown lets running statements answer and ends each session at its
//     next wait between protocol sequences (57P01).
//
// Statements come back from rewrite classified:
//   - session commands (SET/SHOW/RESET/BEGIN/COMMIT/ROLLBACK/...) are
//     answered by the proxy. Transactions are tracked for ReadyForQuery's
//     status only: every DP query runs upstream in its own read-only
//     transaction, so BEGIN...COMMIT groups nothing upstream. Ordinary SET
//     values are kept per session and echoed by SHOW; they are not applied
//     upstream.
//   - passthrough statements (no table read, or only allowed catalog
//     relations: see rewrite/catalog.go) run upstream as they are, bound
//     parameters and result formats included; their upstream errors are
//     forwarded. Execute's row limit is honoured (for DP answers too): the
//     result is fetched whole and sent in parts ending in PortalSuspended. Catalog
//     queries see every table's schema, including tables absent from the
//     policy: schema is not private, and \dt must show what exists. Rows
//     of undeclared tables stay unreachable (DP004); statistics (pg_stats,
//     pg_stat_*, reltuples/relpages, size functions) are refused (DP014).
//   - DP queries: charge the ledger (refuse if it is unreachable or the
//     budget is short) and run the rewritten SQL upstream (one after the
//     other, or at once when the session's last debit left room for this
//     one: overlap.go; either way nothing leaves the proxy before the
//     debit commits) on a pooled
//     session that starts read-only with the policy's statement timeout
//     (UpstreamPoolConfig), so the statement goes alone (prepared on the
//     connection when it ran the text before and has no parameters:
//     prepared.go); inside `BEGIN [ISOLATION LEVEL REPEATABLE READ] READ
//     ONLY; SET LOCAL statement_timeout; [SET LOCAL <planner setting>;]
//     ...; [guard;] COMMIT` in one round trip when a guard of catalog facts
//     (a unique unit, CHECK-proven bounds: unique.go, bounds.go) must share
//     the query's snapshot and tables (statement and guard prepared, in one
//     batch, on the same terms), the plan needs a planner setting (row
//     sampling), or a reload changed the timeout (bound parameters stay
//     parameters, sent untyped as text: dpparams.go), add noise,
//     post-process, send a NOTICE with the cost, the budget left and the 95%
//     accuracy, then the row. Upstream errors on DP queries are replaced by a
//     generic error; the charge stands.
//
// Describe of a DP statement answers from the plan and charges nothing;
// Execute charges. Errors are flattened from pgerror only here.
package wire
