package gateway_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wire"
)

var linkSecret = []byte("link-secret-0123456789abcdefghij")

// startStaticGateway starts a gateway with one static backend at addr and
// the cluster secret.
func startStaticGateway(t *testing.T, node, addr string) *gateway.Gateway {
	t.Helper()
	src, err := membership.NewStatic([]membership.Node{{ID: node, Addr: addr}})
	if err != nil {
		t.Fatal(err)
	}
	g := runGateway(t, gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: src,
		ClusterSecret: linkSecret, LinkRetry: 100 * time.Millisecond, Logger: testLogger()})
	return g
}

// rogueBackend accepts links, answers the gateway's Hello as node id
// without proving the cluster secret (answer builds what follows the
// Hello), and records every frame type it receives.
type rogueBackend struct {
	ln  net.Listener
	mu  sync.Mutex
	got []wire.Type
}

func startRogue(t *testing.T, id string, pre []byte, answer func(gw wire.Hello, challenge []byte) []byte) *rogueBackend {
	r := &rogueBackend{}
	r.ln = serveTCP(t, func(c net.Conn) {
		defer c.Close()
		rd := wire.NewReader(c, wire.DefaultMaxBody)
		var gw wire.Hello
		var challenge []byte
		for {
			h, body, err := rd.ReadFrame()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, h.Type)
			r.mu.Unlock()
			switch h.Type {
			case wire.TypeHello:
				gw, _ = wire.ParseHello(body)
			case wire.TypeAuth:
				challenge = append([]byte(nil), body...)
				out := wire.AppendHello(append([]byte(nil), pre...), wire.Hello{Version: wire.Version, Role: wire.RoleBackend, MaxBody: wire.DefaultMaxBody, NodeID: id})
				_, _ = c.Write(append(out, answer(gw, challenge)...))
			}
		}
	})
	return r
}

func (r *rogueBackend) sawSessionFrame() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ty := range r.got {
		if ty == wire.TypeOpen || ty == wire.TypeMessage || ty == wire.TypePush {
			return true
		}
	}
	return false
}

// TestLinkAuthRogueBackend: a "backend" that cannot prove the cluster
// secret (no Auth, a forged one, or the wrong secret) never receives a
// client's Open or message; the client is closed and the failure counted.
func TestLinkAuthRogueBackend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pre    []byte // frames sent before its Hello
		answer func(gw wire.Hello, challenge []byte) []byte
	}{
		{"a broadcast before its Hello", wire.AppendFrame(nil, wire.TypeBroadcast, 0, 0, []byte("FORGED")), func(wire.Hello, []byte) []byte {
			return wire.AppendFrame(nil, wire.TypeBroadcast, 0, 0, []byte("FORGED"))
		}},
		{"no Auth (a Ping instead)", nil, func(wire.Hello, []byte) []byte {
			return wire.AppendPing(nil, [wire.PingSize]byte{})
		}},
		{"forged proof", nil, func(wire.Hello, []byte) []byte {
			return wire.AppendAuth(nil, wire.Auth{Step: wire.AuthResponse, Nonce: wire.NewNonce()})
		}},
		{"wrong secret", nil, func(gw wire.Hello, challenge []byte) []byte {
			ch, _ := wire.ParseAuth(challenge)
			nb := wire.NewNonce()
			return wire.AppendAuth(nil, wire.Auth{Step: wire.AuthResponse, Nonce: nb,
				MAC: wire.LinkMAC([]byte("some-other-secret-0123456789abcd"), wire.RoleBackend, gw.NodeID, "rogue", ch.Nonce, nb)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rogue := startRogue(t, "rogue", tc.pre, tc.answer)
			g := startStaticGateway(t, "rogue", rogue.ln.Addr().String())
			ws, err := dialErr(g.Addr(), "/ws/victim", nil)
			if err == nil {
				// Upgraded before the link failed: it must be closed, and
				// nothing it sends may reach the rogue.
				_ = ws.WriteMessage(1, []byte("secret data"))
				_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					_, m, err := ws.ReadMessage()
					if err != nil {
						break
					}
					if string(m) == "FORGED" {
						t.Fatal("a frame from the unauthenticated backend reached the client")
					}
				}
				ws.Close()
			}
			if rogue.sawSessionFrame() {
				t.Fatal("the unauthenticated backend received a session frame")
			}
			if tc.name == "forged proof" || tc.name == "wrong secret" {
				if n := metricSample(t, g, `wsgate_gateway_link_auth_failures_total{node="rogue"}`); n < 1 {
					t.Fatalf("link_auth_failures_total = %d", n)
				}
			}
		})
	}
}

// TestLinkAuthSecretMismatch: a real backend with another secret is
// refused by the gateway, and one with the same secret serves.
func TestLinkAuthSecretMismatch(t *testing.T) {
	start := func(secret []byte) *backend.Node {
		return startDemoNode(t, backend.Config{ID: "b", Listen: "127.0.0.1:0", ClusterSecret: secret})
	}
	bad := start([]byte("another-secret-0123456789abcdefg"))
	g := startStaticGateway(t, "b", bad.Addr())
	if ws, err := dialErr(g.Addr(), "/ws/u", nil); err == nil {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, m, err := ws.ReadMessage(); err == nil {
			t.Fatalf("client served through a backend with another secret: %q", m)
		}
		ws.Close()
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if bad.SessionCount() != 0 || bad.Stats().LinksRejected.BadAuth == 0 {
			return fmt.Errorf("backend with another secret: %d sessions, %d auth rejections", bad.SessionCount(), bad.Stats().LinksRejected.BadAuth)
		}
		return nil
	})
	if n := metricSample(t, g, `wsgate_gateway_link_auth_failures_total{node="b"}`); n < 1 {
		t.Fatalf("gateway link_auth_failures_total = %d", n)
	}

	good := start(linkSecret)
	g2 := startStaticGateway(t, "b", good.Addr())
	ws, err := dialErr(g2.Addr(), "/ws/u", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)
}
