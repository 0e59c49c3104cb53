package wire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t *testing.T, curve elliptic.Curve) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSServerEndPoint: the binding hashes the certificate with its
// signature's hash (RFC 5929 §4.1).
func TestTLSServerEndPoint(t *testing.T) {
	c256 := selfSigned(t, elliptic.P256()) // ECDSA with SHA-256
	if got, want := tlsServerEndPoint(c256), sha256.Sum256(c256.Certificate[0]); string(got) != string(want[:]) {
		t.Errorf("P-256 certificate: binding is not SHA-256 of the certificate")
	}
	c384 := selfSigned(t, elliptic.P384()) // ECDSA with SHA-384
	if got, want := tlsServerEndPoint(c384), sha512.Sum384(c384.Certificate[0]); string(got) != string(want[:]) {
		t.Errorf("P-384 certificate: binding is not SHA-384 of the certificate")
	}
	if tlsServerEndPoint(nil) != nil {
		t.Error("no certificate, yet a binding")
	}
}
