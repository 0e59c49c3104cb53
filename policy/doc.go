// Package policy reads and validates the DBA's policy file: where dpproxy
// listens, which upstream it fronts, where the ledger lives, which analysts
// may connect with what budget, and which tables and columns are private and
// how (row-level privacy, a privacy unit, or public), with the bounds that
// make noise meaningful.
//
// The package is pure: Parse takes bytes and returns a *Policy or a list of
// problems, each with file, line and column and what to write instead. Load
// is the one function that reads files (the policy and secret files it
// names). A Policy is immutable once returned; reload swaps the pointer.
//
// Version is a hash of the file's bytes; it goes into ledger entries and plan
// cache keys so that an answer computed under one policy is never served
// under another.
package policy
