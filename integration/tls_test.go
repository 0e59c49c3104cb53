package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	bin "encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// testCA writes a throwaway CA and a server certificate for 127.0.0.1 and
// localhost signed by it, and returns the paths of the CA certificate, the
// server certificate and its key.
func testCA(t *testing.T) (caPath, certPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dpproxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// TestTLS: with --tls-mode require, psql connects with sslmode=require and
// verify-full (and SCRAM-SHA-256-PLUS under channel_binding=require), pgx
// verifies the certificate, and plain connections are refused with 28000.
func TestTLS(t *testing.T) {
	needTool(t, "psql")
	ctx := testContext(t)
	caPath, certPath, keyPath := testCA(t)
	p := startProxy(t, proxyOptions{serveArgs: []string{"--tls-cert", certPath, "--tls-key", keyPath, "--tls-mode", "require"}})
	host, port, _ := net.SplitHostPort(p.addr)
	psql := func(conninfo string) (string, error) {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At",
			"host="+host+" port="+port+" user=alice dbname=demo "+conninfo, "-c", "SELECT 1")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+alicePassword)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, ok := range []string{
		"sslmode=require",
		"sslmode=verify-ca sslrootcert=" + caPath,
		"sslmode=verify-full sslrootcert=" + caPath,
		"sslmode=verify-full sslrootcert=" + caPath + " channel_binding=require",
		"sslmode=require channel_binding=disable",
	} {
		if out, err := psql(ok); err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("psql %s: %v\n%s", ok, err, out)
		}
	}
	if out, err := psql("sslmode=disable"); err == nil || !strings.Contains(out, "only TLS") {
		t.Errorf("psql sslmode=disable was not refused (err %v):\n%s", err, out)
	}
	// A CA that did not sign the certificate: the client refuses.
	otherCA, _, _ := testCA(t)
	if out, err := psql("sslmode=verify-full sslrootcert=" + otherCA); err == nil {
		t.Errorf("psql verified the proxy against the wrong CA:\n%s", out)
	}

	conn, err := pgx.Connect(ctx, "host="+host+" port="+port+" user=alice password="+alicePassword+" dbname=demo sslmode=verify-full sslrootcert="+caPath)
	if err != nil {
		t.Fatalf("pgx verify-full: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, countQuery).Scan(&n); err != nil {
		t.Fatalf("count over TLS: %v", err)
	}
	if want := exact(t, ctx, countQuery); n-want > 35 || want-n > 35 {
		t.Errorf("count over TLS %d too far from %d", n, want) // ε 0.5: P(|noise| ≥ 36) < 1.2e-8
	}
	_, err = pgconn.Connect(ctx, "host="+host+" port="+port+" user=alice password="+alicePassword+" dbname=demo sslmode=disable")
	var pge *pgconn.PgError
	if !errors.As(err, &pge) || pge.Code != "28000" {
		t.Errorf("plain connection in require mode: got %v, want 28000", err)
	}
}

// TestTLSPreferAndGSSEnc: in prefer mode both plain and TLS connections
// work; GSSENCRequest is answered 'N' and the startup continues.
func TestTLSPreferAndGSSEnc(t *testing.T) {
	ctx := testContext(t)
	caPath, certPath, keyPath := testCA(t)
	p := startProxy(t, proxyOptions{serveArgs: []string{"--tls-cert", certPath, "--tls-key", keyPath, "--tls-mode", "prefer"}})
	host, port, _ := net.SplitHostPort(p.addr)
	for _, mode := range []string{"disable", "verify-full sslrootcert=" + caPath} {
		conn, err := pgx.Connect(ctx, "host="+host+" port="+port+" user=alice password="+alicePassword+" dbname=demo sslmode="+mode)
		if err != nil {
			t.Fatalf("sslmode=%s: %v", mode, err)
		}
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("sslmode=%s: SELECT 1: %v", mode, err)
		}
		conn.Close(ctx)
	}
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := bin.BigEndian.AppendUint32(bin.BigEndian.AppendUint32(nil, 8), 80877104) // GSSENCRequest
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answered %q, %v; want 'N'", b, err)
	}
}
