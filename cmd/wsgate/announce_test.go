package main

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// plainServer starts `wsgate backend --ws-listen ws` as a stand-in for a
// WebSocket server that knows nothing of wsgate (it is in no cluster), and
// returns it with its address.
func plainServer(t *testing.T, id, ws string) (*proc, string) {
	t.Helper()
	p := start(t, "backend", "--id", id, "--listen", "127.0.0.1:0", "--admin", "-", "--ws-listen", ws)
	return p, p.waitLog(t, `plain websocket listening.* addr=(\S+)`)[1]
}

// TestAnnounceUpstream: `wsgate announce` makes a plain WebSocket server a
// member of a cluster beside a link-protocol backend: clients reach it
// through the gateway; when it stops answering the announcer takes it off
// every ring, and puts it back when it answers again; SIGTERM makes it
// leave.
func TestAnnounceUpstream(t *testing.T) {
	e := newClusterEnv(t)
	e.backend(t, "b1")
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port (--ws-listen takes no port 0)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	srv, addr := plainServer(t, "p1", ln.Addr().String())
	ann := start(t, append([]string{"announce", "--id", "p1", "--upstream", "ws://" + addr,
		"--heartbeat", heartbeatEvery, "--node-ttl", nodeTTL, "--health-interval", "100ms", "--health-timeout", "500ms"}, e.common()...)...)
	g := e.gateway(t)
	g.waitMembers(t, "b1,p1")

	// One client per node: the plain upstream serves its keys, the
	// link backend its own.
	keyOf := map[string]string{}
	for i := 0; len(keyOf) < 2 && i < 1000; i++ {
		k := fmt.Sprintf("user-%d", i)
		if o := g.owner(t, k); keyOf[o] == "" {
			keyOf[o] = k
		}
	}
	onPlain := connect(t, g, keyOf["p1"])
	onLink := connect(t, g, keyOf["b1"])
	if onPlain.node != "p1" || onLink.node != "b1" {
		t.Fatalf("welcomes from %s and %s, want p1 and b1", onPlain.node, onLink.node)
	}
	onPlain.echo(t, "to the plain server")
	onLink.echo(t, "to the link backend")

	// The server dies: its client is closed at once (1011), the
	// announcer's checks fail and it leaves; the key goes to b1.
	_ = srv.cmd.Process.Kill()
	_ = srv.cmd.Wait()
	onPlain.closedWith(t, 1011, "client of the dead upstream")
	ann.waitLog(t, `left the cluster`)
	g.waitMembers(t, "b1")
	moved := connect(t, g, keyOf["p1"])
	if moved.node != "b1" {
		t.Fatalf("key of the gone upstream went to %s, want b1", moved.node)
	}
	onLink.echo(t, "still served")

	// It answers again on the same address: it rejoins, and its key
	// moves back (1012).
	plainServer(t, "p1", addr)
	g.waitMembers(t, "b1,p1")
	moved.closedWith(t, 1012, "client of the key that moves back")
	if back := connect(t, g, keyOf["p1"]); back.node != "p1" {
		t.Fatalf("key went to %s after the rejoin, want p1", back.node)
	}

	// SIGTERM: the announcer leaves at once (not after the registry TTL).
	_ = ann.cmd.Process.Signal(syscall.SIGTERM)
	ann.waitLog(t, `left the cluster`)
	g.waitMembers(t, "b1")
	onLink.echo(t, "served throughout")
}

// closedWith waits up to 10 s for c to be closed with code.
func (c *wsClient) closedWith(t *testing.T, code int, who string) {
	t.Helper()
	select {
	case <-c.closed:
		if c.code != code {
			t.Fatalf("%s closed with %d, want %d", who, c.code, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still open, want it closed with %d", who, code)
	}
}
