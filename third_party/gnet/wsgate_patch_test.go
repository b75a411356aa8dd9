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
