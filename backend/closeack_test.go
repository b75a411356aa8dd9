package backend_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/wire"
)

// barrier sends a Push and returns the next frame that is not a Ping or a
// Pong: the node handles frames in link order and queues its answers in
// that order, so an answer the node owed for frames sent before the Push
// comes first, and the PushResult proves that none was owed.
func barrier(t *testing.T, g *gwtest.Conn, req uint32) gwtest.Frame {
	t.Helper()
	g.Push(req, "barrier", nil)
	return g.Next()
}

// TestCloseAck: the node announces FlagCloseAck and answers a gateway Close
// for an open session with a Close for it, after every reply it had queued
// for the session; Closes for unknown or already closed sessions get none.
func TestCloseAck(t *testing.T) {
	const replies = 40
	r := newRecorder(t)
	r.onMessage = func(s *backend.Session, binary bool, data []byte) {
		// Replies in several fragments each (FragmentSize 100 below).
		for i := range replies {
			if err := s.Send(false, fmt.Appendf(nil, "%s %d %s", data, i, strings.Repeat("r", 250))); err != nil {
				t.Errorf("Send: %v", err)
			}
		}
	}
	n := startNode(t, r, func(c *backend.Config) { c.FragmentSize = 100 })
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	if g.Hello.Flags != wire.FlagCloseAck|wire.FlagMigrate {
		t.Fatalf("node Hello flags %#x, want FlagCloseAck|FlagMigrate", g.Hello.Flags)
	}

	for i, tc := range []struct{ code, ack uint16 }{
		{1000, 1000}, {1001, 1001}, {4321, 4321},
		{1005, 1000}, {1006, 1000}, // not sendable on the WebSocket wire
	} {
		id := uint32(i + 1)
		g.Open(id, fmt.Sprintf("u%d", id), "/ws")
		// The gateway sends a message and, at once, the Close: the replies
		// the handler queued must all come before the acknowledgment.
		g.Write(gwtest.AppendMessage(nil, id, false, []byte("m"), 0), wire.AppendClose(nil, id, tc.code, []byte("bye")))
		for j := range replies {
			f := g.Next()
			if f.Type != wire.TypeMessage || f.Session != id {
				t.Fatalf("session %d, reply %d: got %v session %d, want Message", id, j, f.Type, f.Session)
			}
			for f.Flags&wire.FlagMore != 0 {
				if f = g.Expect(wire.TypeMessage, id); f.Flags&wire.FlagContinuation == 0 {
					t.Fatalf("session %d: fragment flags %#x", id, f.Flags)
				}
			}
		}
		if code, reason := g.ExpectClose(id); code != tc.ack || reason != "" {
			t.Fatalf("gateway Close %d: ack %d %q, want %d \"\"", tc.code, code, reason, tc.ack)
		}
		if c := r.waitCloses(t, int(id)); c[id-1] != (closeEvent{id, fmt.Sprintf("u%d", id), tc.code, "bye"}) {
			t.Fatalf("OnClose %+v", c[id-1])
		}
	}

	// Replies sent from another goroutine before the Close also come first.
	g.Open(10, "u10", "/ws")
	s := r.session(t, 10)
	for i := range 5 {
		if err := s.Send(true, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	g.Close(10, 1000, "")
	for i := range 5 {
		if m := g.ReadMessage(10); len(m.Data) != 1 || m.Data[0] != byte(i) {
			t.Fatalf("reply %d: %v", i, m.Data)
		}
	}
	if code, _ := g.ExpectClose(10); code != 1000 {
		t.Fatalf("ack code %d", code)
	}

	// No acknowledgment for a session that is not open: never opened,
	// already acknowledged, or closed by the service first (both sides
	// closed at once).
	g.Open(11, "u11", "/ws")
	s11 := r.session(t, 11)
	if err := s11.Close(4000, "kicked"); err != nil {
		t.Fatal(err)
	}
	if code, _ := g.ExpectClose(11); code != 4000 {
		t.Fatalf("Close code %d", code)
	}
	g.Close(99, 1000, "")
	g.Close(1, 1000, "")
	g.Close(11, 1000, "")
	if f := barrier(t, g, 7); f.Type != wire.TypePushResult || f.Session != 7 {
		t.Fatalf("got %v session %d, want PushResult 7 (no acknowledgment)", f.Type, f.Session)
	}
}

// TestHelloUnknownFlags: Hello flag bits the node does not know are
// ignored (docs/protocol.md 4.1), so a gateway may announce new ones.
func TestHelloUnknownFlags(t *testing.T) {
	n := startNode(t, newRecorder(t), nil)
	g := gwtest.DialRaw(t, n.Addr())
	g.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "gw-new", Flags: 0xff}))
	g.Expect(wire.TypeHello, 0)
	g.Open(1, "u1", "/ws")
	g.Message(1, false, []byte("hi"), 0)
	if m := g.ReadMessage(1); string(m.Data) != "hi" {
		t.Fatalf("echo %q", m.Data)
	}
}
