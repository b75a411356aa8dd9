package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func hs256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialAuth upgrades at path with an optional header and subprotocols and
// returns the connection or the refusal's status.
func dialAuth(t *testing.T, addr, path string, h http.Header, protos []string) (*websocket.Conn, int) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: protos}
	ws, resp, err := d.Dial("ws://"+addr+path, h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { ws.Close() })
	return ws, 101
}

func TestJWTAuth(t *testing.T) {
	c := startCluster(t, 3, func(cfg *gateway.Config) {
		cfg.Auth = gateway.AuthConfig{HMACSecret: testSecret, Audience: "wsgate-test", Issuer: "issuer-1"}
	})
	addr := c.Gateway().Addr()
	now := time.Now()
	good := jwt.MapClaims{"sub": "alice", "aud": "wsgate-test", "iss": "issuer-1", "exp": now.Add(time.Hour).Unix()}
	tok := hs256(t, good)

	// Accepted three ways; the route is the verified sub.
	for name, dial := range map[string]func() (*websocket.Conn, int){
		"query": func() (*websocket.Conn, int) { return dialAuth(t, addr, "/ws/?token="+tok, nil, nil) },
		"header": func() (*websocket.Conn, int) {
			return dialAuth(t, addr, "/ws/", http.Header{"Authorization": {"Bearer " + tok}}, nil)
		},
		"subprotocol": func() (*websocket.Conn, int) {
			return dialAuth(t, addr, "/ws/", nil, []string{"wsgate", "bearer." + tok})
		},
		"url key too": func() (*websocket.Conn, int) { return dialAuth(t, addr, "/ws/alice?token="+tok, nil, nil) },
	} {
		ws, st := dial()
		if st != 101 {
			t.Fatalf("%s: HTTP %d", name, st)
		}
		if name == "subprotocol" && ws.Subprotocol() != "wsgate" {
			t.Fatalf("subprotocol selected %q, want wsgate (never the token)", ws.Subprotocol())
		}
		if w := readWelcome(t, ws); w.ServerIP != owner(t, c, "alice") {
			t.Fatalf("%s: routed to %s, alice's owner is %s", name, w.ServerIP, owner(t, c, "alice"))
		}
	}

	es, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	esTok, _ := jwt.NewWithClaims(jwt.SigningMethodES256, good).SignedString(es)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	otherKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good).SignedString([]byte("another-secret-another-secret-!!"))
	with := func(k string, v any) jwt.MapClaims {
		m := jwt.MapClaims{}
		for a, b := range good {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name, path string
		status     int
		reason     string
	}{
		{"missing", "/ws/bob", 401, "auth_missing"},
		{"malformed", "/ws/?token=not.a.jwt", 401, "auth_malformed"},
		{"bad signature", "/ws/?token=" + otherKey, 401, "auth_signature"},
		{"alg none", "/ws/?token=" + noneTok, 401, "auth_algorithm"},
		{"wrong algorithm", "/ws/?token=" + esTok, 401, "auth_algorithm"},
		{"expired", "/ws/?token=" + hs256(t, with("exp", now.Add(-time.Minute).Unix())), 401, "auth_expired"},
		{"not yet valid", "/ws/?token=" + hs256(t, with("nbf", now.Add(time.Hour).Unix())), 401, "auth_not_yet_valid"},
		{"wrong audience", "/ws/?token=" + hs256(t, with("aud", "someone-else")), 401, "auth_audience"},
		{"wrong issuer", "/ws/?token=" + hs256(t, with("iss", "issuer-2")), 401, "auth_issuer"},
		{"no sub", "/ws/?token=" + hs256(t, with("sub", nil)), 401, "auth_no_key"},
		{"URL names another key", "/ws/bob?token=" + tok, 403, "auth_key_mismatch"},
		{"key claim over --max-key", "/ws/?token=" + hs256(t, with("sub", strings.Repeat("k", 300))), 401, "auth_key_too_long"},
	} {
		if _, st := dialAuth(t, addr, tc.path, nil, nil); st != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.name, st, tc.status)
		}
		// The metric is counted after the answer is written: poll.
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := handshakeResults(t, c.Gateway(), tc.reason); n < 1 {
				return fmt.Errorf("%s: handshakes_total{result=%q} = %d", tc.name, tc.reason, n)
			}
			return nil
		})
	}
}

// handshakeResults reads wsgate_gateway_handshakes_total{result}.
func handshakeResults(t *testing.T, g *gateway.Gateway, result string) int {
	t.Helper()
	return metricSample(t, g, `wsgate_gateway_handshakes_total{result="`+result+`"}`)
}

func TestJWTAnonymous(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) {
		cfg.Auth = gateway.AuthConfig{HMACSecret: testSecret, AllowAnonymous: true}
	})
	if _, st := dialAuth(t, c.Gateway().Addr(), "/ws/", nil, nil); st != 101 {
		t.Fatalf("anonymous keyless: HTTP %d", st)
	}
	if _, st := dialAuth(t, c.Gateway().Addr(), "/ws/bob", nil, nil); st != 401 {
		t.Fatalf("anonymous naming a key: HTTP %d, want 401", st)
	}
}

// TestJWTClaimsAndExpiry: the verified claims reach the backend
// (Session.Claims), and a connection whose token expires is closed with
// 1008 "token expired".
func TestJWTClaimsAndExpiry(t *testing.T) {
	r := startSinkRig(t, func(cfg *gateway.Config) {
		cfg.Auth = gateway.AuthConfig{HMACSecret: testSecret}
		cfg.PingInterval = 200 * time.Millisecond
	})
	tok := hs256(t, jwt.MapClaims{"sub": "carol", "role": "admin", "exp": time.Now().Add(2 * time.Second).Unix()})
	ws, st := dialAuth(t, r.gw.Addr(), "/ws/?token="+tok, nil, nil)
	if st != 101 {
		t.Fatalf("HTTP %d", st)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		p := r.app.claims.Load()
		if p == nil || !strings.Contains(*p, `"role":"admin"`) || !strings.Contains(*p, `"sub":"carol"`) {
			return fmt.Errorf("backend saw claims %v", p)
		}
		return nil
	})
	_ = ws.SetReadDeadline(time.Now().Add(6 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok || ce.Code != 1008 || ce.Text != "token expired" {
			t.Fatalf("after expiry: %v, want close 1008 \"token expired\"", err)
		}
		break
	}
}

// TestJWTFarExpiry: a token that expires beyond 2106 (exp 9999999999, a
// common "never") is not taken for an expired one.
func TestJWTFarExpiry(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) {
		cfg.Auth = gateway.AuthConfig{HMACSecret: testSecret}
		cfg.PingInterval = 100 * time.Millisecond
	})
	ws, st := dialAuth(t, c.Gateway().Addr(), "/ws/?token="+hs256(t, jwt.MapClaims{"sub": "far", "exp": int64(9999999999)}), nil, nil)
	if st != 101 {
		t.Fatalf("HTTP %d", st)
	}
	pings := make(chan struct{}, 100)
	ws.SetPingHandler(func(string) error { pings <- struct{}{}; return nil })
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	// Server pings come from the same walk that checks expiry: after a few,
	// the session has been checked a few times.
	for range 4 {
		select {
		case <-pings:
		case err := <-readErr:
			t.Fatalf("closed: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no server ping")
		}
	}
	select {
	case err := <-readErr:
		t.Fatalf("closed: %v", err)
	default:
	}
}

// TestJWKS: tokens are verified with the JWKS key their kid names; an
// unknown kid, a key of another type and HS256 are refused.
func TestJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"r1","n":%q,"e":%q},{"kty":"EC","kid":"e1","crv":"P-256","x":%q,"y":%q}]}`,
		b64(rsaKey.N.Bytes()), b64(big.NewInt(int64(rsaKey.E)).Bytes()),
		b64(ecKey.X.FillBytes(make([]byte, 32))), b64(ecKey.Y.FillBytes(make([]byte, 32))))
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := gateway.LoadJWKS(file)
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.Auth = gateway.AuthConfig{JWKS: keys} })
	sign := func(m jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims{"sub": "dora", "exp": time.Now().Add(time.Hour).Unix()})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name, tok string
		want      int
	}{
		{"RS256, kid r1", sign(jwt.SigningMethodRS256, "r1", rsaKey), 101},
		{"ES256, kid e1", sign(jwt.SigningMethodES256, "e1", ecKey), 101},
		{"unknown kid", sign(jwt.SigningMethodRS256, "zz", rsaKey), 401},
		{"no kid with two keys", sign(jwt.SigningMethodRS256, "", rsaKey), 401},
		{"RS256 under the EC key's kid", sign(jwt.SigningMethodRS256, "e1", rsaKey), 401},
		{"HS256", sign(jwt.SigningMethodHS256, "r1", testSecret), 401},
	} {
		if _, st := dialAuth(t, c.Gateway().Addr(), "/ws/?token="+tc.tok, nil, nil); st != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, st, tc.want)
		}
	}
}
