//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"net"
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

// TestConnRemoteInline (wsgate patch): a stream conn keeps an IPv4 peer in
// its own fields, not in a sockaddr it holds for life, and reports it as
// upstream did (a 4-byte IP); an IPv6 peer keeps its sockaddr.
func TestConnRemoteInline(t *testing.T) {
	el := &eventloop{engine: &engine{opts: &Options{}}}
	c := newStreamConn("tcp", -1, el, &unix.SockaddrInet4{Port: 4242, Addr: [4]byte{127, 0, 0, 9}}, &connAddrs{})
	if c.remote != nil {
		t.Fatalf("IPv4 peer held as %T", c.remote)
	}
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok || ra.String() != "127.0.0.9:4242" || len(ra.IP) != 4 {
		t.Fatalf("RemoteAddr %#v, want 127.0.0.9:4242 with a 4-byte IP", c.RemoteAddr())
	}
	ra.IP[3] = 1 // a caller's copy: the conn's peer is unchanged
	if got := c.RemoteAddr().String(); got != "127.0.0.9:4242" {
		t.Fatalf("RemoteAddr after a caller changed its copy: %s", got)
	}
	c.release()
	if c.RemoteAddr() != nil {
		t.Fatalf("released conn still has a remote address %v", c.RemoteAddr())
	}
	c6 := newStreamConn("tcp", -1, el, &unix.SockaddrInet6{Port: 443, Addr: [16]byte{15: 1}}, &connAddrs{})
	if got := c6.RemoteAddr(); got == nil || got.String() != "[::1]:443" {
		t.Fatalf("IPv6 RemoteAddr %v, want [::1]:443", got)
	}
}
