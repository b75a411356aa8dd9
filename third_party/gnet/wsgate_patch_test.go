//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestConnSize (wsgate patch): every idle client of a gateway costs a
// conn; the patch (connAddrs, proto as a byte) keeps it in the 208-byte
// size class. A new field must fit, or the patch's note in
// README.wsgate.md must say what it costs.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 208 {
		t.Fatalf("conn is %d bytes, over the 208-byte size class", n)
	}
}

// TestConnAddrs (wsgate patch): an accepted conn reports its listener's
// local address and a remote address made from its sockaddr; a dialled
// one the addresses it was given; a released one none.
func TestConnAddrs(t *testing.T) {
	// Built through the same constructors as the acceptor and the dialler,
	// without sockets: addresses are all these read.
	ln := &listener{network: "tcp", address: "127.0.0.1:0"}
	if err := ln.open(); err != nil {
		t.Fatal(err)
	}
	defer ln.close()
	el := &eventloop{engine: &engine{opts: &Options{}}, listeners: map[int]*listener{ln.fd: ln}}
	sa := &unix.SockaddrInet4{Port: 4242, Addr: [4]byte{127, 0, 0, 9}}
	c := newStreamConn("tcp", -1, el, sa, ln.acceptedAddrs())
	if got := c.LocalAddr(); got == nil || got.String() != ln.addr.String() {
		t.Fatalf("accepted LocalAddr %v, want %v", got, ln.addr)
	}
	if got := c.RemoteAddr(); got == nil || got.String() != "127.0.0.9:4242" {
		t.Fatalf("accepted RemoteAddr %v, want 127.0.0.9:4242", got)
	}
	if c.proto != protoTCP {
		t.Fatalf("proto %d, want protoTCP", c.proto)
	}
	c.release()
	if c.LocalAddr() != nil || c.RemoteAddr() != nil {
		t.Fatalf("released conn still has addresses %v %v", c.LocalAddr(), c.RemoteAddr())
	}
	if ln.accepted.local == nil {
		t.Fatal("releasing an accepted conn cleared its listener's shared address")
	}
}

// TestFDTable (wsgate patch): connections are found by descriptor in one
// table shared by every loop; a loop finds only its own, a stale conn
// cannot remove the one that reuses its descriptor, and the table grows
// for large descriptors.
func TestFDTable(t *testing.T) {
	a, b := &eventloop{}, &eventloop{}
	const fd = 1<<20 + 7 // in a chunk of its own
	ca := &conn{fd: fd, loop: a}
	a.connections.addConn(ca, 0)
	if a.connections.getConn(fd) != ca || b.connections.getConn(fd) != nil {
		t.Fatal("a conn found by its own loop only: failed")
	}
	a.connections.delConn(ca)
	cb := &conn{fd: fd, loop: b} // the descriptor reused by another loop
	b.connections.addConn(cb, 1)
	if a.connections.getConn(fd) != nil || b.connections.getConn(fd) != cb {
		t.Fatal("the reused descriptor's conn is not b's alone")
	}
	a.connections.delConn(ca) // stale: must not remove b's
	if b.connections.getConn(fd) != cb || a.connections.loadCount() != 0 || b.connections.loadCount() != 1 {
		t.Fatalf("a stale delConn disturbed b: conn %p, counts %d %d", b.connections.getConn(fd), a.connections.loadCount(), b.connections.loadCount())
	}
	var seen []*conn
	b.connections.iterate(func(c *conn) bool { seen = append(seen, c); return true })
	if len(seen) != 1 || seen[0] != cb {
		t.Fatalf("b iterates %v, want only its conn", seen)
	}
	b.connections.delConn(cb)
	if b.connections.getConn(fd) != nil || b.connections.getConn(-1) != nil || b.connections.getConn(1<<30) != nil {
		t.Fatal("removed, negative or never-seen descriptors found a conn")
	}
}

// BenchmarkGetConn (wsgate patch): the descriptor lookup on every event,
// over 16,384 conns of one loop.
func BenchmarkGetConn(b *testing.B) {
	el := &eventloop{}
	const n = 1 << 14
	for fd := 100; fd < 100+n; fd++ {
		el.connections.addConn(&conn{fd: fd, loop: el}, 0)
	}
	b.ReportAllocs()
	fd := 100
	for b.Loop() {
		if el.connections.getConn(fd) == nil {
			b.Fatal("missing")
		}
		if fd++; fd == 100+n {
			fd = 100
		}
	}
}
