// Package integration holds end-to-end tests: they build the dpproxy binary,
// start a throwaway PostgreSQL cluster with the demo data (never the
// machine's own service), run the proxy in front of it, and drive it with
// real clients (pgx, psql).
package integration
