package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpproxy/dpproxy/demo"
	"github.com/dpproxy/dpproxy/internal/pgcluster"
)

// Postgres is a throwaway cluster with the demo database loaded.
type Postgres struct {
	Cluster *pgcluster.Cluster
	dir     string
}

// StartDemoPostgres starts a PostgreSQL cluster in a new temporary directory
// and installs the demo database. It is meant for TestMain: call Stop when
// the tests are done. It never uses the machine's own PostgreSQL service.
func StartDemoPostgres() (*Postgres, error) {
	dir, err := os.MkdirTemp("", "dpproxy-test-pg-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, filepath.Join(dir, "pg"), 0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := demo.Install(ctx, c.DSN, io.Discard); err != nil {
		_ = c.Stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("installing demo data: %w", err)
	}
	return &Postgres{Cluster: c, dir: dir}, nil
}

// ReaderDSN is the read-only DSN dpproxy uses upstream.
func (p *Postgres) ReaderDSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=demo sslmode=disable", p.Cluster.Port, demo.ReaderRole)
}

// AdminDSN is a superuser DSN for the demo database, for tests that compute
// exact answers to compare noisy ones with.
func (p *Postgres) AdminDSN() string { return p.Cluster.DSN("demo") }

// Stop stops the cluster and removes its directory.
func (p *Postgres) Stop() {
	_ = p.Cluster.Stop()
	_ = os.RemoveAll(p.dir)
}

// StartCluster starts an empty throwaway PostgreSQL cluster in t.TempDir()
// for one test and stops it in t.Cleanup.
func StartCluster(ctx context.Context, t testing.TB) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(ctx, filepath.Join(t.TempDir(), "pg"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}
