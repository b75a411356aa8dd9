package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
)

// These tests run a real cluster: backend and gateway processes joined by
// the machine's RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379), each
// test with its own exchange and key prefix. `make test` starts both
// services (scripts/services.sh); a test fails, never skips, without them.

const (
	amqpURL  = "amqp://guest:guest@127.0.0.1:5672/"
	redisURL = "redis://127.0.0.1:6379/0"
	// Short timings so failures are detected quickly: the gateway's
	// reconcile period and the backends' heartbeat and registry TTL.
	reconcileEvery = "300ms"
	heartbeatEvery = "200ms"
	nodeTTL        = "1s"
)

var envSeq atomic.Int64

// clusterEnv names one test's slice of the shared services and the
// addresses its processes use to reach them (a test may put proxies in
// between).
type clusterEnv struct {
	name        string // exchange and Redis key prefix
	amqp, redis string
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	e := &clusterEnv{
		name:  fmt.Sprintf("wsgate-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, envSeq.Add(1)),
		amqp:  amqpURL,
		redis: redisURL,
	}
	rdb := e.rdb(t)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at %s: %v (run scripts/services.sh)", redisURL, err)
	}
	t.Cleanup(func() {
		e.flush(t)
		// The exchanges are durable: delete the test's two.
		if conn, err := amqp.Dial(amqpURL); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_ = ch.ExchangeDelete(e.name, false, false)
				_ = ch.ExchangeDelete(e.name+".broadcast", false, false)
			}
			conn.Close()
		}
	})
	return e
}

func (e *clusterEnv) rdb(t *testing.T) *redis.Client {
	opt, _ := redis.ParseURL(redisURL)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// flush deletes every Redis key of the test (what a Redis restart loses).
func (e *clusterEnv) flush(t *testing.T) {
	ctx := context.Background()
	rdb := e.rdb(t)
	keys, _ := rdb.Keys(ctx, e.name+":*").Result()
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

func (e *clusterEnv) common() []string {
	return []string{"--amqp", e.amqp, "--redis", e.redis, "--exchange", e.name, "--redis-prefix", e.name}
}

// backend starts a backend process and waits until it has joined.
func (e *clusterEnv) backend(t *testing.T, id string) *proc {
	t.Helper()
	p, _ := e.backendAt(t, id, "127.0.0.1:0")
	return p
}

// backendAt starts a backend listening on listen and returns it with the
// address it listens on; extra flags follow the environment's.
func (e *clusterEnv) backendAt(t *testing.T, id, listen string, extra ...string) (*proc, string) {
	t.Helper()
	args := append([]string{"--admin", "-", "--heartbeat", heartbeatEvery, "--node-ttl", nodeTTL, "--drain-timeout", "10s"}, e.common()...)
	return startBackend(t, id, listen, append(args, extra...)...)
}

// gateway starts a gateway process; extra flags follow the environment's.
func (e *clusterEnv) gateway(t *testing.T, extra ...string) *gw {
	t.Helper()
	return startGateway(t, append(append([]string{"--reconcile", reconcileEvery}, e.common()...), extra...)...)
}

// get decodes the JSON answer of GET path on the gateway's admin API.
func (g *gw) get(t *testing.T, path string, out any) {
	t.Helper()
	r, err := http.Get("http://" + g.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("GET %s: %s %s", path, r.Status, b)
	}
	if err := json.NewDecoder(r.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func (g *gw) post(t *testing.T, path, body string, out any) {
	t.Helper()
	r, err := http.Post("http://"+g.admin+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode/100 != 2 {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("POST %s: %s %s", path, r.Status, b)
	}
	if out != nil {
		if err := json.NewDecoder(r.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

func (g *gw) owner(t *testing.T, key string) string {
	var r struct{ Owner string }
	g.get(t, "/api/ring?key="+key, &r)
	return r.Owner
}

// members is the gateway's ring, as sorted "id,id,..".
func (g *gw) members(t *testing.T) string {
	var nodes []struct {
		ID     string
		OnRing bool
	}
	g.get(t, "/api/nodes", &nodes)
	var ids []string
	for _, n := range nodes {
		if n.OnRing {
			ids = append(ids, n.ID)
		}
	}
	return strings.Join(ids, ",")
}

func (g *gw) waitMembers(t *testing.T, want string) {
	t.Helper()
	testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if got := g.members(t); got != want {
			return fmt.Errorf("gateway %s ring %q, want %q", g.addr, got, want)
		}
		return nil
	})
}

// wsClient is a connected WebSocket client; a goroutine reads it and
// records its messages and how it was closed.
type wsClient struct {
	g         *gw
	key, node string // the key and the node of the welcome message
	ws        *websocket.Conn
	msgs      chan string
	closed    chan struct{}
	code      int   // close code, valid once closed is closed (-1: no close frame)
	err       error // the read error when code is -1
}

func connect(t *testing.T, g *gw, key string) *wsClient {
	t.Helper()
	c, err := dial(g, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ws.Close() })
	return c
}

// dial connects a client of key to g and waits for the welcome message;
// the caller closes it. key may end with a query ("u1?counter=1").
func dial(g *gw, key string) (*wsClient, error) {
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+g.addr+"/ws/"+key, nil)
	key, _, _ = strings.Cut(key, "?")
	if err != nil {
		return nil, fmt.Errorf("dial %s key %s: %w", g.addr, key, err)
	}
	var w struct {
		Type     int
		ServerIP string
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&w); err != nil || w.Type != 2 {
		ws.Close()
		return nil, fmt.Errorf("welcome of %s: %+v %v", key, w, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	c := &wsClient{g: g, key: key, node: w.ServerIP, ws: ws, msgs: make(chan string, 64), closed: make(chan struct{})}
	go func() {
		defer close(c.closed)
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					c.code = ce.Code
				} else {
					c.code, c.err = -1, err
				}
				return
			}
			c.msgs <- string(m)
		}
	}()
	return c, nil
}

func connectAll(t *testing.T, g *gw, keys []string) []*wsClient {
	t.Helper()
	cs := make([]*wsClient, len(keys))
	for i, k := range keys {
		cs[i] = connect(t, g, k)
	}
	return cs
}

// next returns the client's next message, or fails after 10s.
func (c *wsClient) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.closed:
		t.Fatalf("client %s (on %s) closed with %d, want a message", c.key, c.node, c.code)
	case <-time.After(10 * time.Second):
		t.Fatalf("client %s: no message in 10s", c.key)
	}
	return ""
}

// echo checks the client is connected and served: a message comes back.
func (c *wsClient) echo(t *testing.T, text string) {
	t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		t.Fatalf("client %s write: %v", c.key, err)
	}
	if m := c.next(t); m != text {
		t.Fatalf("client %s echo %q, want %q", c.key, m, text)
	}
}

func (c *wsClient) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// expectMoves waits until exactly the clients in move are closed with
// code, then proves every other client is still served (an echo round
// trip after the closes happened), and returns the closed ones.
func expectMoves(t *testing.T, clients []*wsClient, move func(*wsClient) bool, code int, within time.Duration) []*wsClient {
	t.Helper()
	var want []*wsClient
	for _, c := range clients {
		if move(c) {
			want = append(want, c)
		}
	}
	testutil.CheckFor(t, within, 20*time.Millisecond, func() error {
		for _, c := range want {
			if !c.isClosed() {
				return fmt.Errorf("client %s (on %s) still open", c.key, c.node)
			}
		}
		return nil
	})
	for _, c := range want {
		if c.code != code {
			t.Errorf("client %s (on %s) closed with %d, want %d", c.key, c.node, c.code, code)
		}
	}
	for _, c := range clients {
		if !move(c) {
			if c.isClosed() {
				t.Fatalf("client %s (on %s) closed with %d (%v); its owner did not change", c.key, c.node, c.code, c.err)
			}
			c.echo(t, "still-here")
		}
	}
	return want
}

func keys(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return ks
}

// TestClusterProcesses runs two gateway and three backend processes on
// the real RabbitMQ and Redis and checks routing, scaling out, graceful
// and hard node loss, push across gateways and broadcast.
func TestClusterProcesses(t *testing.T) {
	e := newClusterEnv(t)
	backends := map[string]*proc{}
	addrs := map[string]string{}
	for _, id := range []string{"b1", "b2", "b3"} {
		backends[id], addrs[id] = e.backendAt(t, id, "127.0.0.1:0")
	}
	// Both gateways start after the backends announced their joins, so
	// their first ring comes from the Redis registry alone.
	g1, g2 := e.gateway(t), e.gateway(t)
	g1.waitMembers(t, "b1,b2,b3")
	g2.waitMembers(t, "b1,b2,b3")

	ks := keys("user", 120)
	c1, c2 := connectAll(t, g1, ks), connectAll(t, g2, ks)
	all := append(append([]*wsClient{}, c1...), c2...)
	spread := map[string]int{}
	for i, k := range ks {
		if c1[i].node != c2[i].node {
			t.Fatalf("key %s: gateway 1 routed to %s, gateway 2 to %s", k, c1[i].node, c2[i].node)
		}
		if o := g1.owner(t, k); o != c1[i].node {
			t.Fatalf("key %s on %s, ring says %s", k, c1[i].node, o)
		}
		spread[c1[i].node]++
	}
	if len(spread) != 3 {
		t.Fatalf("keys spread over %v, want all 3 nodes", spread)
	}

	t.Log("step: push across gateways")
	{
		only := connect(t, g1, "lonely-user")
		var res struct{ Delivered int }
		g2.post(t, "/api/send", `{"userId":"lonely-user","message":"via gateway 2"}`, &res)
		if res.Delivered != 1 {
			t.Fatalf("delivered %d, want 1", res.Delivered)
		}
		var ev struct {
			Type    int
			Content string
		}
		if err := json.Unmarshal([]byte(only.next(t)), &ev); err != nil || ev.Type != 1 || ev.Content != "via gateway 2" {
			t.Fatalf("push arrived as %+v %v", ev, err)
		}
		g2.post(t, "/api/send", `{"userId":"lonely-user","message":"again"}`, &res)
		if res.Delivered != 1 {
			t.Fatalf("delivered %d, want 1", res.Delivered)
		}
		only.next(t)
		g2.post(t, "/api/send", `{"userId":"nobody-at-all","message":"x"}`, &res)
		if res.Delivered != 0 {
			t.Fatalf("delivered %d to an absent user, want 0", res.Delivered)
		}
		// Presence is written in batches off the event loops: poll.
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			var where struct {
				Online   bool
				Sessions []struct{ Gateway, Node string }
			}
			g2.get(t, "/api/users/lonely-user", &where)
			if !where.Online || len(where.Sessions) != 1 || where.Sessions[0].Node != only.node {
				return fmt.Errorf("/api/users/lonely-user = %+v, want one session on %s", where, only.node)
			}
			return nil
		})
		only.ws.Close()
		<-only.closed
	}

	t.Log("step: broadcast once to every client")
	{
		g1.post(t, "/api/broadcast", `{"message":"first"}`, nil)
		g2.post(t, "/api/broadcast", `{"message":"second"}`, nil)
		for _, c := range all {
			// Exactly once: after "first" the next message is "second",
			// not a copy; the two may come in either order.
			a, b := c.next(t), c.next(t)
			if !(a == "first" && b == "second" || a == "second" && b == "first") {
				t.Fatalf("client %s got %q then %q", c.key, a, b)
			}
			c.echo(t, "after-broadcast")
		}
	}

	t.Log("step: a fourth backend moves only the clients whose owner changed")
	{
		backends["b4"] = e.backend(t, "b4")
		g1.waitMembers(t, "b1,b2,b3,b4")
		g2.waitMembers(t, "b1,b2,b3,b4")
		newOwner := map[string]string{}
		for _, k := range ks {
			newOwner[k] = g1.owner(t, k)
			if o2 := g2.owner(t, k); o2 != newOwner[k] {
				t.Fatalf("key %s: gateway 1 ring says %s, gateway 2 %s", k, newOwner[k], o2)
			}
		}
		moved := expectMoves(t, all, func(c *wsClient) bool { return newOwner[c.key] != c.node }, 1012, 20*time.Second)
		if len(moved) == 0 {
			t.Fatal("no key moved to b4 (expected about a quarter)")
		}
		all = reconnect(t, all, "b4")
	}

	t.Log("step: graceful stop moves exactly the node's clients")
	{
		b := backends["b2"]
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		expectMoves(t, all, func(c *wsClient) bool { return c.node == "b2" }, 1012, 20*time.Second)
		if err := b.cmd.Wait(); err != nil {
			t.Fatalf("backend exit: %v", err)
		}
		g1.waitMembers(t, "b1,b3,b4")
		g2.waitMembers(t, "b1,b3,b4")
		all = reconnect(t, all, "")
	}

	t.Log("step: SIGKILL moves the node's clients within the bound")
	{
		b := backends["b3"]
		_ = b.cmd.Process.Kill()
		// The link dies with the process: its clients are closed at once
		// and the node leaves the ring locally; the registry TTL (1s) and
		// reconcile (300ms) bound how long a lost link could go unseen.
		expectMoves(t, all, func(c *wsClient) bool { return c.node == "b3" }, 1011, 5*time.Second)
		g1.waitMembers(t, "b1,b4")
		g2.waitMembers(t, "b1,b4")
		all = reconnect(t, all, "")
	}

	t.Log("step: a killed node that comes back is taken back")
	{
		e.backendAt(t, "b3", addrs["b3"])
		g1.waitMembers(t, "b1,b3,b4")
		g2.waitMembers(t, "b1,b3,b4")
		expectMoves(t, all, func(c *wsClient) bool { return c.g.owner(t, c.key) != c.node }, 1012, 20*time.Second)
		reconnect(t, all, "")
	}
}

// reconnect replaces every closed client by a new one of the same key on
// the same gateway and checks it lands on the key's owner (and on
// wantNode when given).
func reconnect(t *testing.T, all []*wsClient, wantNode string) []*wsClient {
	t.Helper()
	out := make([]*wsClient, 0, len(all))
	for _, c := range all {
		if !c.isClosed() {
			out = append(out, c)
			continue
		}
		n := connect(t, c.g, c.key)
		if wantNode != "" && n.node != wantNode {
			t.Fatalf("client %s reconnected to %s, want %s", c.key, n.node, wantNode)
		}
		if o := c.g.owner(t, c.key); n.node != o {
			t.Fatalf("client %s reconnected to %s, ring owner %s", c.key, n.node, o)
		}
		out = append(out, n)
	}
	return out
}

// waitDependencies polls the gateway's /readyz until RabbitMQ and Redis are
// reported as up (true) or down (false).
func (g *gw) waitDependencies(t *testing.T, up bool) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var r struct{ Dependencies map[string]bool }
		g.get(t, "/readyz", &r)
		if r.Dependencies["redis"] != up || r.Dependencies["rabbitmq"] != up {
			return fmt.Errorf("dependencies %v, want all %v", r.Dependencies, up)
		}
		return nil
	})
}

// TestClusterSurvivesOutages cuts RabbitMQ and Redis off (through proxies,
// so the shared services stay up for other tests) and wipes the test's
// Redis keys, as a Redis restart would: routing goes on with the last
// ring, no client of a healthy node is dropped, and a backend that joins
// after recovery is applied.
func TestClusterSurvivesOutages(t *testing.T) {
	e := newClusterEnv(t)
	mq := testutil.NewProxy(t, "127.0.0.1:5672")
	rd := testutil.NewProxy(t, "127.0.0.1:6379")
	e.amqp, e.redis = "amqp://guest:guest@"+mq.Addr()+"/", "redis://"+rd.Addr()+"/0"
	e.backend(t, "b1")
	e.backend(t, "b2")
	g := e.gateway(t)
	g.waitMembers(t, "b1,b2")
	clients := connectAll(t, g, keys("user", 60))
	g.waitDependencies(t, true)

	mq.SetDown(true)
	rd.SetDown(true)
	e.flush(t) // a restarted Redis has lost the registry and presence
	g.waitDependencies(t, false)
	for _, c := range clients {
		c.echo(t, "during outage")
	}
	// New clients are routed with the last known ring.
	during := connect(t, g, "new-during-outage")
	during.echo(t, "routed")
	if o := g.owner(t, during.key); o != during.node {
		t.Fatalf("client routed to %s during the outage, ring says %s", during.node, o)
	}

	mq.SetDown(false)
	rd.SetDown(false)
	g.waitDependencies(t, true)
	// Heartbeats re-register the backends in the wiped registry.
	rdb := e.rdb(t)
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		n, err := rdb.ZCard(context.Background(), e.name+":nodes").Result()
		if err != nil || n != 2 {
			return fmt.Errorf("registry holds %d nodes (%v), want 2", n, err)
		}
		return nil
	})
	clients = append(clients, during)
	for _, c := range clients {
		if c.isClosed() {
			t.Fatalf("client %s of healthy node %s closed with %d (%v)", c.key, c.node, c.code, c.err)
		}
		c.echo(t, "after outage")
	}

	// Presence is rewritten after the outage, and again after a Redis
	// restart too quick for any write to fail (no session opened or
	// closed meanwhile): the gateway notices its own entry is gone.
	online := func(c *wsClient) {
		t.Helper()
		testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			var where struct {
				Online   bool
				Sessions []struct{ Node string }
			}
			g.get(t, "/api/users/"+c.key, &where)
			if !where.Online || len(where.Sessions) != 1 || where.Sessions[0].Node != c.node {
				return fmt.Errorf("presence of %s: %+v, want one session on %s", c.key, where, c.node)
			}
			return nil
		})
	}
	online(clients[0])
	e.flush(t)
	online(clients[1])

	// A membership change made after recovery is applied.
	e.backend(t, "b3")
	g.waitMembers(t, "b1,b2,b3")
	newOwner := map[string]string{}
	for _, c := range clients {
		newOwner[c.key] = g.owner(t, c.key)
	}
	expectMoves(t, clients, func(c *wsClient) bool { return newOwner[c.key] != c.node }, 1012, 20*time.Second)
}

// TestClusterStartErrors: at start, an unreachable Redis or RabbitMQ is a
// clear error naming it (exit 1), and half a cluster configuration is a
// usage error (exit 2).
func TestClusterStartErrors(t *testing.T) {
	down := testutil.NewProxy(t, "127.0.0.1:1")
	down.SetDown(true)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"gateway", "--amqp", amqpURL}, 2, "--amqp and --redis go together"},
		{[]string{"backend", "--redis", redisURL}, 2, "--amqp and --redis go together"},
		{[]string{"gateway", "--amqp", amqpURL, "--redis", redisURL, "--backend", "a=127.0.0.1:1"}, 2, "exclude each other"},
		{[]string{"gateway", "--amqp", amqpURL, "--redis", "redis://" + down.Addr() + "/0"}, 1, "redis at " + down.Addr() + " unreachable"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--amqp", "amqp://guest:guest@" + down.Addr() + "/", "--redis", redisURL}, 1, "rabbitmq at amqp://guest:xxxxx@" + down.Addr() + "/ unreachable"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--amqp", amqpURL, "--redis", "mysql://x"}, 2, "--redis"}, // a malformed URL is a usage error (an unreachable one is not)
	}
	for _, tc := range cases {
		out, err := exec.Command(binary, tc.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("wsgate %v: exit %v, output %q; want exit %d mentioning %q", tc.args, err, out, tc.code, tc.want)
		}
	}
}

// TestClusterPushKeepalive: quiet clients of a multi-gateway cluster under
// pushes keep their links (issue: every client of a link was closed with
// 1011 after 3 keepalive intervals of one-way traffic). The processes run
// with --keepalive 200ms, so 15 intervals pass in the test.
func TestClusterPushKeepalive(t *testing.T) {
	const keep = 200 * time.Millisecond
	ka := []string{"--keepalive", keep.String()}
	e := newClusterEnv(t)
	e.backendAt(t, "k1", "127.0.0.1:0", ka...)
	e.backendAt(t, "k2", "127.0.0.1:0", ka...)
	gws := []*gw{e.gateway(t, ka...), e.gateway(t, ka...)}
	for _, g := range gws {
		g.waitMembers(t, "k1,k2")
	}
	ks := keys("quiet", 10)
	var all []*wsClient
	for _, g := range gws {
		all = append(all, connectAll(t, g, ks)...)
	}
	// Every round pushes to every user, so each backend->gateway link
	// carries data several times per interval and the gateway's clients
	// send nothing: the gateway always hears, the backend never does
	// unless the gateway pings on schedule.
	pushes := 0
	for end := time.Now().Add(15 * keep); time.Now().Before(end); pushes++ {
		for i, k := range ks {
			gws[i%2].post(t, "/api/send", `{"userId":"`+k+`","message":"push"}`, nil)
		}
		time.Sleep(keep / 4) // the push rate of the scenario, not a wait for a condition
	}
	for _, c := range all {
		if c.isClosed() {
			t.Fatalf("client %s on %s closed with %d (%v) under pushes", c.key, c.g.addr, c.code, c.err)
		}
		if len(c.msgs) == 0 {
			t.Fatalf("client %s on %s got no push of %d", c.key, c.g.addr, pushes)
		}
	}
}

// TestClusterSignedMembership: with a cluster secret, events published on
// the exchange by someone without it change no ring: an unsigned leave, a
// forged join, a leave signed with another secret and a replayed genuine
// event are dropped and counted by reason.
func TestClusterSignedMembership(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secretFile, []byte("signed-membership-secret-0123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec := []string{"--cluster-secret-file", secretFile}
	e := newClusterEnv(t)
	e.backendAt(t, "s1", "127.0.0.1:0", sec...)
	e.backendAt(t, "s2", "127.0.0.1:0", sec...)
	g := e.gateway(t, sec...)
	g.waitMembers(t, "s1,s2")

	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Record a genuine event to replay it.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", e.name, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var genuine []byte
	select {
	case d := <-deliveries:
		genuine = d.Body
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat seen on the exchange")
	}
	if !strings.Contains(string(genuine), `"mac"`) {
		t.Fatalf("a backend's event is not signed: %s", genuine)
	}
	other := membership.NewSigner([]byte("not-the-cluster-secret-01234567"))
	for _, body := range [][]byte{
		membership.EncodeEvent(membership.Event{Type: membership.Leave, Node: membership.Node{ID: "s1", Addr: "127.0.0.1:1"}}),
		membership.EncodeEvent(membership.Event{Type: membership.Join, Node: membership.Node{ID: "evil", Addr: "127.0.0.1:2"}}),
		other.Encode(membership.Event{Type: membership.Leave, Node: membership.Node{ID: "s2", Addr: "127.0.0.1:3"}}),
		genuine,
	} {
		if err := ch.PublishWithContext(context.Background(), e.name, "", false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// Registry entries written straight into Redis, unsigned and forged.
	rdb := e.rdb(t)
	ctx := context.Background()
	expiry := float64(time.Now().Add(time.Minute).UnixMilli())
	rdb.ZAdd(ctx, e.name+":nodes", redis.Z{Score: expiry, Member: "evil"}, redis.Z{Score: expiry, Member: "evil2"})
	rdb.HSet(ctx, e.name+":node-info", "evil", `{"id":"evil","addr":"127.0.0.1:9","weight":1}`,
		"evil2", `{"id":"evil2","addr":"127.0.0.1:9","weight":1,"at":`+fmt.Sprint(time.Now().UnixMilli())+`,"mac":"AAAA"}`)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		for reason, want := range map[string]float64{"unsigned": 2, "forged": 1, "replayed": 1, "registry_unsigned": 1, "registry_forged": 1} {
			if got := testutil.Metric(t, g.admin, `wsgate_gateway_membership_events_dropped_total{reason="`+reason+`"}`); got < want {
				return fmt.Errorf("dropped{%s} = %v, want %v", reason, got, want)
			}
		}
		return nil
	})
	if got := g.members(t); got != "s1,s2" {
		t.Fatalf("ring after the forged events: %q, want s1,s2", got)
	}

	// A forged tombstone for s1 and its registry entry removed: with a
	// secret the tombstone is not trusted, so the live s1 stays. The
	// unsigned "evil" entry, re-read by every reconcile, counts them.
	// s1's heartbeats re-register it (and clear its tombstone), so the
	// attack repeats until the gateway has reconciled several times.
	before := testutil.Metric(t, g.admin, `wsgate_gateway_membership_events_dropped_total{reason="registry_unsigned"}`)
	stop := make(chan struct{})
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		for {
			rdb.ZAdd(ctx, e.name+":left", redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "s1"})
			rdb.ZRem(ctx, e.name+":nodes", "s1")
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // the attack's pace
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-attacked })
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := g.members(t); got != "s1,s2" {
			t.Fatalf("ring under forged tombstones: %q, want s1,s2", got)
		}
		if n := testutil.Metric(t, g.admin, `wsgate_gateway_membership_events_dropped_total{reason="registry_unsigned"}`); n < before+6 {
			return fmt.Errorf("%v reconciles under the attack", n-before)
		}
		return nil
	})

	// A broadcast published straight on the exchange, unsigned, reaches no
	// client; one through the admin API (signed) does, after it.
	c := connect(t, g, "listener")
	if err := ch.PublishWithContext(ctx, e.name+".broadcast", "", false, false,
		amqp.Publishing{Body: []byte(`{"v":1,"origin":"nobody","message":"FORGED"}`)}); err != nil {
		t.Fatal(err)
	}
	g.post(t, "/api/broadcast", `{"message":"genuine"}`, nil)
	if m := c.next(t); m != "genuine" {
		t.Fatalf("client got %q first, want the signed broadcast", m)
	}
	if n := testutil.Metric(t, g.admin, `wsgate_gateway_broadcasts_dropped_total{reason="unsigned"}`); n < 1 {
		t.Fatalf("broadcasts_dropped_total{unsigned} = %v", n)
	}
}
