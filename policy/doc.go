// Package policy reads and validates the DBA's policy file: where dpproxy
// listens, which upstream it fronts, where the ledger lives, which analysts
// may connect with what budget, and which tables and columns are private and
// how (row-level privacy, a privacy unit, or public), with the bounds that
// make noise meaningful.
//
// The package is pure: Parse and Check take bytes and return a *Policy or a
// list of problems, each with file, line and column and what to write
// instead, all at once. The YAML tree is decoded by hand (yamlpos.go) so that
// every value keeps its position. Warnings flag valid but risky choices
// (warn.go). Load and CheckFile read the policy and the secret files it
// names; Watcher (reload.go) re-reads it on change or on demand, with the
// ticks injected. A Policy is immutable once returned; reload swaps the
// pointer. docs/policy.md documents every key.
//
// Version is a hash of the file's bytes; it goes into ledger entries and plan
// cache keys so that an answer computed under one policy is never served
// under another.
package policy
