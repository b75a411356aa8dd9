package backend_test

import (
	"testing"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/wire"
)

var clusterSecret = []byte("cluster-secret-0123456789abcdef")

// authGateway does the gateway's side of the link authentication with
// secret and returns the link, the nonces and the backend's Auth answer.
func authGateway(t *testing.T, addr string, secret []byte, ng [wire.NonceSize]byte) (*gwtest.Conn, wire.Auth) {
	t.Helper()
	c := gwtest.DialRaw(t, addr)
	c.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "gw"}),
		wire.AppendAuth(nil, wire.Auth{Step: wire.AuthChallenge, Nonce: ng}))
	if f := c.NextRaw(); f.Type != wire.TypeHello {
		t.Fatalf("want the backend's Hello, got %v", f.Type)
	}
	f := c.NextRaw()
	if f.Type != wire.TypeAuth {
		t.Fatalf("want the backend's Auth, got %v", f.Type)
	}
	a, err := wire.ParseAuth(f.Body)
	if err != nil || a.Step != wire.AuthResponse {
		t.Fatalf("backend Auth %+v %v", a, err)
	}
	if !wire.CheckMAC(a.MAC, wire.LinkMAC(secret, wire.RoleBackend, "gw", "node-a", ng, a.Nonce)) {
		t.Fatal("the backend's proof does not verify")
	}
	return c, a
}

func TestLinkAuth(t *testing.T) {
	rec := newRecorder(t)
	n := startNode(t, rec, func(c *backend.Config) { c.ClusterSecret = clusterSecret })

	t.Run("mutual proof, then sessions", func(t *testing.T) {
		ng := wire.NewNonce()
		c, a := authGateway(t, n.Addr(), clusterSecret, ng)
		c.Write(wire.AppendAuth(nil, wire.Auth{Step: wire.AuthConfirm,
			MAC: wire.LinkMAC(clusterSecret, wire.RoleGateway, "gw", "node-a", ng, a.Nonce)}))
		c.Open(1, "alice", "/ws/alice")
		c.Message(1, false, []byte("hi"), 0)
		if m := c.ReadMessage(1); string(m.Data) != "hi" {
			t.Fatalf("echo %q", m.Data)
		}
	})

	// A gateway without the secret (or a script posing as one) never gets a
	// session frame in: each case is answered with an Error and closed,
	// and the Open it sent is not delivered to the application.
	opensBefore := func() int { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.opens) }
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) *gwtest.Conn
	}{
		{"no Auth at all: Hello then Open", func(t *testing.T) *gwtest.Conn {
			c := gwtest.DialRaw(t, n.Addr())
			c.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "gw"}))
			c.Open(7, "alice", "/ws/alice")
			return c
		}},
		{"wrong secret", func(t *testing.T) *gwtest.Conn {
			ng := wire.NewNonce()
			c, a := authGateway(t, n.Addr(), clusterSecret, ng)
			c.Write(wire.AppendAuth(nil, wire.Auth{Step: wire.AuthConfirm,
				MAC: wire.LinkMAC([]byte("not-the-secret-not-the-secret!!"), wire.RoleGateway, "gw", "node-a", ng, a.Nonce)}))
			c.Open(7, "alice", "/ws/alice")
			return c
		}},
		{"the backend's own proof sent back (reflection)", func(t *testing.T) *gwtest.Conn {
			c, a := authGateway(t, n.Addr(), clusterSecret, wire.NewNonce())
			c.Write(wire.AppendAuth(nil, wire.Auth{Step: wire.AuthConfirm, MAC: a.MAC}))
			c.Open(7, "alice", "/ws/alice")
			return c
		}},
		{"replay of a recorded confirmation", func(t *testing.T) *gwtest.Conn {
			// A first, valid exchange is recorded...
			ng := wire.NewNonce()
			c1, a1 := authGateway(t, n.Addr(), clusterSecret, ng)
			old := wire.AppendAuth(nil, wire.Auth{Step: wire.AuthConfirm,
				MAC: wire.LinkMAC(clusterSecret, wire.RoleGateway, "gw", "node-a", ng, a1.Nonce)})
			c1.Write(old)
			c1.C.Close()
			// ...and replayed with the same gateway nonce: the backend's new
			// nonce makes the old confirmation worthless.
			c, _ := authGateway(t, n.Addr(), clusterSecret, ng)
			c.Write(old)
			c.Open(7, "alice", "/ws/alice")
			return c
		}},
		{"Open before the confirmation", func(t *testing.T) *gwtest.Conn {
			c, _ := authGateway(t, n.Addr(), clusterSecret, wire.NewNonce())
			c.Open(7, "alice", "/ws/alice")
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, rejected := opensBefore(), n.Stats().LinksRejected.BadAuth
			c := tc.run(t)
			frames := c.ExpectEOF()
			if len(frames) == 0 || frames[len(frames)-1].Type != wire.TypeError {
				t.Fatalf("closed with frames %v, want an Error last", frames)
			}
			for _, f := range frames {
				if f.Session != 0 {
					t.Fatalf("a session frame came back: %v", f)
				}
			}
			if opensBefore() != before {
				t.Fatal("the application saw an Open from an unauthenticated link")
			}
			if n.Stats().LinksRejected.BadAuth != rejected+1 {
				t.Fatalf("BadAuth %d, want %d", n.Stats().LinksRejected.BadAuth, rejected+1)
			}
		})
	}
}
