package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/wsgate/wsgate/internal/testutil"
)

// The chaos suite (issue 13, item 3): two gateway and three backend
// processes on the machine's Redis and RabbitMQ (a private exchange and key
// prefix per scenario), clients on both gateways echoing and receiving
// pushes, then one failure per test. Each check is a row (scenario, check,
// expected, measured, pass) logged with -v and appended, as Markdown, to
// the file named by WSGATE_CHAOS_OUT. WSGATE_CHAOS_SCALE=full (make chaos)
// runs the sizes of the issue; small, the default, runs inside make test.

// chaosKeepalive is every process's --keepalive: a silent link is dead
// after 3 intervals, so the SIGSTOP bound is short.
const chaosKeepalive = 200 * time.Millisecond

type chaosScale struct {
	name            string
	clients         int           // per gateway
	probes          int           // keys compared between the gateways' rings
	redisDown       time.Duration // outage lengths
	mqDown          time.Duration
	soak, rebalance time.Duration // soak length, and a rebalance every
	churn           int           // clients replaced per round of soak (rounds run back to back)
}

func chaosSize(t *testing.T) chaosScale {
	switch s := os.Getenv("WSGATE_CHAOS_SCALE"); s {
	case "", "small":
		return chaosScale{name: "small", clients: 40, probes: 200, redisDown: 3 * time.Second, mqDown: 5 * time.Second,
			soak: 20 * time.Second, rebalance: 5 * time.Second, churn: 4}
	case "full":
		return chaosScale{name: "full", clients: 400, probes: 2000, redisDown: 10 * time.Second, mqDown: 20 * time.Second,
			soak: 10 * time.Minute, rebalance: time.Minute, churn: 20}
	default:
		t.Fatalf("WSGATE_CHAOS_SCALE=%q: want small or full", s)
		return chaosScale{}
	}
}

// tracked is a client whose messages a goroutine counts: echoes of the
// numbered texts it sends ("e:N") and pushes ("push-").
type tracked struct {
	*wsClient
	wmu    sync.Mutex
	sent   atomic.Int64 // last echo number sent
	echoed atomic.Int64 // last echo number received
	pushes atomic.Int64
}

func track(c *wsClient) *tracked {
	tc := &tracked{wsClient: c}
	go func() {
		for {
			select {
			case m := <-c.msgs:
				tc.note(m)
			case <-c.closed:
				for len(c.msgs) > 0 {
					tc.note(<-c.msgs)
				}
				return
			}
		}
	}()
	return tc
}

func (c *tracked) note(m string) {
	if s, ok := strings.CutPrefix(m, "e:"); ok {
		n, _ := strconv.ParseInt(s, 10, 64)
		c.echoed.Store(n) // echoes come back in order
	} else if strings.Contains(m, "push-") {
		c.pushes.Add(1)
	}
}

// ping sends the next numbered echo and returns its number.
func (c *tracked) ping() int64 {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := c.sent.Add(1)
	_ = c.ws.WriteMessage(websocket.TextMessage, []byte("e:"+strconv.FormatInt(n, 10)))
	return n
}

// chaosNode is a backend process with its admin (metrics) address.
type chaosNode struct {
	*proc
	id, admin string
}

// chaos is one scenario's cluster, its clients and their traffic.
type chaos struct {
	t        *testing.T
	size     chaosScale
	e        *clusterEnv
	gws      []*gw // g1, g2
	ids      []string
	node     map[string]*chaosNode
	rdb      *redis.Client // the shared Redis, not through a proxy
	scenario string

	mu      sync.Mutex
	clients []*tracked
	live    []*gw // gateways the traffic uses
	pushN   atomic.Int64
	rounds  atomic.Int64 // traffic rounds
	stop    chan struct{}
	stopped chan struct{}
}

var gatewayIDs = []string{"chaos-g1", "chaos-g2"}

// newChaos starts backends c1..c3 and gateways chaos-g1 and chaos-g2 (after
// prepare, which may put proxies between them and the services), connects
// size.clients clients to each gateway and starts the traffic.
func newChaos(t *testing.T, scenario string, prepare ...func(*clusterEnv)) *chaos {
	t.Helper()
	x := &chaos{t: t, size: chaosSize(t), e: newClusterEnv(t), node: map[string]*chaosNode{}, scenario: scenario,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	for _, f := range prepare {
		f(x.e)
	}
	x.rdb = x.e.rdb(t)
	for _, id := range []string{"c1", "c2", "c3"} {
		x.addBackend(id)
	}
	for _, id := range gatewayIDs {
		g := x.e.gateway(t, "--id", id, "--keepalive", chaosKeepalive.String())
		x.gws = append(x.gws, g)
	}
	x.live = slices.Clone(x.gws)
	x.waitRings("c1,c2,c3")
	spread := map[string]int{}
	for i, g := range x.gws {
		for _, k := range keys(fmt.Sprintf("g%d-user", i+1), x.size.clients) {
			c := track(connect(t, g, k))
			spread[c.node]++
			x.clients = append(x.clients, c)
		}
	}
	if len(spread) != 3 {
		t.Fatalf("clients spread over %v, want all 3 nodes", spread)
	}
	go x.traffic()
	t.Cleanup(x.stopTraffic)
	x.served(10 * time.Second)
	return x
}

// addBackend starts backend id with metrics on a free port.
func (x *chaos) addBackend(id string) *chaosNode {
	x.t.Helper()
	p, _ := x.e.backendAt(x.t, id, "127.0.0.1:0", "--admin", "127.0.0.1:0", "--keepalive", chaosKeepalive.String())
	n := &chaosNode{proc: p, id: id, admin: backendAdmin(x.t, p)}
	x.node[id] = n
	x.ids = append(x.ids, id)
	return n
}

var backendAdminRe = regexp.MustCompile(`backend admin listening.* addr=(\S+)`)

// backendAdmin is the admin address a started backend logged (before
// "backend started").
func backendAdmin(t testing.TB, p *proc) string {
	t.Helper()
	p.log.mu.Lock()
	m := backendAdminRe.FindStringSubmatch(p.log.all.String())
	p.log.mu.Unlock()
	if m == nil {
		t.Fatal("the backend did not log its admin address")
	}
	return m[1]
}

// traffic echoes a numbered message on every client and pushes to two
// random users (through a random live gateway) every 250ms until stopped.
func (x *chaos) traffic() {
	defer close(x.stopped)
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-tick.C:
		}
		x.rounds.Add(1)
		x.mu.Lock()
		cs, live := slices.Clone(x.clients), slices.Clone(x.live)
		x.mu.Unlock()
		for _, c := range cs {
			if !c.isClosed() {
				c.ping()
			}
		}
		for range 2 {
			c, g := cs[rand.IntN(len(cs))], live[rand.IntN(len(live))]
			body := fmt.Sprintf(`{"userId":%q,"message":"push-%d"}`, c.key, x.pushN.Add(1))
			if r, err := hc.Post("http://"+g.admin+"/api/send", "application/json", strings.NewReader(body)); err == nil {
				r.Body.Close()
			}
		}
	}
}

func (x *chaos) stopTraffic() {
	select {
	case <-x.stop:
	default:
		close(x.stop)
	}
	<-x.stopped
}

func (x *chaos) snapshot() []*tracked {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.clients)
}

// served checks every open client is served: an echo sent now comes back
// within the bound. It returns how long the slowest took.
func (x *chaos) served(within time.Duration) time.Duration {
	x.t.Helper()
	start := time.Now()
	want := map[*tracked]int64{}
	for _, c := range x.snapshot() {
		if !c.isClosed() {
			want[c] = c.ping()
		}
	}
	testutil.CheckFor(x.t, within, 10*time.Millisecond, func() error {
		for c, n := range want {
			if c.isClosed() {
				return fmt.Errorf("client %s on %s closed with %d (%v) while checked", c.key, c.node, c.code, c.err)
			}
			if c.echoed.Load() < n {
				return fmt.Errorf("client %s on %s: echo %d not back", c.key, c.node, n)
			}
		}
		return nil
	})
	return time.Since(start)
}

// waitRings waits until both gateways' rings are exactly want.
func (x *chaos) waitRings(want string) {
	x.t.Helper()
	for _, g := range x.gws {
		g.waitMembers(x.t, want)
	}
}

// ringChange polls the gateways (every 5ms) from since until each one's
// ring is want, and returns the time the last one got there.
func (x *chaos) ringChange(gws []*gw, want string, since time.Time, within time.Duration) time.Duration {
	x.t.Helper()
	var last time.Duration
	for _, g := range gws {
		testutil.CheckFor(x.t, within, 5*time.Millisecond, func() error {
			if got := g.members(x.t); got != want {
				return fmt.Errorf("gateway %s ring %q, want %q", g.addr, got, want)
			}
			return nil
		})
		last = max(last, time.Since(since))
	}
	return last
}

// disagreements counts the probe keys whose owner differs between the
// gateways, and compares their ring versions.
func (x *chaos) disagreements() (n int, versions []float64) {
	x.t.Helper()
	for _, g := range x.gws {
		versions = append(versions, testutil.Metric(x.t, g.admin, "wsgate_gateway_ring_version"))
	}
	for _, k := range keys("probe", x.size.probes) {
		if x.gws[0].owner(x.t, k) != x.gws[1].owner(x.t, k) {
			n++
		}
	}
	return n, versions
}

// closedWhere counts the closed clients that match and do not match on.
func closedWhere(cs []*tracked, on func(*tracked) bool) (match, total, other int) {
	for _, c := range cs {
		switch {
		case on(c):
			total++
			if c.isClosed() {
				match++
			}
		case c.isClosed():
			other++
		}
	}
	return
}

// waitClosed waits until every client that matches is closed and returns
// how long that took from since.
func (x *chaos) waitClosed(on func(*tracked) bool, since time.Time, within time.Duration) time.Duration {
	x.t.Helper()
	testutil.CheckFor(x.t, within, 5*time.Millisecond, func() error {
		if n, total, _ := closedWhere(x.snapshot(), on); n < total {
			return fmt.Errorf("%d of %d clients closed", n, total)
		}
		return nil
	})
	return time.Since(since)
}

// codes lists the close codes of the matching clients, as "code×count".
func codes(cs []*tracked, on func(*tracked) bool) string {
	n := map[int]int{}
	for _, c := range cs {
		if on(c) && c.isClosed() {
			n[c.code]++
		}
	}
	var out []string
	for code, k := range n {
		out = append(out, fmt.Sprintf("%d×%d", code, k))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// reconnect replaces every closed client of a live gateway with a new one
// of the same key, retrying until it is welcomed by a node other than
// avoid (a node still on a ring but not answering refuses it); it returns
// how many it replaced. Clients of gateways no longer live are dropped.
func (x *chaos) reconnect(avoid string, within time.Duration) int {
	x.t.Helper()
	x.mu.Lock()
	live := slices.Clone(x.live)
	x.mu.Unlock()
	var out []*tracked
	n := 0
	for _, c := range x.snapshot() {
		if !c.isClosed() {
			out = append(out, c)
			continue
		}
		if !slices.Contains(live, c.g) {
			continue
		}
		testutil.CheckFor(x.t, within, 20*time.Millisecond, func() error {
			nc, err := dial(c.g, c.key)
			if err != nil {
				return err
			}
			if nc.node == avoid {
				nc.ws.Close()
				return fmt.Errorf("client %s welcomed by %s", c.key, avoid)
			}
			x.t.Cleanup(func() { nc.ws.Close() })
			out = append(out, track(nc))
			return nil
		})
		n++
	}
	x.mu.Lock()
	x.clients = out
	x.mu.Unlock()
	return n
}

// alive tells whether p still runs (not exited, not a zombie).
func alive(p *proc) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	return len(rest) > 0 && rest[0] != 'Z'
}

// procs lists every process of the scenario with a name and admin address.
func (x *chaos) procs() (names []string, admins []string, ps []*proc) {
	for i, g := range x.gws {
		names, admins, ps = append(names, gatewayIDs[i]), append(admins, g.admin), append(ps, g.proc)
	}
	for _, id := range x.ids {
		n := x.node[id]
		names, admins, ps = append(names, id), append(admins, n.admin), append(ps, n.proc)
	}
	return
}

var chaosOutMu sync.Mutex

// row records one check: logged, appended to WSGATE_CHAOS_OUT, and an
// error of the test when it did not pass.
func (x *chaos) row(check, expected, measured string, pass bool) {
	x.t.Helper()
	verdict := "pass"
	if !pass {
		verdict = "**FAIL**"
		x.t.Errorf("%s: %s: expected %s, measured %s", x.scenario, check, expected, measured)
	}
	x.t.Logf("| %s | %s | %s | %s | %s |", x.scenario, check, expected, measured, verdict)
	path := os.Getenv("WSGATE_CHAOS_OUT")
	if path == "" {
		return
	}
	chaosOutMu.Lock()
	defer chaosOutMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		x.t.Fatal(err)
	}
	defer f.Close()
	if st, _ := f.Stat(); st.Size() == 0 {
		fmt.Fprintf(f, "| scenario (%s size) | check | expected | measured | result |\n| --- | --- | --- | --- | --- |\n", x.size.name)
	}
	fmt.Fprintf(f, "| %s | %s | %s | %s | %s |\n", x.scenario, check, expected, measured, verdict)
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" }

// TestChaosKillBackend: kill -9 a backend. Only its clients are closed,
// both gateways' rings agree again, and the time to detect is measured.
func TestChaosKillBackend(t *testing.T) {
	x := newChaos(t, "kill -9 a backend")
	victim := x.node["c2"]
	before := x.snapshot()
	onVictim := func(c *tracked) bool { return c.node == "c2" }
	t0 := time.Now()
	_ = victim.cmd.Process.Kill()
	detect := x.ringChange(x.gws, "c1,c3", t0, 5*time.Second)
	closing := x.waitClosed(onVictim, t0, 5*time.Second)
	x.served(10 * time.Second) // the others are still served after the closes
	n, total, other := closedWhere(before, onVictim)
	x.row("clients of the killed node closed", fmt.Sprintf("all %d, code 1011", total),
		fmt.Sprintf("%d (%s) in %s", n, codes(before, onVictim), ms(closing)), n == total && codes(before, onVictim) == fmt.Sprintf("1011×%d", total))
	x.row("clients of other nodes closed", "0", strconv.Itoa(other), other == 0)
	x.row("time to detect (kill → off both rings)", "≤ 1300 ms (node TTL 1 s + reconcile 300 ms; a dead link is seen at once)", ms(detect), detect <= 1300*time.Millisecond)
	bad, versions := x.disagreements()
	x.row("keys whose owner differs between the gateways", fmt.Sprintf("0 of %d, equal ring versions", x.size.probes),
		fmt.Sprintf("%d, versions %s", bad, fmtVersions(versions)), bad == 0 && versions[0] == versions[1])
	moved := x.reconnect("", 10*time.Second)
	x.served(10 * time.Second)
	x.row("its clients reconnected and served", fmt.Sprintf("%d", total), strconv.Itoa(moved), moved == total)
}

func fmtVersions(v []float64) string {
	var s []string
	for _, f := range v {
		s = append(s, fmt.Sprintf("%013x", uint64(f)))
	}
	return strings.Join(s, " / ")
}

// presenceOf counts the Redis entries of gateway id: its member set, its
// session set's members and its user-hash fields for keys.
func (x *chaos) presenceOf(ctx context.Context, id string, users []string) (int, error) {
	rdb := x.rdb
	p := x.e.name
	n := 0
	if _, err := rdb.ZScore(ctx, p+":gateways", id).Result(); err == nil {
		n++
	}
	c, err := rdb.SCard(ctx, p+":gw:"+id).Result()
	if err != nil {
		return 0, err
	}
	n += int(c)
	for _, u := range users {
		fields, err := rdb.HKeys(ctx, p+":user:"+u).Result()
		if err != nil {
			return 0, err
		}
		for _, f := range fields {
			if strings.HasPrefix(f, id+"/") {
				n++
			}
		}
	}
	return n, nil
}

// TestChaosKillGateway: kill -9 a gateway. Its presence leaves Redis
// within the presence TTL plus one reap period of the survivor, and pushes
// to the survivor's users still arrive.
func TestChaosKillGateway(t *testing.T) {
	x := newChaos(t, "kill -9 a gateway")
	ctx := context.Background()
	victim := x.gws[1]
	var users []string
	for _, c := range x.snapshot() {
		if c.g == victim {
			users = append(users, c.key)
		}
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n, err := x.presenceOf(ctx, gatewayIDs[1], users); err != nil || n < 2*len(users)+1 {
			return fmt.Errorf("presence of %s: %d entries (%v), want %d", gatewayIDs[1], n, err, 2*len(users)+1)
		}
		return nil
	})
	before := x.snapshot()
	x.mu.Lock()
	x.live = x.gws[:1]
	x.mu.Unlock()
	t0 := time.Now()
	_ = victim.cmd.Process.Kill()
	// The survivor reaps every presence TTL / 3 (10 s / 3) the gateways
	// whose last beat is older than the TTL.
	const bound = 10*time.Second + 10*time.Second/3
	var gone time.Duration
	testutil.CheckFor(t, bound+5*time.Second, 50*time.Millisecond, func() error {
		n, err := x.presenceOf(ctx, gatewayIDs[1], users)
		if err != nil || n > 0 {
			return fmt.Errorf("%d presence entries of the killed gateway left (%v)", n, err)
		}
		gone = time.Since(t0)
		return nil
	})
	x.row("its presence entries gone from Redis", "≤ 13333 ms (presence TTL 10 s + reap period 3.3 s) + 250 ms polling", ms(gone)+fmt.Sprintf(" (%d sessions)", len(users)), gone <= bound+250*time.Millisecond)
	onVictim := func(c *tracked) bool { return c.g == victim }
	n, total, other := closedWhere(before, onVictim)
	x.row("clients of the killed gateway disconnected", strconv.Itoa(total), strconv.Itoa(n), n == total)
	x.row("clients of the surviving gateway closed", "0", strconv.Itoa(other), other == 0)
	var where struct{ Online bool }
	x.gws[0].get(t, "/api/users/"+users[0], &where)
	x.row("GET /api/users/{id} of a user of the killed gateway, on the survivor", "offline", map[bool]string{true: "online", false: "offline"}[where.Online], !where.Online)

	// A push to every user of the survivor arrives (and is counted delivered).
	x.reconnect("", 10*time.Second)
	survivors := x.snapshot()
	got0 := make([]int64, len(survivors))
	for i, c := range survivors {
		got0[i] = c.pushes.Load()
	}
	delivered := 0
	for _, c := range survivors {
		var res struct{ Delivered int }
		x.gws[0].post(t, "/api/send", fmt.Sprintf(`{"userId":%q,"message":"push-final"}`, c.key), &res)
		delivered += res.Delivered
	}
	arrived := 0
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		arrived = 0
		for i, c := range survivors {
			if c.pushes.Load() > got0[i] {
				arrived++
			}
		}
		if arrived < len(survivors) {
			return fmt.Errorf("%d of %d pushes arrived", arrived, len(survivors))
		}
		return nil
	})
	x.row("pushes to users of the surviving gateway", fmt.Sprintf("%d of %d arrive", len(survivors), len(survivors)),
		fmt.Sprintf("%d arrived (%d reported delivered)", arrived, delivered), arrived == len(survivors))
}

// TestChaosOutages: Redis, then RabbitMQ, cut off under load (through
// proxies: the shared services stay up for the other tests; a cut proxy
// closes every connection and refuses new ones, as a dead service does),
// Redis's keys of the cluster wiped as a restart would. No process dies,
// no client is dropped, echo goes on, presence is rewritten, and a backend
// started after the broker is back reaches both rings.
func TestChaosOutages(t *testing.T) {
	var mq, rd *testutil.Proxy
	x := newChaos(t, "Redis and RabbitMQ outages", func(e *clusterEnv) {
		mq = testutil.NewProxy(t, "127.0.0.1:5672")
		rd = testutil.NewProxy(t, "127.0.0.1:6379")
		e.amqp, e.redis = "amqp://guest:guest@"+mq.Addr()+"/", "redis://"+rd.Addr()+"/0"
	})
	before := x.snapshot()
	outage := func(p *testutil.Proxy, d time.Duration, wipe bool) (rounds int, slowest time.Duration, pushes string) {
		var slowPush time.Duration
		t.Helper()
		p.SetDown(true)
		if wipe {
			x.e.flush(t)
		}
		t0 := time.Now()
		var ok, sent int
		for time.Since(t0) < d {
			slowest = max(slowest, x.served(5*time.Second))
			rounds++
			// A push through each gateway to one of its users.
			for _, g := range x.gws {
				for _, c := range x.snapshot() {
					if c.g == g {
						var res struct{ Delivered int }
						t1 := time.Now()
						g.post(t, "/api/send", fmt.Sprintf(`{"userId":%q,"message":"push-outage"}`, c.key), &res)
						slowPush = max(slowPush, time.Since(t1))
						sent++
						ok += res.Delivered
						break
					}
				}
			}
		}
		p.SetDown(false)
		return rounds, slowest, fmt.Sprintf("%d of %d delivered, slowest answer %s", ok, sent, ms(slowPush))
	}
	depsUp := func() time.Duration {
		t0 := time.Now()
		for _, g := range x.gws {
			g.waitDependencies(t, true)
		}
		return time.Since(t0)
	}

	rounds, slowest, pushes := outage(rd, x.size.redisDown, true)
	x.row(fmt.Sprintf("echo from every client while Redis is down %s (keys wiped)", x.size.redisDown), "every round, each ≤ 5 s",
		fmt.Sprintf("%d rounds, slowest %s", rounds, ms(slowest)), true)
	x.row("pushes while Redis is down", "delivered (routing needs no Redis)", pushes, !strings.HasPrefix(pushes, "0 "))
	back := depsUp()
	// Presence rewritten: every user is online on its node again.
	t0 := time.Now()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, c := range x.snapshot() {
			var where struct {
				Online   bool
				Sessions []struct{ Node string }
			}
			x.gws[0].get(t, "/api/users/"+c.key, &where)
			if !where.Online || len(where.Sessions) != 1 || where.Sessions[0].Node != c.node {
				return fmt.Errorf("presence of %s: %+v, want one session on %s", c.key, where, c.node)
			}
		}
		return nil
	})
	repaired := time.Since(t0) + back
	x.row("presence repaired after Redis returns", fmt.Sprintf("all %d users online on their node", len(before)), "after "+ms(repaired), true)

	rounds, slowest, pushes = outage(mq, x.size.mqDown, false)
	x.row(fmt.Sprintf("echo from every client while RabbitMQ is down %s", x.size.mqDown), "every round, each ≤ 5 s",
		fmt.Sprintf("%d rounds, slowest %s", rounds, ms(slowest)), true)
	x.row("pushes while RabbitMQ is down", "delivered", pushes, !strings.HasPrefix(pushes, "0 "))
	depsUp()

	names, _, ps := x.procs()
	var dead []string
	for i, p := range ps {
		if !alive(p) {
			dead = append(dead, names[i])
		}
	}
	x.row("processes that died", "0 of 5", fmt.Sprint(len(dead), " ", dead), len(dead) == 0)
	_, _, other := closedWhere(before, func(*tracked) bool { return false })
	x.row("clients closed by the outages", "0", strconv.Itoa(other), other == 0)

	t0 = time.Now()
	x.addBackend("c4")
	join := x.ringChange(x.gws, "c1,c2,c3,c4", t0, 20*time.Second)
	x.row("a backend started after the broker returns reaches both rings", "≤ 5 s", ms(join)+" from its start", join <= 5*time.Second)
}

// TestChaosStopBackend: SIGSTOP a backend (its sockets stay open, nothing
// answers): the gateways' link keepalive closes its clients within 3
// intervals plus one janitor tick, the clients find another node, and
// after SIGCONT it rejoins both rings and takes its keys back.
func TestChaosStopBackend(t *testing.T) {
	x := newChaos(t, fmt.Sprintf("SIGSTOP a backend (--keepalive %s)", chaosKeepalive))
	victim := x.node["c3"]
	before := x.snapshot()
	onVictim := func(c *tracked) bool { return c.node == "c3" }
	silent0 := x.silenceDrops("c3")
	t0 := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = victim.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	closing := x.waitClosed(onVictim, t0, 10*time.Second)
	bound := 3*chaosKeepalive + chaosKeepalive/4
	n, total, other := closedWhere(before, onVictim)
	x.row("its clients closed by link keepalive", fmt.Sprintf("all %d, code 1011, ≤ %s (3 × keepalive + janitor tick) + 250 ms scheduling", total, ms(bound)),
		fmt.Sprintf("%d (%s) in %s", n, codes(before, onVictim), ms(closing)), n == total && closing <= bound+250*time.Millisecond)
	x.row("silence drops counted (wsgate_gateway_link_silence_drops_total{node=\"c3\"})", "> 0 on both gateways",
		fmt.Sprintf("+%v", x.silenceDrops("c3").Sub(silent0)), slices.Min(x.silenceDrops("c3").Sub(silent0)) > 0)
	x.row("clients of other nodes closed", "0", strconv.Itoa(other), other == 0)
	off := x.ringChange(x.gws, "c1,c2", t0, 15*time.Second)
	x.row("stopped node off both rings", "≤ 1300 ms (registry: node TTL 1 s + reconcile 300 ms)", ms(off), off <= 1300*time.Millisecond)
	moved := x.reconnect("c3", 15*time.Second)
	took := time.Since(t0)
	x.served(10 * time.Second)
	x.row("its clients moved (reconnected to another node, served)", strconv.Itoa(total), fmt.Sprintf("%d, all within %s of the stop", moved, ms(took)), moved == total)

	resumed = true
	t1 := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	back := x.ringChange(x.gws, "c1,c2,c3", t1, 15*time.Second)
	x.row("rejoins both rings after SIGCONT", "≤ 1 s (next heartbeat 200 ms + reconcile 300 ms)", ms(back), back <= time.Second)
	cs := x.snapshot()
	owner := map[string]string{}
	for _, c := range cs {
		owner[c.key] = c.g.owner(t, c.key)
	}
	x.waitClosed(func(c *tracked) bool { return owner[c.key] != c.node }, t1, 20*time.Second)
	mv, mvTotal, stray := closedWhere(cs, func(c *tracked) bool { return owner[c.key] != c.node })
	x.reconnect("", 10*time.Second)
	x.served(10 * time.Second)
	onC3 := 0
	for _, c := range x.snapshot() {
		if c.node == "c3" {
			onC3++
		}
	}
	x.row("its keys move back (1012), the rest stay", fmt.Sprintf("%d moved, 0 others closed, c3 serves its keys", mvTotal),
		fmt.Sprintf("%d moved (%s), %d others closed, %d clients on c3", mv, codes(cs, func(c *tracked) bool { return owner[c.key] != c.node }), stray, onC3),
		mv == mvTotal && stray == 0 && onC3 > 0 && alive(victim.proc))
}

// silenceDrops is each gateway's wsgate_gateway_link_silence_drops_total
// for node.
func (x *chaos) silenceDrops(node string) vec {
	var v vec
	for _, g := range x.gws {
		v = append(v, testutil.Metric(x.t, g.admin, `wsgate_gateway_link_silence_drops_total{node="`+node+`"}`))
	}
	return v
}

type vec []float64

func (a vec) Sub(b vec) vec {
	out := make(vec, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// usage is a process's footprint from its /metrics.
type usage struct{ rss, heap, goroutines, fds float64 }

func (x *chaos) usage() []usage {
	_, admins, _ := x.procs()
	out := make([]usage, len(admins))
	for i, a := range admins {
		out[i] = usage{testutil.Metric(x.t, a, "process_resident_memory_bytes"), testutil.Metric(x.t, a, "go_memstats_heap_inuse_bytes"),
			testutil.Metric(x.t, a, "go_goroutines"), testutil.Metric(x.t, a, "process_open_fds")}
	}
	return out
}

// settle waits until the gateways hold exactly the test's open clients.
func (x *chaos) settle() {
	x.t.Helper()
	testutil.CheckFor(x.t, 20*time.Second, 20*time.Millisecond, func() error {
		want := map[*gw]float64{}
		for _, c := range x.snapshot() {
			if !c.isClosed() {
				want[c.g]++
			}
		}
		for _, g := range x.gws {
			if n := testutil.Metric(x.t, g.admin, "wsgate_gateway_connections"); n != want[g] {
				return fmt.Errorf("gateway %s holds %v clients, the test %v", g.addr, n, want[g])
			}
		}
		return nil
	})
}

// TestChaosSoak: connects, disconnects and messages for size.soak, with a
// backend added or removed every size.rebalance; the five processes'
// RSS, goroutines and descriptors at the start and the end.
func TestChaosSoak(t *testing.T) {
	x := newChaos(t, "soak with churn")
	x.served(10 * time.Second)
	x.settle()
	start := x.usage()
	t0 := time.Now()
	var extra *chaosNode
	var mid []usage
	var connects, closes, rebalances, seq, moves, needlessCloses int
	lastRebalance := t0
	// rebalance adds c4, or removes it when it runs, and reconnects the
	// clients whose key moved.
	rebalance := func() {
		rebalances++
		if extra == nil {
			extra = x.addBackend("c4")
			x.waitRings("c1,c2,c3,c4")
		} else {
			x.removeBackend(extra)
			extra = nil
			x.waitRings("c1,c2,c3")
		}
		moved, needless := x.rebalanced()
		moves += moved
		needlessCloses += needless
		connects += moved
	}
	for time.Since(t0) < x.size.soak {
		// Churn: close some clients (half with a close handshake, half
		// dropping the socket) and connect as many new ones.
		cs := x.snapshot()
		for range x.size.churn {
			c := cs[rand.IntN(len(cs))]
			if c.isClosed() {
				continue
			}
			if rand.IntN(2) == 0 {
				c.wmu.Lock()
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				c.wmu.Unlock()
			}
			c.ws.Close()
			<-c.closed
			closes++
		}
		x.mu.Lock()
		x.clients = slices.DeleteFunc(x.clients, func(c *tracked) bool { return c.isClosed() })
		x.mu.Unlock()
		for range len(cs) - len(x.snapshot()) {
			seq++
			g := x.gws[seq%2]
			c := track(connect(t, g, fmt.Sprintf("churn-%d", seq)))
			x.mu.Lock()
			x.clients = append(x.clients, c)
			x.mu.Unlock()
			connects++
		}
		if time.Since(lastRebalance) >= x.size.rebalance {
			lastRebalance = time.Now()
			rebalance()
		}
		x.served(10 * time.Second)
		if mid == nil && time.Since(t0) >= x.size.soak/2 {
			mid = x.usage() // growth in the first half only is warm-up, not a leak
		}
	}
	if extra != nil {
		rebalance()
	}
	x.served(10 * time.Second)
	x.settle()
	end := x.usage()
	x.row("churn", fmt.Sprintf("%s, %d clients held", x.size.soak, 2*x.size.clients),
		fmt.Sprintf("%d connects, %d closes, %d rebalances, %d traffic rounds (an echo on every client, 2 pushes)", connects, closes, rebalances, x.rounds.Load()), true)
	x.row("clients closed by the rebalances whose owner did not change", "0", fmt.Sprintf("%d (%d moved)", needlessCloses, moves), needlessCloses == 0)
	names, _, _ := x.procs()
	for i, name := range names {
		s, m, e := start[i], mid[i], end[i]
		x.row(name+": goroutines start → mid → end", "end ≤ start + 10% + 10", fmt.Sprintf("%v → %v → %v", s.goroutines, m.goroutines, e.goroutines), e.goroutines <= s.goroutines*1.1+10)
		x.row(name+": open fds start → mid → end", "end ≤ start + 10% + 10", fmt.Sprintf("%v → %v → %v", s.fds, m.fds, e.fds), e.fds <= s.fds*1.1+10)
		x.row(name+": RSS (Go heap in use) start → mid → end", "end RSS ≤ start × 1.5 + 16 MiB",
			fmt.Sprintf("%.1f (%.1f) → %.1f (%.1f) → %.1f (%.1f) MiB", s.rss/(1<<20), s.heap/(1<<20), m.rss/(1<<20), m.heap/(1<<20), e.rss/(1<<20), e.heap/(1<<20)),
			e.rss <= s.rss*1.5+16<<20)
	}
}

// rebalanced waits, after a ring change, until every client whose key
// now belongs to another node is closed, reconnects them, and returns how
// many moved and how many other clients were closed meanwhile.
func (x *chaos) rebalanced() (moved, needless int) {
	x.t.Helper()
	cs := x.snapshot()
	owner := map[*tracked]string{}
	for _, c := range cs {
		owner[c] = c.g.owner(x.t, c.key)
	}
	movedOn := func(c *tracked) bool { return owner[c] != c.node }
	x.waitClosed(movedOn, time.Now(), 20*time.Second)
	_, _, needless = closedWhere(cs, movedOn)
	return x.reconnect("", 10*time.Second), needless
}

// removeBackend stops n gracefully (SIGTERM: its clients are moved away
// with 1012) and waits for its exit.
func (x *chaos) removeBackend(n *chaosNode) {
	x.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.cmd.Wait(); err != nil {
		x.t.Fatalf("backend %s exit: %v", n.id, err)
	}
	delete(x.node, n.id)
	x.ids = slices.DeleteFunc(x.ids, func(id string) bool { return id == n.id })
}
