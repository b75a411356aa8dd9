package gateway

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIdleCloseUnread: a client silent for the idle timeout is closed, but
// not one whose input waits unread in its socket: there the loop is behind
// (starved cores, a broadcast to every client), not the client.
func TestIdleCloseUnread(t *testing.T) {
	l := testLoop(t, func(c *Config) { c.PingInterval, c.IdleTimeout = -1, time.Second })
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	busy, bc := openSession(l, "busy")
	bc.sock = pair[0]
	if _, err := unix.Write(pair[1], []byte{0x8a, 0x80, 1, 2, 3, 4}); err != nil { // a masked pong, not read yet
		t.Fatal(err)
	}
	silent, sc := openSession(l, "silent")
	l.g.ms.Store(max(busy.seen, silent.seen) + 2000) // both silent for 2 s
	l.walkSessions(l.g.walkPeriod())                 // one whole period: every session visited
	if busy.state != stOpen || bc.closed {
		t.Fatalf("client with unread input: state %d, closed %v; want it kept open", busy.state, bc.closed)
	}
	if silent.state == stOpen || len(sc.out) < 4 || sc.out[0] != 0x88 || int(sc.out[2])<<8|int(sc.out[3]) != 1001 {
		t.Fatalf("silent client: state %d, sent % x; want closed with 1001", silent.state, sc.out)
	}
}
