package wire

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// TLS for analysts' connections, as Postgres offers it: a client sends
// SSLRequest first; the proxy answers 'S' and runs the TLS handshake when a
// certificate is configured, 'N' otherwise, and the startup packet follows
// over whichever channel results. In mode `require` a startup packet over
// plain TCP is refused with 28000, like a pg_hba.conf `hostssl` line.
// GSSENCRequest is always answered 'N'.
//
// The certificate comes from Config.TLS (the --tls-cert/--tls-key flags)
// or, when that is nil, from the policy in force, so a SIGHUP reload
// picks up a renewed certificate for new connections.
//
// Under TLS, SCRAM-SHA-256-PLUS with tls-server-end-point channel binding
// (RFC 5929) is offered first, as Postgres does; a client that supports
// binding but is told it is not offered ('y' flag) is refused as a
// downgrade.

// tlsSettings returns the TLS settings in force.
func (s *Server) tlsSettings() policy.TLS {
	if s.cfg.TLS != nil {
		return *s.cfg.TLS
	}
	if p := s.Policy(); p != nil {
		return p.TLS
	}
	return policy.TLS{}
}

// answerSSLRequest answers an SSLRequest and, with 'S', switches the
// session to TLS.
func (sess *session) answerSSLRequest() error {
	if sess.tlsOn {
		return pgerror.RefuseProtocol.New("SSLRequest received on a TLS connection")
	}
	set := sess.srv.tlsSettings()
	if set.Mode == "" || set.Mode == policy.TLSDisable || set.Certificate == nil {
		_, err := sess.conn.Write([]byte{'N'})
		return err
	}
	if _, err := sess.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(sess.conn, &tls.Config{
		Certificates: []tls.Certificate{*set.Certificate},
		MinVersion:   tls.VersionTLS12,
	})
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return pgerror.RefuseProtocol.Wrap(err, "TLS handshake failed: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	sess.conn = tc
	sess.be = pgproto3.NewBackend(tc, tc)
	sess.be.SetMaxBodyLen(maxMessageBytes)
	sess.tlsOn = true
	sess.channelBinding = tlsServerEndPoint(set.Certificate)
	return nil
}

// requireTLS refuses a plain-TCP startup when the mode is require.
func (sess *session) requireTLS() error {
	if !sess.tlsOn && sess.srv.tlsSettings().Mode == policy.TLSRequire {
		return pgerror.Newf(pgerror.CodeInvalidAuthorization, "dpproxy accepts only TLS connections").
			WithHint("connect with sslmode=require (or verify-full)")
	}
	return nil
}

// tlsServerEndPoint is the tls-server-end-point channel binding data (RFC
// 5929 §4.1): the hash of the server certificate, with the certificate's
// signature hash, SHA-256 for MD5 and SHA-1.
func tlsServerEndPoint(cert *tls.Certificate) []byte {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	h := crypto.SHA256
	switch leaf.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = crypto.SHA512
	case x509.PureEd25519:
		return nil // no hash to bind with: offer SCRAM-SHA-256 only
	}
	d := h.New()
	d.Write(leaf.Raw)
	return d.Sum(nil)
}
