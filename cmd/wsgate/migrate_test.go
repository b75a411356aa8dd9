package main

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/testutil"
)

// count sends one message and checks the demo counter's answer: the
// session's count goes on from want-1 (0 when its state was lost on the
// way). It returns the count and the node that answered.
func (c *wsClient) count(t *testing.T, want int) (int, string) {
	t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte("m")); err != nil {
		t.Fatalf("client %s write: %v", c.key, err)
	}
	var ev struct {
		Type     int
		Content  string
		ServerIP string
	}
	if err := json.Unmarshal([]byte(c.next(t)), &ev); err != nil || ev.Type != 3 {
		t.Fatalf("client %s: answer %+v %v, want a count", c.key, ev, err)
	}
	var n int
	if _, err := fmt.Sscanf(ev.Content, "%d:m", &n); err != nil || n != want {
		t.Fatalf("client %s: answer %q from %s, want count %d (a lost, repeated or reordered message, or lost state)", c.key, ev.Content, ev.ServerIP, want)
	}
	return n, ev.ServerIP
}

// TestClusterMigrate runs two gateway processes with --rebalance migrate
// and backend processes over the real Redis and RabbitMQ: a node joins,
// one leaves (SIGTERM) and one is killed (SIGKILL). No client is ever
// closed; every session's count goes on intact across the join and the
// leave, and starts again (its state lost) on a new node after the kill.
func TestClusterMigrate(t *testing.T) {
	e := newClusterEnv(t)
	backends := map[string]*proc{}
	for _, id := range []string{"b1", "b2", "b3"} {
		backends[id], _ = e.backendAt(t, id, "127.0.0.1:0")
	}
	g1, g2 := e.gateway(t, "--rebalance", "migrate"), e.gateway(t, "--rebalance", "migrate")
	g1.waitMembers(t, "b1,b2,b3")
	g2.waitMembers(t, "b1,b2,b3")

	type counter struct {
		c    *wsClient
		n    int
		node string
	}
	var all []*counter
	for i, k := range keys("user", 60) {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		c := connect(t, g, k+"?counter=1")
		x := &counter{c: c, node: c.node}
		x.n, _ = c.count(t, 1)
		all = append(all, x)
	}
	// step exchanges messages until every session answers from its key's
	// owner, and checks that nobody was closed. lost: the sessions of that
	// node lose their state on the way.
	step := func(what, lost string) (moved int) {
		t.Log("step: " + what)
		testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			for _, x := range all {
				if x.c.isClosed() {
					t.Fatalf("client %s closed (%d) by a migrating gateway", x.c.key, x.c.code)
				}
				want := x.n + 1
				if lost != "" && x.node == lost {
					want = 1
				}
				n, node := x.c.count(t, want)
				if node != x.node {
					moved++
				}
				x.n, x.node = n, node
				if o := x.c.g.owner(t, x.c.key); node != o {
					return fmt.Errorf("%s answered by %s, owner %s", x.c.key, node, o)
				}
			}
			return nil
		})
		t.Logf("%s: %d sessions moved", what, moved)
		return moved
	}

	backends["b4"] = e.backend(t, "b4")
	g1.waitMembers(t, "b1,b2,b3,b4")
	g2.waitMembers(t, "b1,b2,b3,b4")
	if step("a fourth node joins", "") == 0 {
		t.Fatal("no session moved to b4")
	}

	_ = backends["b2"].cmd.Process.Signal(syscall.SIGTERM)
	g1.waitMembers(t, "b1,b3,b4")
	g2.waitMembers(t, "b1,b3,b4")
	step("b2 leaves (SIGTERM): its sessions are handed over", "")
	if err := backends["b2"].cmd.Wait(); err != nil {
		t.Fatalf("b2 exit: %v", err)
	}

	_ = backends["b3"].cmd.Process.Kill()
	g1.waitMembers(t, "b1,b4")
	g2.waitMembers(t, "b1,b4")
	step("b3 is killed: its sessions resume elsewhere without state", "b3")
}
