package main

import (
	"crypto/tls"
	"flag"
	"fmt"

	"github.com/dpproxy/dpproxy/policy"
)

// serveTLS, when set by `serve --tls-cert/--tls-key`, overrides the
// policy's tls section for the whole run (reloads included).
var serveTLS *policy.TLS

// tlsFlags registers --tls-cert, --tls-key and --tls-mode on fs. The
// returned function, called after fs.Parse, gives the override, or nil
// when no flag was set (the policy's tls section applies).
func tlsFlags(fs *flag.FlagSet) func() (*policy.TLS, error) {
	cert := fs.String("tls-cert", "", "PEM certificate chain for analysts' TLS connections (overrides the policy's tls section)")
	key := fs.String("tls-key", "", "PEM private key of --tls-cert")
	mode := fs.String("tls-mode", "", "TLS mode with --tls-cert: prefer (TLS when the client asks) or require (refuse plain connections); default require")
	return func() (*policy.TLS, error) {
		if *cert == "" && *key == "" && *mode == "" {
			return nil, nil
		}
		m := *mode
		if m == "" {
			m = policy.TLSRequire
		}
		switch m {
		case policy.TLSDisable:
			return &policy.TLS{Mode: m}, nil
		case policy.TLSPrefer, policy.TLSRequire:
		default:
			return nil, usageError{fmt.Sprintf("--tls-mode %q: write disable, prefer or require", m)}
		}
		if *cert == "" || *key == "" {
			return nil, usageError{"--tls-cert and --tls-key go together"}
		}
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
		return &policy.TLS{Mode: m, CertFile: *cert, KeyFile: *key, Certificate: &pair}, nil
	}
}
