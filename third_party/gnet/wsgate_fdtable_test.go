//go:build (darwin || dragonfly || freebsd || linux || netbsd || openbsd) && !gc_opt

package gnet

import "testing"

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
	var conns []*conn
	for fd := 100; fd < 100+n; fd++ {
		c := &conn{fd: fd, loop: el}
		el.connections.addConn(c, 0)
		conns = append(conns, c)
	}
	b.Cleanup(func() { // the table is the process's: leave it as found
		for _, c := range conns {
			el.connections.delConn(c)
		}
	})
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
