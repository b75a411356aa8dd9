package gateway_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/testutil"
)

// client is a connected test client that records how it was closed.
type client struct {
	key  string
	node string
	ws   *websocket.Conn
	done chan int // close code, once
}

func connectAll(t *testing.T, c *devcluster.Cluster, keys []string) []*client {
	t.Helper()
	out := make([]*client, len(keys))
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	sem := make(chan struct{}, 64)
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ws, err := dialErr(c.Gateway().Addr(), "/ws/"+k, nil)
			if err != nil {
				errs <- err
				return
			}
			var w welcome
			if err := ws.ReadJSON(&w); err != nil {
				errs <- err
				return
			}
			cl := &client{key: k, node: w.ServerIP, ws: ws, done: make(chan int, 1)}
			go func() {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						code := -1
						if ce, ok := err.(*websocket.CloseError); ok {
							code = ce.Code
						}
						cl.done <- code
						return
					}
				}
			}()
			out[i] = cl
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, cl := range out {
			cl.ws.Close()
		}
	})
	return out
}

// collectClosed waits until at least want clients are closed and returns
// the closed ones with their close codes.
func collectClosed(t *testing.T, clients []*client, want int) map[*client]int {
	t.Helper()
	closed := map[*client]int{}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, cl := range clients {
			select {
			case code := <-cl.done:
				closed[cl] = code
			default:
			}
		}
		if len(closed) < want {
			return fmt.Errorf("%d of %d expected clients closed", len(closed), want)
		}
		return nil
	})
	return closed
}

func TestRebalanceAddAndRemoveNode(t *testing.T) {
	c := startCluster(t, 3, nil)
	g := c.Gateway()
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	clients := connectAll(t, c, keys)
	before := g.Ring()
	for _, cl := range clients {
		if cl.node != before.LookupString(cl.key).ID {
			t.Fatalf("%s on %s, owner %s", cl.key, cl.node, before.LookupString(cl.key).ID)
		}
	}

	// Add a node: exactly the clients whose owner changed are closed (1012).
	var added struct{ ID string }
	if st := admin(t, c, "POST", "/api/nodes", "", &added); st != http.StatusCreated {
		t.Fatalf("POST /api/nodes: %d", st)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if g.Ring().Member(added.ID) == nil {
			return fmt.Errorf("ring lacks %s", added.ID)
		}
		return nil
	})
	after := g.Ring()
	var moved []*client
	for _, cl := range clients {
		if ring.OwnerChanged(before, after, []byte(cl.key)) {
			moved = append(moved, cl)
			if after.LookupString(cl.key).ID != added.ID {
				t.Fatalf("%s moved to %s, not to the new node", cl.key, after.LookupString(cl.key).ID)
			}
		}
	}
	if len(moved) == 0 || len(moved) > len(clients)/2 {
		t.Fatalf("%d of %d keys moved", len(moved), len(clients))
	}
	closed := collectClosed(t, clients, len(moved))
	checkNoMoreCloses(t, g, 0, clients, closed)
	movedSet := map[*client]bool{}
	for _, cl := range moved {
		movedSet[cl] = true
	}
	for cl, code := range closed {
		if !movedSet[cl] {
			t.Errorf("%s closed (%d) but its owner did not change", cl.key, code)
		}
		if code != websocket.CloseServiceRestart {
			t.Errorf("%s closed with %d, want 1012", cl.key, code)
		}
	}
	t.Logf("added %s: %d of %d clients moved (ideal %d)", added.ID, len(moved), len(clients), len(clients)/4)

	// Each moved client reconnects to its new owner.
	reconnected := connectAll(t, c, keysOf(moved))
	for _, cl := range reconnected {
		if cl.node != added.ID {
			t.Errorf("%s reconnected to %s, want %s", cl.key, cl.node, added.ID)
		}
	}

	// Remove the new node: exactly its clients move, back to their old owners.
	live := append(unclosed(clients, closed), reconnected...)
	if st := admin(t, c, "DELETE", "/api/nodes/"+added.ID, "", nil); st != http.StatusAccepted {
		t.Fatalf("DELETE: %d", st)
	}
	closed = collectClosed(t, live, len(reconnected))
	checkNoMoreCloses(t, g, int64(len(moved)), live, closed)
	for cl, code := range closed {
		if cl.node != added.ID || code != websocket.CloseServiceRestart {
			t.Errorf("%s on %s closed with %d", cl.key, cl.node, code)
		}
	}
	back := connectAll(t, c, keysOf(reconnected))
	for _, cl := range back {
		if cl.node != before.LookupString(cl.key).ID {
			t.Errorf("%s back on %s, want %s", cl.key, cl.node, before.LookupString(cl.key).ID)
		}
	}
}

// checkNoMoreCloses waits until the gateway's rebalance is done and has
// closed exactly len(closed) more clients than base, then checks that no
// client outside closed saw a close.
func checkNoMoreCloses(t *testing.T, g *gateway.Gateway, base int64, clients []*client, closed map[*client]int) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		st := g.Stats()
		if st.PendingMoves != 0 || st.RebalanceCloses != base+int64(len(closed)) {
			return fmt.Errorf("rebalance: %+v, want %d closes", st, base+int64(len(closed)))
		}
		return nil
	})
	for _, cl := range clients {
		if _, ok := closed[cl]; ok {
			continue
		}
		select {
		case code := <-cl.done:
			t.Fatalf("%s on %s closed with %d, but it did not need to move", cl.key, cl.node, code)
		default:
		}
	}
}

func keysOf(cs []*client) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.key
	}
	return out
}

func unclosed(cs []*client, closed map[*client]int) []*client {
	var out []*client
	for _, c := range cs {
		if _, ok := closed[c]; !ok {
			out = append(out, c)
		}
	}
	return out
}
