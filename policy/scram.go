package policy

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Verifier is a SCRAM-SHA-256 verifier in Postgres's own format
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, so a DBA can copy
// one from pg_authid.rolpassword.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseVerifier parses Postgres's SCRAM-SHA-256 verifier format.
func ParseVerifier(s string) (*Verifier, error) {
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return nil, errors.New("password must be a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>), never a plain password")
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, errors.New("malformed SCRAM-SHA-256 verifier: missing $ before the keys")
	}
	iterStr, saltStr, ok1 := strings.Cut(iterSalt, ":")
	storedStr, serverStr, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return nil, errors.New("malformed SCRAM-SHA-256 verifier: expected <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("malformed SCRAM-SHA-256 verifier: bad iteration count %q", iterStr)
	}
	v := &Verifier{Iterations: iter}
	for _, f := range []struct {
		dst  *[]byte
		src  string
		name string
	}{{&v.Salt, saltStr, "salt"}, {&v.StoredKey, storedStr, "StoredKey"}, {&v.ServerKey, serverStr, "ServerKey"}} {
		b, err := base64.StdEncoding.DecodeString(f.src)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("malformed SCRAM-SHA-256 verifier: %s is not base64", f.name)
		}
		*f.dst = b
	}
	if len(v.StoredKey) != sha256.Size || len(v.ServerKey) != sha256.Size {
		return nil, errors.New("malformed SCRAM-SHA-256 verifier: keys must be 32 bytes")
	}
	return v, nil
}

// NewVerifier derives a verifier for password with the given salt, as
// Postgres does (RFC 5802, RFC 7677). Passwords are used as given: dpproxy does
// not apply SASLprep, so keep them ASCII.
func NewVerifier(password string, salt []byte, iterations int) (*Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &Verifier{
		Iterations: iterations,
		Salt:       salt,
		StoredKey:  stored[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

func (v *Verifier) String() string {
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", v.Iterations, enc(v.Salt), enc(v.StoredKey), enc(v.ServerKey))
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
