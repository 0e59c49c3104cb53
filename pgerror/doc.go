// Package pgerror is dpproxy's one error vocabulary: errors that carry a
// Postgres SQLSTATE, a HINT and a DETAIL, and the numbered catalogue of
// dpproxy's own refusals.
//
// Every package below wire/ returns these errors (or wraps them with %w); only
// wire/ flattens them into an ErrorResponse. Tests match on codes and
// catalogue IDs, never on message text. The README's error table is generated
// from Catalogue by `go run ./cmd/dpproxy errors --markdown`.
package pgerror
