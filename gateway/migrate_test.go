package gateway_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

// counterClient is a demo counter session (counter=1) that sends a
// message, waits for its count, and checks it: the count is the state
// that must survive each migration, and a lost, duplicated or reordered
// message shows as a wrong count.
type counterClient struct {
	key string
	ws  *websocket.Conn

	mu     sync.Mutex
	sent   int
	node   string         // the node of the last answer
	nodes  []string       // every node that answered, in order
	pushes map[string]int // push content -> times received
	err    error
}

func (c *counterClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// exchange sends one message and reads until its answer, counting the
// pushes that arrive meanwhile.
func (c *counterClient) exchange(lost bool) error {
	c.mu.Lock()
	n := c.sent + 1
	c.mu.Unlock()
	msg := fmt.Sprintf("m%d", n)
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return fmt.Errorf("%s: write: %w", c.key, err)
	}
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return fmt.Errorf("%s: waiting for the answer to %s: %w", c.key, msg, err)
		}
		var ev welcome
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("%s: bad answer %q: %w", c.key, data, err)
		}
		c.mu.Lock()
		switch ev.Type {
		case 1:
			c.pushes[ev.Content]++
			c.mu.Unlock()
			continue
		case 3:
		default:
			c.mu.Unlock()
			return fmt.Errorf("%s: unexpected message %q", c.key, data)
		}
		want := fmt.Sprintf("%d:%s", n, msg)
		if lost && ev.ServerIP != c.node {
			want = "1:" + msg // resumed without its state: the count starts again
			n = 1
		}
		if ev.Content != want {
			c.mu.Unlock()
			return fmt.Errorf("%s: answer %q from %s, want %q (count lost, duplicated or reordered)", c.key, ev.Content, ev.ServerIP, want)
		}
		c.sent = n
		if ev.ServerIP != c.node {
			c.node = ev.ServerIP
			c.nodes = append(c.nodes, ev.ServerIP)
		}
		c.mu.Unlock()
		return nil
	}
}

func (c *counterClient) lastNode() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

// connectCounters connects one counter client per key and has each answer
// once.
// dial opens the WebSocket (ws:// when nil).
func connectCounters(t *testing.T, c *devcluster.Cluster, n int, dial func(path string) (*websocket.Conn, error)) []*counterClient {
	t.Helper()
	if dial == nil {
		dial = func(path string) (*websocket.Conn, error) { return dialErr(c.Gateway().Addr(), path, nil) }
	}
	out := make([]*counterClient, n)
	for i := range out {
		key := fmt.Sprintf("user-%d", i)
		ws, err := dial("/ws/" + key + "?counter=1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		w := readWelcome(t, ws)
		cl := &counterClient{key: key, ws: ws, node: w.ServerIP, nodes: []string{w.ServerIP}, pushes: map[string]int{}}
		if err := cl.exchange(false); err != nil {
			t.Fatal(err)
		}
		out[i] = cl
	}
	return out
}

// runCounters has every client exchange messages until stop is closed;
// wg counts the goroutines.
func runCounters(clients []*counterClient, stop <-chan struct{}, wg *sync.WaitGroup) {
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := cl.exchange(false); err != nil {
					cl.fail(err)
					return
				}
			}
		}()
	}
}

// addNode adds a node to c and waits until the gateway's ring has it.
func addNode(t *testing.T, c *devcluster.Cluster) string {
	t.Helper()
	added, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if c.Gateway().Ring().Member(added) == nil {
			return fmt.Errorf("ring lacks %s", added)
		}
		return nil
	})
	return added
}

// startMigrateCluster is a dev cluster of n nodes with --rebalance migrate.
func startMigrateCluster(t *testing.T, n int) *devcluster.Cluster {
	return startCluster(t, n, func(cfg *gateway.Config) {
		cfg.Rebalance = gateway.RebalanceMigrate
		cfg.RebalanceRate = 500
	})
}

// waitOwners waits until every client's answers come from its key's owner.
func waitOwners(t *testing.T, c *devcluster.Cluster, clients []*counterClient) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, cl := range clients {
			if err := firstErr(clients); err != nil {
				t.Fatal(err)
			}
			if got, want := cl.lastNode(), owner(t, c, cl.key); got != want {
				return fmt.Errorf("%s answered by %s, owner %s", cl.key, got, want)
			}
		}
		return nil
	})
}

func firstErr(clients []*counterClient) error {
	for _, cl := range clients {
		cl.mu.Lock()
		err := cl.err
		cl.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestMigrateAddRemoveNodes: with --rebalance migrate, and traffic and
// pushes flowing, nodes join and leave: no client is disconnected, every
// session's count goes on intact on its new node (no message lost,
// duplicated or reordered), and every push reaches its user.
func TestMigrateAddRemoveNodes(t *testing.T) {
	c := startMigrateCluster(t, 3)
	clients := connectCounters(t, c, 150, nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	runCounters(clients, stop, &wg)
	var pushed sync.Map // content -> *counterClient
	var pushes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cl := clients[rand.IntN(len(clients))]
			content := fmt.Sprintf("p%d", i)
			var out struct {
				Delivered int
				Error     string
			}
			st := admin(t, c, "POST", "/api/send", fmt.Sprintf(`{"userId":%q,"message":%q}`, cl.key, content), &out)
			if out.Delivered < 1 {
				cl.fail(fmt.Errorf("push %s to %s: %d, delivered to %d sessions %s", content, cl.key, st, out.Delivered, out.Error))
			}
			pushed.Store(content, cl)
			pushes.Add(1)
		}
	}()

	added := addNode(t, c)
	waitOwners(t, c, clients)
	// An original node leaves (drained: its sessions are handed over), then
	// the one that joined.
	for _, id := range []string{c.Gateway().Ring().Members()[0].ID, added} {
		if err := c.RemoveNode(id); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if c.Gateway().Ring().Member(id) != nil {
				return fmt.Errorf("%s still on the ring", id)
			}
			return nil
		})
		waitOwners(t, c, clients)
	}
	close(stop)
	wg.Wait()
	if err := firstErr(clients); err != nil {
		t.Fatal(err)
	}

	moved, sent := 0, 0
	for _, cl := range clients {
		if len(cl.nodes) > 1 {
			moved++
		}
		sent += cl.sent
	}
	if moved == 0 {
		t.Fatal("no client moved")
	}
	// Every push: received, by its user (a last exchange collects those
	// still in flight).
	for _, cl := range clients {
		if err := cl.exchange(false); err != nil {
			t.Fatal(err)
		}
	}
	dups := 0
	pushed.Range(func(k, v any) bool {
		cl := v.(*counterClient)
		switch n := cl.pushes[k.(string)]; {
		case n == 0:
			t.Errorf("push %s to %s never arrived", k, cl.key)
		case n > 1:
			dups++
		}
		return true
	})
	if st := c.Gateway().Stats(); st.Clients != int64(len(clients)) || st.RebalanceCloses != 0 {
		t.Fatalf("gateway stats %+v: want %d clients and no rebalance closes", st, len(clients))
	}
	t.Logf("%d of %d clients moved (some twice), %d messages counted, %d pushes (%d delivered twice)",
		moved, len(clients), sent, pushes.Load(), dups)
}

// TestMigrateNodeCrash: a node that dies (its links and control link cut
// at once) loses its sessions' state, but not its clients: they resume,
// counts starting again, on the nodes that take their keys.
func TestMigrateNodeCrash(t *testing.T) {
	c := startMigrateCluster(t, 3)
	clients := connectCounters(t, c, 60, nil)
	victim := clients[0].node
	var orphans []*counterClient
	for _, cl := range clients {
		if cl.node == victim {
			orphans = append(orphans, cl)
		}
	}
	if err := c.Node(victim).Close(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if c.Gateway().Ring().Member(victim) != nil {
			return fmt.Errorf("%s still on the ring", victim)
		}
		return nil
	})
	for _, cl := range clients {
		if err := cl.exchange(true); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range orphans {
		if cl.node == victim || cl.sent != 1 {
			t.Errorf("%s: on %s with count %d, want a fresh session on another node", cl.key, cl.node, cl.sent)
		}
	}
	if st := c.Gateway().Stats(); st.Clients != int64(len(clients)) {
		t.Fatalf("%d clients, want %d: none closed", st.Clients, len(clients))
	}
	t.Logf("%d clients of the crashed %s resumed elsewhere without state", len(orphans), victim)
}

// TestMigrateConfig: --rebalance takes disconnect or migrate only.
func TestMigrateConfig(t *testing.T) {
	_, err := gateway.New(gateway.Config{Members: staticMembers(t), Rebalance: "move"})
	if err == nil || !strings.Contains(err.Error(), "--rebalance") {
		t.Fatalf("Rebalance %q: err %v, want one naming --rebalance", "move", err)
	}
}

// TestMigrateTLS: wss:// clients migrate too (their held input is
// decrypted already and waits in the TLS layer until the session resumes).
func TestMigrateTLS(t *testing.T) {
	c, roots, _, _ := startTLSCluster(t, func(cfg *gateway.Config) { cfg.Rebalance = gateway.RebalanceMigrate })
	clients := connectCounters(t, c, 60, func(path string) (*websocket.Conn, error) {
		return dialTLS(c.Gateway().Addr(), path, roots, nil)
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	runCounters(clients, stop, &wg)
	addNode(t, c)
	waitOwners(t, c, clients)
	close(stop)
	wg.Wait()
	if err := firstErr(clients); err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, cl := range clients {
		if len(cl.nodes) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no client moved")
	}
	t.Logf("%d of %d wss:// clients moved", moved, len(clients))
}
