package backend_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/wire"
)

// counter is a Migrator: it answers each message with the session's count
// of messages so far, a state that must survive a migration.
type counter struct {
	node    *backend.Node
	mu      sync.Mutex
	counts  map[*backend.Session]int
	events  chan string
	exports [][]byte // what Export returns, in turn (nil: the count)
}

func newCounter() *counter {
	return &counter{counts: map[*backend.Session]int{}, events: make(chan string, 64)}
}

func (c *counter) OnOpen(s *backend.Session) { c.events <- "open " + s.Key() }
func (c *counter) OnMessage(s *backend.Session, _ bool, _ []byte) {
	c.mu.Lock()
	c.counts[s]++
	n := c.counts[s]
	c.mu.Unlock()
	_ = s.Send(false, strconv.AppendInt(nil, int64(n), 10))
}
func (c *counter) OnClose(s *backend.Session, code uint16, reason string) {
	c.events <- "close " + s.Key() + " " + strconv.Itoa(int(code)) + " " + reason
}
func (c *counter) OnPush(key string, data []byte) int { return c.node.SendToKey(key, false, data) }
func (c *counter) Export(s *backend.Session) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.exports) > 0 {
		e := c.exports[0]
		c.exports = c.exports[1:]
		return e
	}
	return strconv.AppendInt(nil, int64(c.counts[s]), 10)
}
func (c *counter) Resume(s *backend.Session, state []byte, lost bool) {
	n, _ := strconv.Atoi(string(state))
	c.mu.Lock()
	c.counts[s] = n
	c.mu.Unlock()
	c.events <- "resume " + s.Key() + " " + string(state) + " lost=" + strconv.FormatBool(lost)
}

func (c *counter) expect(t *testing.T, want string) {
	t.Helper()
	if got := <-c.events; got != want {
		t.Fatalf("handler event %q, want %q", got, want)
	}
}

func startCounter(t *testing.T, id string) (*counter, *backend.Node) {
	c := newCounter()
	n := startNode(t, c, func(cfg *backend.Config) { cfg.ID = id })
	c.node = n
	return c, n
}

// TestMigrateSession moves a session from node a to node b as the gateway
// does (docs/protocol.md 4.10): Resume Open on b (Ready), Handover on a
// (State with the exported count, OnClose 1012 there), State on b (Resume
// with the count). A push on b during the move reaches the arriving
// session, and the count goes on where it stopped.
func TestMigrateSession(t *testing.T) {
	ca, na := startCounter(t, "node-a")
	cb, nb := startCounter(t, "node-b")
	ga := gwtest.DialFlags(t, na.Addr(), "gw-1", wire.FlagMigrate)
	gb := gwtest.DialFlags(t, nb.Addr(), "gw-1", wire.FlagMigrate)
	if ga.Hello.Flags&wire.FlagMigrate == 0 {
		t.Fatalf("node Hello flags %#x: no FlagMigrate", ga.Hello.Flags)
	}
	ga.Open(7, "u1", "/ws/u1?counter=1")
	ca.expect(t, "open u1")
	for i := 1; i <= 3; i++ {
		ga.Message(7, false, []byte("m"), 0)
		if got := string(ga.ReadMessage(7).Data); got != strconv.Itoa(i) {
			t.Fatalf("reply %q, want %d", got, i)
		}
	}

	// The arriving session: registered and Ready, the handler not told. A
	// push to its key reaches nobody and is answered "moving" (the gateway
	// tries it again once the session has landed).
	gb.Write(resumeOpen(9, "u1"))
	gb.Expect(wire.TypeReady, 9)
	if n := nb.SendToKey("u1", false, []byte("push")); n != 0 {
		t.Fatalf("SendToKey reached %d sessions of an arriving key, want 0", n)
	}
	gb.Push(1, "u1", []byte("push"))
	if f := gb.Expect(wire.TypePushResult, 1); f.Flags != wire.FlagMoving || string(f.Body) != "\x00\x00\x00\x00" {
		t.Fatalf("PushResult flags %#x body %q, want FlagMoving, 0", f.Flags, f.Body)
	}
	gb.Push(2, "u9", []byte("push"))
	if f := gb.Expect(wire.TypePushResult, 2); f.Flags != 0 {
		t.Fatalf("PushResult for a key that is not moving: flags %#x", f.Flags)
	}

	// The handover: State after the last reply, the old session ended.
	ga.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, 7, nil))
	if f := ga.Expect(wire.TypeState, 7); string(f.Body) != "3" || f.Flags != 0 {
		t.Fatalf("State flags %#x body %q, want the count 3", f.Flags, f.Body)
	}
	ca.expect(t, "close u1 1012 session migrated")
	ga.Push(1, "u1", []byte("push"))
	if got := ga.Next(); got.Type != wire.TypePushResult || got.Flags != wire.FlagMoving {
		t.Fatalf("after State: %v flags %#x, want nothing more for the session, and a push answered moving", got.Type, got.Flags)
	}

	gb.Write(wire.AppendFrame(nil, wire.TypeState, 0, 9, []byte("3")))
	cb.expect(t, "resume u1 3 lost=false")
	if n := nb.SendToKey("u1", false, []byte("push")); n != 1 {
		t.Fatalf("SendToKey reached %d sessions after the resume, want 1", n)
	}
	gb.Expect(wire.TypeSendKey, 0)
	gb.Message(9, false, []byte("m"), 0)
	if got := string(gb.ReadMessage(9).Data); got != "4" {
		t.Fatalf("first reply on the new node %q, want 4", got)
	}

	// The old node gone: the session resumes with lost set.
	gb.Write(resumeOpen(10, "u2"))
	gb.Expect(wire.TypeReady, 10)
	gb.Write(wire.AppendFrame(nil, wire.TypeState, wire.FlagLost, 10, nil))
	cb.expect(t, "resume u2  lost=true")

	// A client that leaves while it arrives: no handler call, no answer.
	gb.Write(resumeOpen(11, "u3"))
	gb.Expect(wire.TypeReady, 11)
	gb.Close(11, 1001, "")
	if got := barrier(t, gb, 3); got.Type != wire.TypePushResult {
		t.Fatalf("Close of an arriving session answered with %v", got.Type)
	}
	gb.Write(wire.AppendFrame(nil, wire.TypeState, 0, 11, []byte("5"))) // late: ignored
	if got := barrier(t, gb, 4); got.Type != wire.TypePushResult {
		t.Fatalf("State for a gone session answered with %v", got.Type)
	}
	select {
	case e := <-cb.events:
		t.Fatalf("handler heard of the session that left while arriving: %q", e)
	default:
	}
}

// TestMigrateExportTooBig: a state over wire.MaxState is not handed over;
// the State says lost.
func TestMigrateExportTooBig(t *testing.T) {
	ca, na := startCounter(t, "node-a")
	ca.exports = [][]byte{make([]byte, wire.MaxState+1)}
	ga := gwtest.DialFlags(t, na.Addr(), "gw-1", wire.FlagMigrate)
	ga.Open(7, "u1", "/")
	ca.expect(t, "open u1")
	ga.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, 7, nil))
	if f := ga.Expect(wire.TypeState, 7); f.Flags != wire.FlagLost || len(f.Body) != 0 {
		t.Fatalf("State flags %#x, %d bytes; want FlagLost and no body", f.Flags, len(f.Body))
	}
}

// TestMigrateProtocolErrors: migration frames are refused where the
// protocol forbids them, each with an Error frame that closes the link.
func TestMigrateProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags uint8 // the gateway's Hello flags
		send  func(g *gwtest.Conn)
	}{
		{"Handover without FlagMigrate", 0, func(g *gwtest.Conn) {
			g.Open(7, "u1", "/")
			g.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, 7, nil))
		}},
		{"resume Open without FlagMigrate", 0, func(g *gwtest.Conn) { g.Write(resumeOpen(7, "u1")) }},
		{"State without FlagMigrate", 0, func(g *gwtest.Conn) { g.Write(wire.AppendFrame(nil, wire.TypeState, 0, 7, nil)) }},
		{"Message before State", wire.FlagMigrate, func(g *gwtest.Conn) {
			g.Write(resumeOpen(7, "u1"))
			g.Message(7, false, []byte("early"), 0)
		}},
		{"State for an open session", wire.FlagMigrate, func(g *gwtest.Conn) {
			g.Open(7, "u1", "/")
			g.Write(wire.AppendFrame(nil, wire.TypeState, 0, 7, nil))
		}},
		{"State over MaxState", wire.FlagMigrate, func(g *gwtest.Conn) {
			g.Write(resumeOpen(7, "u1"))
			g.Write(wire.AppendFrame(nil, wire.TypeState, 0, 7, make([]byte, wire.MaxState+1)))
		}},
		{"State with unknown flags", wire.FlagMigrate, func(g *gwtest.Conn) {
			g.Write(resumeOpen(7, "u1"))
			g.Write(wire.AppendFrame(nil, wire.TypeState, 0x80, 7, nil))
		}},
		{"Handover in mid-message", wire.FlagMigrate, func(g *gwtest.Conn) {
			g.Open(7, "u1", "/")
			g.Write(wire.AppendFrame(nil, wire.TypeMessage, wire.FlagMore, 7, []byte("part")))
			g.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, 7, nil))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, n := startCounter(t, "node-a")
			g := gwtest.DialFlags(t, n.Addr(), "gw-1", tc.flags)
			tc.send(g)
			var errFrame *gwtest.Frame
			for _, f := range g.ExpectEOF() {
				if f.Type == wire.TypeError {
					errFrame = &f
				}
			}
			if errFrame == nil {
				t.Fatal("link closed without an Error frame")
			}
			if code, _ := gwtest.ParseError(t, *errFrame); code != wire.CodeProtocol {
				t.Fatalf("Error code %d, want %d (protocol)", code, wire.CodeProtocol)
			}
		})
	}
}

// resumeOpen is an Open with wire.FlagResume for key.
func resumeOpen(id uint32, key string) []byte {
	f := wire.AppendOpen(nil, id, false, []byte(key), []byte("192.0.2.1:4242"), []byte("/ws/"+key))
	f[5] |= wire.FlagResume
	return f
}

// TestHandoverOrdersPushes: a SendToKey racing a Handover either counts
// the session and queues its SendKey before the State (the gateway then
// delivers it), or does not count it; never a SendKey counted as delivered
// that comes after the State (the gateway, which moved the session to its
// new node by then, would drop it). From an independent review.
func TestHandoverOrdersPushes(t *testing.T) {
	c, n := startCounter(t, "node-a")
	g := gwtest.DialFlags(t, n.Addr(), "gw-1", wire.FlagMigrate)
	late := 0
	for i := uint32(1); i <= 100; i++ {
		g.Open(i, "u1", "/")
		c.expect(t, "open u1")
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				n.SendToKey("u1", false, []byte("p"))
			}
		}()
		g.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, i, nil))
		for f := g.Next(); f.Type != wire.TypeState; f = g.Next() {
		}
		c.expect(t, "close u1 1012 session migrated")
		stop.Store(true)
		wg.Wait()
		g.Push(i, "zz", nil) // a barrier: answered after everything queued before it
		for f := g.Next(); f.Type != wire.TypePushResult; f = g.Next() {
			if f.Type == wire.TypeSendKey {
				late++
			}
		}
	}
	if late > 0 {
		t.Errorf("%d SendKey frames for the handed-over session came after its State", late)
	}
}
