package gateway

import (
	"io"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
)

// fakeConn stands in for a gnet.Conn in tests that drive a loop's callbacks
// directly: input comes from in, output is counted (and kept if keep).
type fakeConn struct {
	gnet.Conn
	in      []byte
	out     []byte
	written int
	keep    bool
	closed  bool
	sock    int // if > 0, the descriptor Fd returns (a socket whose unread bytes unread counts)
}

func (f *fakeConn) Fd() int {
	if f.sock > 0 {
		return f.sock
	}
	return -1
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 {
		n = len(f.in)
	}
	if n > len(f.in) {
		return nil, io.ErrShortBuffer
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	n = min(n, len(f.in))
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) InboundBuffered() int  { return len(f.in) }
func (f *fakeConn) OutboundBuffered() int { return 0 }
func (f *fakeConn) Close() error          { f.closed = true; return nil }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (f *fakeConn) Write(p []byte) (int, error) {
	f.written += len(p)
	if f.keep {
		f.out = append(f.out, p...)
	}
	return len(p), nil
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		m, _ := f.Write(b)
		n += m
	}
	return n, nil
}

// testLoop returns a loop of a gateway that is not started, with a ring of
// three nodes and an open fake link to each.
func testLoop(tb testing.TB, tune func(*Config)) *loop {
	tb.Helper()
	nodes := []membership.Node{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:2"}, {ID: "c", Addr: "127.0.0.1:3"}}
	src, _ := membership.NewStatic(nodes)
	cfg := Config{Members: src, Logger: nil}
	if tune != nil {
		tune(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := ring.New([]ring.Member{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:2"}, {ID: "c", Addr: "127.0.0.1:3"}})
	if err != nil {
		tb.Fatal(err)
	}
	g.ring.Store(r)
	l := newLoop(g, nil, 0)
	for _, n := range nodes {
		l.links[n.ID] = &link{loop: l, node: n.ID, addr: n.Addr, conn: &fakeConn{}, hello: true, chunk: maxChunk, clients: g.nodeClients(n.ID)}
	}
	arr := []*loop{l}
	g.loopArr.Store(&arr)
	return l
}

// openSession returns an open session on l for key, routed like a real one.
func openSession(l *loop, key string) (*session, *fakeConn) {
	c := &fakeConn{keep: true}
	s := &session{conn: c, loop: l, state: stOpen, key: key, id: l.newSessionID()}
	l.startLimits(s)
	l.sessions[s.id] = s
	k := l.links[l.g.ring.Load().LookupString(key).ID]
	s.link = k
	k.sessions++
	l.addKey(s)
	return s, c
}

// Wake is a no-op: tests call onTraffic themselves.
func (f *fakeConn) Wake(gnet.AsyncCallback) error { return nil }
