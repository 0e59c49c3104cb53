package wire

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dpproxy/dpproxy/pgerror"
	"github.com/dpproxy/dpproxy/policy"
)

// scramClient runs the client side of SCRAM against scramAuthenticate
// over a pipe. mech is the mechanism the client picks, gs2 its header,
// cbData the channel binding data it binds (with "p=...").
func scramClient(t *testing.T, serverCB []byte, mech, gs2 string, cbData []byte, password string) error {
	t.Helper()
	v, err := policy.NewVerifier("secret", []byte("0123456789abcdef"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		be := pgproto3.NewBackend(server, server)
		errc <- scramAuthenticate(be, "alice", v, serverCB)
		_ = be.Flush()
		server.Close()
	}()
	fe := pgproto3.NewFrontend(client, client)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	offered := msg.(*pgproto3.AuthenticationSASL).AuthMechanisms
	if serverCB != nil && (len(offered) != 2 || offered[0] != "SCRAM-SHA-256-PLUS") {
		t.Errorf("under TLS offered %v, want SCRAM-SHA-256-PLUS first", offered)
	}
	if serverCB == nil && strings.Join(offered, ",") != "SCRAM-SHA-256" {
		t.Errorf("without TLS offered %v, want SCRAM-SHA-256 only", offered)
	}
	bare := "n=,r=clientnonce"
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(gs2 + bare)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err = fe.Receive()
	if err != nil {
		return <-errc
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		return <-errc
	}
	serverFirst := string(cont.Data)
	nonce, _ := attr(serverFirst, "r")
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData...)) + ",r=" + nonce
	salted, _ := pbkdf2.Key(sha256.New, password, v.Salt, v.Iterations, sha256.Size)
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	stored := sha256.Sum256(clientKey)
	sig := hmacSHA256(stored[:], bare+","+serverFirst+","+withoutProof)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	fe.Send(&pgproto3.SASLResponse{Data: []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := fe.Receive(); err != nil {
				return
			}
		}
	}()
	return <-errc
}

func TestSCRAMChannelBinding(t *testing.T) {
	cb := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name     string
		serverCB []byte
		mech     string
		gs2      string
		cbData   []byte
		password string
		ok       bool
		id       string
	}{
		{"plain without TLS", nil, "SCRAM-SHA-256", "n,,", nil, "secret", true, ""},
		{"wrong password", nil, "SCRAM-SHA-256", "n,,", nil, "wrong", false, "DP011"},
		{"PLUS with the right binding", cb, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,", cb, "secret", true, ""},
		{"PLUS with another certificate's binding", cb, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,", []byte("forged"), "secret", false, "DP018"},
		{"PLUS without TLS", nil, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,", cb, "secret", false, "DP018"},
		{"PLUS with tls-unique", cb, "SCRAM-SHA-256-PLUS", "p=tls-unique,,", cb, "secret", false, "DP018"},
		{"downgrade: client could bind but was told it cannot", cb, "SCRAM-SHA-256", "y,,", nil, "secret", false, "DP018"},
		{"plain SCRAM under TLS, client without binding", cb, "SCRAM-SHA-256", "n,,", nil, "secret", true, ""},
		{"y without TLS", nil, "SCRAM-SHA-256", "y,,", nil, "secret", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := scramClient(t, tt.serverCB, tt.mech, tt.gs2, tt.cbData, tt.password)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && (err == nil || pgerror.As(err).ID != tt.id) {
				t.Fatalf("got %v, want refusal %s", err, tt.id)
			}
		})
	}
}
