// Package pgcluster starts a throwaway PostgreSQL cluster with Debian's
// initdb and pg_ctl in a directory of its own, on a free loopback port, with
// trust authentication for local connections only. The quickstart
// (`dpproxy demo`) and the test harness use it so that nothing depends on a
// machine's own PostgreSQL service or its authentication settings.
//
// initdb and postgres refuse to run as root; when dpproxy runs as root the
// cluster is created and run as the "postgres" user through runuser.
package pgcluster
