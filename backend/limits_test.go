package backend_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wire"
)

func TestLimitConfigValidation(t *testing.T) {
	h := newRecorder(t)
	for _, tt := range []struct {
		cfg  backend.Config
		want []string
	}{
		{backend.Config{ID: "a", Listen: ":0", MaxLinks: -1, MaxPendingLinks: -1, MaxLinkReassembly: -1},
			[]string{"Config.MaxLinks", "Config.MaxPendingLinks", "Config.MaxLinkReassembly"}},
		{backend.Config{ID: "a", Listen: ":0", MaxLinkReassembly: 1 << 20}, // under the default MaxMessage
			[]string{"Config.MaxLinkReassembly 1048576 must be at least MaxMessage 16777216"}},
		{backend.Config{ID: "a", Listen: ":0", MaxMessage: 2000, MaxLinkReassembly: 1000},
			[]string{"Config.MaxLinkReassembly 1000 must be at least MaxMessage 2000"}},
	} {
		_, err := backend.NewNode(tt.cfg, h)
		if err == nil {
			t.Errorf("NewNode(%+v): no error", tt.cfg)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("NewNode error %q does not mention %q", err, w)
			}
		}
	}
	// A MaxMessage over the default reassembly budget raises the default.
	if _, err := backend.NewNode(backend.Config{ID: "a", Listen: ":0", MaxMessage: 100 << 20}, h); err != nil {
		t.Fatal(err)
	}
}

// stat polls n.Stats until check passes.
func stat(t *testing.T, n *backend.Node, check func(backend.Stats) error) {
	t.Helper()
	eventually(t, func() error { return check(n.Stats()) })
}

// echo checks that session id (opened by the caller) echoes on g.
func echo(t *testing.T, g *gwtest.Conn, id uint32, text string) {
	t.Helper()
	g.Message(id, false, []byte(text), 0)
	if m := g.ReadMessage(id); string(m.Data) != text {
		t.Fatalf("session %d: echo %q, want %q", id, m.Data, text)
	}
}

// expectRefused checks that the node closed c without sending anything.
func expectRefused(t *testing.T, c *gwtest.Conn) {
	t.Helper()
	if frames := c.ExpectEOF(); len(frames) != 0 {
		t.Fatalf("refused connection got frames %v", frames)
	}
}

// TestMaxLinks: with MaxLinks links held (one still in its handshake), the
// next connection is closed at once and counted; the others keep working
// and a freed slot is reused.
func TestMaxLinks(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) {
		c.MaxLinks = 3
		c.HelloTimeout = time.Minute // a refusal below is not a handshake timeout
	})
	g1 := gwtest.Dial(t, n.Addr(), "gw-1")
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	half := gwtest.DialRaw(t, n.Addr()) // in the handshake: counts too
	stat(t, n, func(st backend.Stats) error {
		if st.Links != 3 || st.LinksPending != 1 {
			return fmt.Errorf("Links %d, pending %d", st.Links, st.LinksPending)
		}
		return nil
	})

	expectRefused(t, gwtest.DialRaw(t, n.Addr()))
	expectRefused(t, gwtest.DialRaw(t, n.Addr()))
	if st := n.Stats(); st.LinksRejected != (backend.LinksRejected{MaxLinks: 2}) || st.Links != 3 {
		t.Fatalf("Stats %+v", st)
	}
	if got := n.Stats().LinksRejected.ByReason(); got["max_links"] != 2 || len(got) != 7 {
		t.Fatalf("ByReason %v", got)
	}

	// The links held keep working, the one in its handshake included.
	g1.Open(1, "u1", "/ws")
	g2.Open(1, "u2", "/ws")
	echo(t, g1, 1, "one")
	echo(t, g2, 1, "two")
	half.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "gw-3"}))
	half.Expect(wire.TypeHello, 0)
	half.Open(1, "u3", "/ws")
	echo(t, half, 1, "three")

	// A link that goes away frees its slot.
	_ = g2.C.Close()
	stat(t, n, func(st backend.Stats) error {
		if st.Links != 2 {
			return fmt.Errorf("Links %d", st.Links)
		}
		return nil
	})
	g4 := gwtest.Dial(t, n.Addr(), "gw-4")
	g4.Open(1, "u4", "/ws")
	echo(t, g4, 1, "four")
}

// TestMaxPendingLinks: connections that send nothing hold handshake slots;
// beyond MaxPendingLinks the next connection is closed at once and counted,
// while established links are not affected and finished handshakes free
// their slot.
func TestMaxPendingLinks(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) {
		c.MaxPendingLinks = 2
		c.HelloTimeout = time.Minute
	})
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws")
	silent1 := gwtest.DialRaw(t, n.Addr())
	_ = gwtest.DialRaw(t, n.Addr())
	stat(t, n, func(st backend.Stats) error {
		if st.Links != 3 || st.LinksPending != 2 {
			return fmt.Errorf("Links %d, pending %d", st.Links, st.LinksPending)
		}
		return nil
	})
	expectRefused(t, gwtest.DialRaw(t, n.Addr()))
	if st := n.Stats(); st.LinksRejected != (backend.LinksRejected{MaxPending: 1}) {
		t.Fatalf("LinksRejected %+v", st.LinksRejected)
	}
	echo(t, g, 1, "still served")

	// One silent peer finishes its handshake: its slot is free, and a
	// whole handshake fits in it (repeatedly).
	silent1.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "late"}))
	silent1.Expect(wire.TypeHello, 0)
	for i := range 3 {
		gi := gwtest.Dial(t, n.Addr(), fmt.Sprintf("gw-%d", i+2))
		gi.Open(1, "u", "/ws")
		echo(t, gi, 1, "new")
	}
	stat(t, n, func(st backend.Stats) error {
		if st.Links != 6 || st.LinksPending != 1 || st.LinksRejected.MaxPending != 1 {
			return fmt.Errorf("Links %d, pending %d, rejected %+v", st.Links, st.LinksPending, st.LinksRejected)
		}
		return nil
	})
}

// TestHelloTimeout: HelloTimeout bounds the whole handshake, for a peer
// that sends nothing and for one that trickles a Hello slowly enough to
// finish only after it; both are counted, and so are bad Hellos.
func TestHelloTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n := startNode(t, newRecorder(t), func(c *backend.Config) { c.HelloTimeout = timeout })

	start := time.Now()
	expectRefused(t, gwtest.DialRaw(t, n.Addr()))
	if d := time.Since(start); d < timeout {
		t.Fatalf("silent peer closed after %v, before HelloTimeout", d)
	}

	// One byte every 25 ms: the 30-byte Hello would be complete after
	// 750 ms if each byte extended the deadline.
	hello := wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: "gw-trickle!"})
	trickle := gwtest.DialRaw(t, n.Addr())
	done := make(chan int)
	go func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		sent := 0
		for ; sent < len(hello); sent++ {
			if _, err := trickle.C.Write(hello[sent : sent+1]); err != nil {
				break
			}
			<-tick.C
		}
		done <- sent
	}()
	start = time.Now()
	expectRefused(t, trickle)
	if d := time.Since(start); d < timeout-25*time.Millisecond {
		t.Fatalf("trickling peer closed after %v, before HelloTimeout", d)
	}
	if sent := <-done; sent == len(hello) {
		t.Fatalf("the whole Hello was sent before the node closed the link")
	}

	// A bad first frame is answered with an Error frame and counted.
	bad := gwtest.DialRaw(t, n.Addr())
	bad.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if frames := bad.ExpectEOF(); len(frames) != 1 || frames[0].Type != wire.TypeError {
		t.Fatalf("frames %v", frames)
	}
	stat(t, n, func(st backend.Stats) error {
		if want := (backend.LinksRejected{HelloTimeout: 2, BadHello: 1}); st.LinksRejected != want || st.Links != 0 || st.LinksPending != 0 {
			return fmt.Errorf("Links %d, pending %d, LinksRejected %+v, want %+v", st.Links, st.LinksPending, st.LinksRejected, want)
		}
		return nil
	})
	// A peer that connects and leaves is not a rejection.
	c, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	g := gwtest.Dial(t, n.Addr(), "gw-1") // after the one that left: accept order
	g.Open(1, "u1", "/ws")
	echo(t, g, 1, "ok")
	stat(t, n, func(st backend.Stats) error {
		if st.Links != 1 || st.LinksPending != 0 {
			return fmt.Errorf("Links %d, pending %d", st.Links, st.LinksPending)
		}
		return nil
	})
	if st := n.Stats(); st.LinksRejected != (backend.LinksRejected{HelloTimeout: 2, BadHello: 1}) {
		t.Fatalf("LinksRejected %+v", st.LinksRejected)
	}
}

// TestLinkReassemblyLimit: half-sent fragmented messages on many sessions
// of one link cannot hold more than MaxLinkReassembly: the session whose
// fragment does not fit is closed with 1013 (the link and the other
// sessions go on), after buffers of ended and idle sessions are reclaimed.
func TestLinkReassemblyLimit(t *testing.T) {
	const kb = 1 << 10
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) {
		c.MaxMessage = 128 * kb
		c.MaxLinkReassembly = 256 * kb
	})
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	part := bytes.Repeat([]byte("p"), 60*kb)
	first := func(id uint32) []byte { return wire.AppendFrame(nil, wire.TypeMessage, wire.FlagMore, id, part) }
	last := func(id uint32, data []byte) []byte {
		return wire.AppendFrame(nil, wire.TypeMessage, wire.FlagContinuation, id, data)
	}
	for id := uint32(1); id <= 20; id++ {
		g.Open(id, fmt.Sprintf("u%d", id), "/ws")
	}
	// 4 x 60 KiB fit in 256 KiB; sessions 5 and 6 are closed.
	for id := uint32(1); id <= 6; id++ {
		g.Write(first(id))
	}
	g.Push(1, "barrier", nil)
	for _, id := range []uint32{5, 6} {
		if code, reason := g.ExpectClose(id); code != 1013 || reason != "link reassembly limit" {
			t.Fatalf("session %d: Close %d %q", id, code, reason)
		}
	}
	g.Expect(wire.TypePushResult, 1)
	closes := r.waitCloses(t, 2)
	for _, c := range closes {
		if c.code != 1013 || c.reason != "link reassembly limit" {
			t.Fatalf("OnClose %+v", c)
		}
	}
	if st := n.Stats(); st.SessionsReassemblyShed != 2 || st.Links != 1 {
		t.Fatalf("Stats %+v", st)
	}

	// The link goes on: whole messages, and the partial ones complete
	// (session 1's buffer ends over 64 KiB and is released: 180 KiB held).
	echo(t, g, 7, "whole")
	g.Write(last(1, []byte("-end")))
	if m := g.ReadMessage(1); len(m.Data) != 60*kb+4 || !bytes.HasSuffix(m.Data, []byte("p-end")) {
		t.Fatalf("session 1: %d bytes", len(m.Data))
	}

	// Idle buffers are kept between messages, but reclaimed when room is
	// short: session 11's 40 KiB message leaves a 40 KiB buffer (220 KiB
	// held); session 8's fragment needs it.
	g.Message(11, true, part[:40*kb], 20*kb)
	if m := g.ReadMessage(11); len(m.Data) != 40*kb {
		t.Fatalf("session 11: %d bytes", len(m.Data))
	}
	g.Write(first(8))
	if f := barrier(t, g, 2); f.Type != wire.TypePushResult {
		t.Fatalf("after session 8's fragment: got %v session %d, want PushResult", f.Type, f.Session)
	}

	// So are the buffers of sessions that ended: the service closes
	// session 2 (its half message is stranded), then session 9 needs room.
	if err := r.session(t, 2).Close(4000, "bye"); err != nil {
		t.Fatal(err)
	}
	if code, _ := g.ExpectClose(2); code != 4000 {
		t.Fatalf("Close code %d", code)
	}
	g.Write(first(9))
	if f := barrier(t, g, 3); f.Type != wire.TypePushResult {
		t.Fatalf("after session 9's fragment: got %v session %d, want PushResult", f.Type, f.Session)
	}
	for _, id := range []uint32{3, 4, 8, 9} {
		g.Write(last(id, []byte("x")))
		if m := g.ReadMessage(id); len(m.Data) != 60*kb+1 {
			t.Fatalf("session %d: %d bytes", id, len(m.Data))
		}
	}
	if st := n.Stats(); st.SessionsReassemblyShed != 2 {
		t.Fatalf("SessionsReassemblyShed %d", st.SessionsReassemblyShed)
	}
	// Sessions closed for the limit stay closed; others still echo.
	s5 := r.session(t, 5)
	if err := s5.Send(false, []byte("x")); !errors.Is(err, backend.ErrSessionClosed) {
		t.Fatalf("Send on a shed session: %v", err)
	}
	echo(t, g, 12, "bye")
}

// TestMaxPendingPerSource: silent connections from one address hold at
// most MaxPendingLinksPerSource handshake slots; the next from that
// address is closed at once, and a gateway from elsewhere still gets in
// (a few idle sockets from one host once locked every gateway out).
func TestMaxPendingPerSource(t *testing.T) {
	n := startNode(t, newRecorder(t), nil)
	from := func(ip net.IP) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	attacker := net.IPv4(127, 0, 4, 9)
	for range backend.MaxPendingLinksPerSource {
		from(attacker)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if p := n.Stats().LinksPending; p != backend.MaxPendingLinksPerSource {
			return fmt.Errorf("%d pending", p)
		}
		return nil
	})
	extra := from(attacker)
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the per-source limit was not closed")
	}
	if n.Stats().LinksRejected.MaxPending != 1 {
		t.Fatalf("MaxPending rejections %d, want 1", n.Stats().LinksRejected.MaxPending)
	}
	g := gwtest.Dial(t, n.Addr(), "gw-genuine") // from 127.0.0.1
	g.Open(1, "u", "/ws")
	g.Message(1, false, []byte("hi"), 0)
	if m := g.ReadMessage(1); string(m.Data) != "hi" {
		t.Fatalf("genuine gateway: %q", m.Data)
	}
}
