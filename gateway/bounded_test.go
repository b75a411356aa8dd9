package gateway_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/testutil"
)

// TestBalanceFactorConfig: 0 is off, a factor must be above 1; a bad one
// is a ConfigError naming --balance-factor.
func TestBalanceFactorConfig(t *testing.T) {
	for _, tc := range []struct {
		f  float64
		ok bool
	}{
		{0, true}, {1.25, true}, {1.001, true}, {gateway.MaxBalanceFactor, true},
		{1, false}, {0.5, false}, {-1.25, false}, {gateway.MaxBalanceFactor + 1, false},
		{math.NaN(), false}, {math.Inf(1), false},
	} {
		_, err := gateway.New(gateway.Config{Members: staticMembers(t), Admin: "-", BalanceFactor: tc.f})
		var ce *gateway.ConfigError
		switch {
		case tc.ok && err != nil:
			t.Errorf("--balance-factor %v refused: %v", tc.f, err)
		case !tc.ok && (!errors.As(err, &ce) || !strings.Contains(err.Error(), "--balance-factor")):
			t.Errorf("--balance-factor %v: err %v, want a ConfigError naming --balance-factor", tc.f, err)
		}
	}
}

// skewedKeys is n client keys, a third of them on one hot key and the rest
// Zipf-distributed (s = 1.1) over ten thousand users.
func skewedKeys(n int) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(12, 1)), 1.1, 1, 9_999)
	keys := make([]string, n)
	for i := range keys {
		if i%3 == 0 {
			keys[i] = "hot"
		} else {
			keys[i] = "user-" + strconv.FormatUint(z.Uint64(), 10)
		}
	}
	return keys
}

// perNode counts clients by the node that welcomed them.
func perNode(cs []*client) map[string]int {
	out := map[string]int{}
	for _, cl := range cs {
		out[cl.node]++
	}
	return out
}

// bound is ceil(c × clients / nodes), computed apart from the ring's
// integer arithmetic.
func bound(c float64, clients, nodes int) int {
	return int(math.Ceil(c*float64(clients)/float64(nodes) - 1e-9))
}

// TestBoundedLoadsPlacement connects real clients with a skewed key
// distribution (several clients per key, one hot key) through a dev
// cluster, concurrently: with the factor off every client is on its key's
// ring owner, as before; with it on no node holds more than
// ceil(c × average), and /api/ring answers a node with room.
func TestBoundedLoadsPlacement(t *testing.T) {
	const nodes, clients = 4, 600
	keys := skewedKeys(clients)
	for _, c := range []float64{0, 1.25, 1.5} {
		t.Run(fmt.Sprintf("factor=%v", c), func(t *testing.T) {
			cl := startCluster(t, nodes, func(cfg *gateway.Config) { cfg.BalanceFactor = c })
			g := cl.Gateway()
			waitRing(t, g, nodes)
			cs := connectAll(t, cl, keys)
			counts := perNode(cs)
			hi := 0
			for id, n := range counts {
				hi = max(hi, n)
				if g.NodeClients(id) != n {
					t.Errorf("gateway counts %d clients on %s, the clients say %d", g.NodeClients(id), id, n)
				}
			}
			t.Logf("clients per node %v: max/avg %.2f", counts, float64(hi)*nodes/clients)
			hotOwner := g.Ring().LookupString("hot").ID
			if c == 0 {
				for _, x := range cs {
					if want := g.Ring().LookupString(x.key).ID; x.node != want {
						t.Fatalf("factor off: %s on %s, ring owner %s", x.key, x.node, want)
					}
				}
				if got := ownerAPI(t, cl, "hot"); got != hotOwner {
					t.Errorf("/api/ring?key=hot = %s, ring owner %s", got, hotOwner)
				}
				return
			}
			if lim := bound(c, clients, nodes); hi > lim {
				t.Errorf("a node holds %d clients, over ceil(%v x %d/%d) = %d", hi, c, clients, nodes, lim)
			}
			// New hot clients fill the owner up to the bound, then go on to
			// the next node on the key's walk; /api/ring says where each
			// would go.
			total := clients
			for next := ownerAPI(t, cl, "hot"); ; next = ownerAPI(t, cl, "hot") {
				_, w := dial(t, cl, "/ws/hot")
				total++
				if w.ServerIP != next {
					t.Fatalf("a new hot client went to %s, /api/ring said %s", w.ServerIP, next)
				}
				if next != hotOwner {
					break
				}
				if total > 2*clients {
					t.Fatalf("the hot key's owner %s takes client %d: no bound", hotOwner, total)
				}
			}
			if n, lim := g.NodeClients(hotOwner), bound(c, total, nodes); n < lim-1 || n > lim {
				t.Errorf("the hot key's owner %s filled up at %d, bound %d", hotOwner, n, lim)
			}
			// A push to the hot key reaches its sessions on every node.
			hot := total - clients
			for _, k := range keys {
				if k == "hot" {
					hot++
				}
			}
			var sent struct{ Delivered int }
			if st := admin(t, cl, "POST", "/api/send", `{"userId":"hot","message":"x"}`, &sent); st != http.StatusOK || sent.Delivered != hot {
				t.Errorf("push to hot: %d, delivered %d, want %d", st, sent.Delivered, hot)
			}
		})
	}
}

// TestBoundedLoadsRebalance: with the factor on, adding a node closes
// exactly the clients ring.Displaced names (a node new to the key's walk
// comes before theirs) with 1012, a fraction close to plain hashing's, and
// the bound holds for the clients that reconnect; removing it closes
// exactly its clients.
func TestBoundedLoadsRebalance(t *testing.T) {
	const c, clients = 1.25, 600
	cl := startCluster(t, 3, func(cfg *gateway.Config) { cfg.BalanceFactor = c })
	g := cl.Gateway()
	waitRing(t, g, 3)
	if f := g.Info().BalanceFactor; f != c {
		t.Errorf("/api/info balanceFactor = %v, want %v", f, c)
	}
	cs := connectAll(t, cl, skewedKeys(clients))
	before := g.Ring()

	var added struct{ ID string }
	if st := admin(t, cl, "POST", "/api/nodes", "", &added); st != http.StatusCreated {
		t.Fatalf("POST /api/nodes: %d", st)
	}
	waitRing(t, g, 4)
	after := g.Ring()
	moved := map[*client]bool{}
	plain := 0
	for _, x := range cs {
		if ring.Displaced(before, after, x.key, x.node) {
			moved[x] = true
		}
		if ring.OwnerChanged(before, after, []byte(x.key)) {
			plain++
		}
	}
	if len(moved) == 0 || len(moved) > clients/2 {
		t.Fatalf("%d of %d clients displaced", len(moved), clients)
	}
	closed := collectClosed(t, cs, len(moved))
	checkNoMoreCloses(t, g, 0, cs, closed)
	for x, code := range closed {
		if !moved[x] || code != websocket.CloseServiceRestart {
			t.Errorf("%s on %s closed with %d; displaced: %v", x.key, x.node, code, moved[x])
		}
	}
	t.Logf("added %s: %d of %d clients moved (%.1f%%; plain hashing would move %d; ideal share %.1f%%)",
		added.ID, len(moved), clients, 100*float64(len(moved))/clients, plain, 100.0/4)

	back := connectAll(t, cl, keysOf(keysOfMap(moved)))
	live := append(unclosed(cs, closed), back...)
	counts := perNode(live)
	if n := counts[added.ID]; n == 0 || n > bound(c, len(live), 4) {
		t.Errorf("the new node holds %d of %d clients, bound %d", n, len(live), bound(c, len(live), 4))
	}
	for id, n := range counts { // the others keep what they had: at most the bound before the join
		if n > bound(c, len(live), 3) {
			t.Errorf("%s holds %d, over the bound before the join %d", id, n, bound(c, len(live), 3))
		}
	}

	// Remove it: exactly its clients move.
	if st := admin(t, cl, "DELETE", "/api/nodes/"+added.ID, "", nil); st != http.StatusAccepted {
		t.Fatalf("DELETE: %d", st)
	}
	closed = collectClosed(t, live, counts[added.ID])
	checkNoMoreCloses(t, g, int64(len(moved)), live, closed)
	for x := range closed {
		if x.node != added.ID {
			t.Errorf("%s on %s closed when %s left", x.key, x.node, added.ID)
		}
	}
}

func keysOfMap(m map[*client]bool) []*client {
	out := make([]*client, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	return out
}

// waitRing waits until g's ring has n members.
func waitRing(t *testing.T, g *gateway.Gateway, n int) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := g.Ring().Len(); got != n {
			return fmt.Errorf("ring has %d members, want %d", got, n)
		}
		return nil
	})
}

// ownerAPI asks GET /api/ring?key= for key's owner.
func ownerAPI(t *testing.T, c *devcluster.Cluster, key string) string {
	t.Helper()
	var out struct{ Owner string }
	if st := admin(t, c, "GET", "/api/ring?key="+url.QueryEscape(key), "", &out); st != http.StatusOK {
		t.Fatalf("GET /api/ring: %d", st)
	}
	return out.Owner
}

// TestBoundedLoadsFigures is docs/BENCHMARKS.md's end-to-end run: N real
// clients with Zipf-distributed keys (s = 1.1 over a million users)
// through a dev cluster of 10 backends, then an 11th joins and the moved
// clients reconnect; for the factor off, 1.25 and 1.5 it logs max/avg
// load and the fraction moved. It runs only when WSGATE_BOUNDED_FIGURES
// names N:
//
//	WSGATE_BOUNDED_FIGURES=5000 go test ./gateway -run TestBoundedLoadsFigures -v
func TestBoundedLoadsFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WSGATE_BOUNDED_FIGURES"))
	if n <= 0 {
		t.Skip("set WSGATE_BOUNDED_FIGURES=<clients>")
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(12, 1)), 1.1, 1, 1_000_000-1)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user-" + strconv.FormatUint(z.Uint64(), 10)
	}
	maxAvg := func(cs []*client, nodes int) float64 {
		hi := 0
		for _, v := range perNode(cs) {
			hi = max(hi, v)
		}
		return float64(hi) * float64(nodes) / float64(len(cs))
	}
	t.Logf("| factor | max/avg, 10 nodes | moved on join | max/avg after the join |")
	for _, c := range []float64{0, 1.25, 1.5} {
		cl := startCluster(t, 10, func(cfg *gateway.Config) { cfg.BalanceFactor = c; cfg.RebalanceRate = 100_000 })
		g := cl.Gateway()
		waitRing(t, g, 10)
		cs := connectAll(t, cl, keys)
		before := g.Ring()
		if st := admin(t, cl, "POST", "/api/nodes", "", nil); st != http.StatusCreated {
			t.Fatalf("POST /api/nodes: %d", st)
		}
		waitRing(t, g, 11)
		after := g.Ring()
		var moved []*client
		for _, x := range cs {
			if ring.Displaced(before, after, x.key, x.node) {
				moved = append(moved, x)
			}
		}
		closed := collectClosed(t, cs, len(moved))
		checkNoMoreCloses(t, g, 0, cs, closed)
		live := append(unclosed(cs, closed), connectAll(t, cl, keysOf(moved))...)
		name := "off"
		if c != 0 {
			name = strconv.FormatFloat(c, 'f', -1, 64)
		}
		t.Logf("| %s | %.3f | %.1f%% | %.3f |", name, maxAvg(cs, 10), 100*float64(len(moved))/float64(n), maxAvg(live, 11))
		for _, x := range live { // free the descriptors before the next cluster
			x.ws.Close()
		}
		_ = cl.Shutdown(t.Context())
	}
}
