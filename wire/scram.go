package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// errAuthFailed is the one error every authentication failure maps to, so
// the client cannot tell an unknown analyst from a wrong password.
func errAuthFailed(user string) *pgerror.Error {
	e := pgerror.RefuseAuth.New("password authentication failed for user %q", user)
	e.Hint = ""
	return e
}

// scramAuthenticate runs SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres does.
// v is nil for an unknown analyst: the exchange still runs with a made-up
// verifier and fails at the end, as Postgres's mock authentication does.
// cb is the tls-server-end-point channel binding data under TLS (nil
// otherwise): SCRAM-SHA-256-PLUS is then offered first, and the client's
// binding must match it.
func scramAuthenticate(be *pgproto3.Backend, user string, v *policy.Verifier, cb []byte) error {
	known := v != nil
	if !known {
		salt := make([]byte, 16)
		_, _ = rand.Read(salt)
		v = &policy.Verifier{Iterations: 4096, Salt: salt, StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}
	}
	mechs := []string{"SCRAM-SHA-256"}
	if cb != nil {
		mechs = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}
	}
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: mechs})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return pgerror.RefuseProtocol.New("expected SASLInitialResponse, got %T", msg)
	}
	plus := initial.AuthMechanism == "SCRAM-SHA-256-PLUS"
	if initial.AuthMechanism != "SCRAM-SHA-256" && !(plus && cb != nil) {
		return pgerror.RefuseProtocol.New("unsupported SASL mechanism %q: dpproxy offers %s", initial.AuthMechanism, strings.Join(mechs, " and ")).
			WithHint("SCRAM-SHA-256-PLUS needs TLS: connect with sslmode=require, or with channel_binding=disable")
	}
	clientFirst := string(initial.Data)
	gs2, bare, err := splitClientFirst(clientFirst)
	if err != nil {
		return err
	}
	switch {
	case plus && gs2 != "p=tls-server-end-point,,":
		return pgerror.RefuseProtocol.New("SCRAM-SHA-256-PLUS needs the tls-server-end-point channel binding type without an authzid")
	case !plus && strings.HasPrefix(gs2, "p="):
		return pgerror.RefuseProtocol.New("SCRAM channel binding requested with mechanism SCRAM-SHA-256")
	case !plus && strings.HasPrefix(gs2, "y") && cb != nil:
		// The client supports binding but believes the server does not:
		// the offer of SCRAM-SHA-256-PLUS was stripped (RFC 5802 §6).
		return pgerror.RefuseProtocol.New("SCRAM channel binding negotiation error: the server offered SCRAM-SHA-256-PLUS")
	}
	cbindInput := []byte(gs2)
	if plus {
		cbindInput = append(cbindInput, cb...)
	}
	clientNonce, err := attr(bare, "r")
	if err != nil {
		return err
	}
	nonceBytes := make([]byte, 18)
	if _, err := rand.Read(nonceBytes); err != nil {
		return err
	}
	nonce := clientNonce + base64.StdEncoding.EncodeToString(nonceBytes)
	serverFirst := fmt.Sprintf("r=%s,s=%s,i=%d", nonce, base64.StdEncoding.EncodeToString(v.Salt), v.Iterations)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return pgerror.RefuseProtocol.New("expected SASLResponse, got %T", msg)
	}
	clientFinal := string(resp.Data)
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return pgerror.RefuseProtocol.New("malformed SCRAM client-final-message: no proof")
	}
	withoutProof := clientFinal[:i]
	proof, err := base64.StdEncoding.DecodeString(clientFinal[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return pgerror.RefuseProtocol.New("malformed SCRAM client proof")
	}
	gotNonce, err := attr(withoutProof, "r")
	if err != nil || gotNonce != nonce {
		return pgerror.RefuseProtocol.New("SCRAM nonce mismatch")
	}
	cbind, err := attr(withoutProof, "c")
	if err != nil || cbind != base64.StdEncoding.EncodeToString(cbindInput) {
		return pgerror.RefuseProtocol.New("SCRAM channel binding mismatch")
	}
	authMessage := bare + "," + serverFirst + "," + withoutProof
	clientSig := hmacSHA256(v.StoredKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for j := range clientKey {
		clientKey[j] = proof[j] ^ clientSig[j]
	}
	storedKey := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(storedKey[:], v.StoredKey) != 1 || !known {
		return errAuthFailed(user)
	}
	serverSig := hmacSHA256(v.ServerKey, authMessage)
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig))})
	return nil
}

// splitClientFirst splits "gs2-header client-first-message-bare".
func splitClientFirst(s string) (gs2, bare string, err error) {
	parts := strings.SplitN(s, ",", 3)
	if len(parts) != 3 {
		return "", "", pgerror.RefuseProtocol.New("malformed SCRAM client-first-message")
	}
	switch {
	case parts[0] == "n" || parts[0] == "y":
	case strings.HasPrefix(parts[0], "p="):
	default:
		return "", "", pgerror.RefuseProtocol.New("malformed SCRAM gs2 header")
	}
	return parts[0] + "," + parts[1] + ",", parts[2], nil
}

func attr(msg, key string) (string, error) {
	for _, kv := range strings.Split(msg, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, nil
		}
	}
	return "", errors.New("missing SCRAM attribute " + key)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
