package gateway_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
)

// linkPKI is a certificate, its key and a CA file that trusts it: a
// self-signed certificate is its own CA, so one pair serves both ends of
// a test cluster.
type linkPKI struct{ cert, key, ca string }

func newLinkPKI(t *testing.T) linkPKI {
	certFile, keyFile, _ := tlsFiles(t, t.TempDir())
	return linkPKI{certFile, keyFile, certFile}
}

// startTLSBackend starts a demo backend whose link listener needs mutual
// TLS with pki (nil tlsCfg: plain).
func startTLSBackend(t *testing.T, pki *linkPKI) *backend.Node {
	t.Helper()
	var cfg *tls.Config
	if pki != nil {
		var err error
		if cfg, err = backend.LinkTLSConfig(pki.cert, pki.key, pki.ca); err != nil {
			t.Fatal(err)
		}
	}
	return startDemoNode(t, backend.Config{ID: "b", Listen: "127.0.0.1:0", TLS: cfg, HelloTimeout: time.Second})
}

// startLinkTLSGateway starts a gateway with one static backend at addr,
// its links under mutual TLS with pki (nil: plain).
func startLinkTLSGateway(t *testing.T, addr string, pki *linkPKI) *gateway.Gateway {
	t.Helper()
	src, err := membership.NewStatic([]membership.Node{{ID: "b", Addr: addr}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: src,
		LinkRetry: 100 * time.Millisecond, Logger: testLogger()}
	if pki != nil {
		cfg.LinkTLSCert, cfg.LinkTLSKey, cfg.LinkTLSCA = pki.cert, pki.key, pki.ca
	}
	g := runGateway(t, cfg)
	return g
}

// TestLinkMutualTLS: with the same CA on both ends, sessions cross the TLS
// link both ways, large messages included.
func TestLinkMutualTLS(t *testing.T) {
	pki := newLinkPKI(t)
	n := startTLSBackend(t, &pki)
	g := startLinkTLSGateway(t, n.Addr(), &pki)
	ws, err := dialErr(g.Addr(), "/ws/alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)
	big := bytes.Repeat([]byte("abcdefgh"), 200_000) // 1.6 MB: many TLS records, several wire fragments
	for _, msg := range [][]byte{[]byte("over mTLS"), big} {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	for i := range 100 {
		if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
	}
}

// TestLinkTLSRefusals attacks both ends: a gateway without a certificate
// of the CA, a plain gateway, and a backend with a foreign certificate are
// each refused before any session frame, and counted; the clients get 1013.
func TestLinkTLSRefusals(t *testing.T) {
	pki, other := newLinkPKI(t), newLinkPKI(t)

	// The backend refuses a gateway that shows a foreign certificate (it
	// trusts the backend), and one that speaks plain TCP.
	for name, gw := range map[string]*linkPKI{
		"backend refuses a foreign gateway certificate": {other.cert, other.key, pki.ca},
		"backend refuses a plain gateway":               nil,
	} {
		t.Run(name, func(t *testing.T) {
			n := startTLSBackend(t, &pki)
			expectTryAgain(t, startLinkTLSGateway(t, n.Addr(), gw))
			testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				if r := n.Stats().LinksRejected.BadTLS; r < 1 {
					return fmt.Errorf("backend bad_tls = %d", r)
				}
				return nil
			})
			if s := n.SessionCount(); s != 0 {
				t.Errorf("the backend took %d sessions from an unauthenticated gateway", s)
			}
		})
	}
	t.Run("gateway refuses a foreign backend certificate", func(t *testing.T) {
		n := startTLSBackend(t, &linkPKI{other.cert, other.key, pki.ca}) // trusts the gateway, shows a foreign cert
		g := startLinkTLSGateway(t, n.Addr(), &pki)
		expectTryAgain(t, g)
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if f := testutil.Metric(t, g.AdminAddr(), `wsgate_gateway_link_auth_failures_total{node="b"}`); f < 1 {
				return fmt.Errorf("link_auth_failures_total = %v", f)
			}
			return nil
		})
		if s := n.SessionCount(); s != 0 {
			t.Errorf("the foreign backend got %d sessions", s)
		}
	})
	t.Run("config errors name the flags", func(t *testing.T) {
		for _, c := range []gateway.Config{
			{LinkTLSCert: pki.cert},
			{LinkTLSCert: pki.cert, LinkTLSKey: other.key, LinkTLSCA: pki.ca},
			{LinkTLSCert: pki.cert, LinkTLSKey: pki.key, LinkTLSCA: "/nonexistent"},
		} {
			c.Members = staticMembers(t)
			_, err := gateway.New(c)
			var ce *gateway.ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--link-tls-") {
				t.Errorf("%+v: %v, want a ConfigError naming a --link-tls flag", c, err)
			}
		}
		if _, err := backend.LinkTLSConfig(pki.cert, "", ""); err == nil || !strings.Contains(err.Error(), "--link-tls-") {
			t.Errorf("backend.LinkTLSConfig with a missing file: %v", err)
		}
	})
}

// expectTryAgain connects a client to g and expects it refused without
// a welcome: answered 503 (the control link failed first and took the
// node off the ring), or closed with 1013 (its data link could not be
// made), 1011 (under TLS 1.3 the backend refuses the gateway's
// certificate after the gateway's side of the handshake is done: the link
// drops at its first frame) or 1012 (the node left the ring meanwhile).
func expectTryAgain(t *testing.T, g *gateway.Gateway) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+g.Addr()+"/ws/alice", nil)
	if resp != nil && resp.StatusCode == 503 {
		return
	}
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || (ce.Code != websocket.CloseTryAgainLater && ce.Code != websocket.CloseInternalServerErr && ce.Code != websocket.CloseServiceRestart) {
		t.Fatalf("client got %q, %v; want no welcome and close 1011, 1012 or 1013", msg, err)
	}
}
