package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wire"
)

// Link liveness (docs/protocol.md, "Keepalive"), with a 200 ms interval so
// that the old rule's failure (a link dropped after 3 intervals of one-way
// traffic) shows within a second.
const testKeepAlive = 200 * time.Millisecond

// sink is a backend application that never answers kaClient messages: the
// only backend->gateway traffic is what a test pushes with SendToKey.
type sink struct {
	got    atomic.Int64
	claims atomic.Pointer[string] // Claims() of the last session opened
}

func (s *sink) OnOpen(ss *backend.Session)                     { c := string(ss.Claims()); s.claims.Store(&c) }
func (s *sink) OnMessage(*backend.Session, bool, []byte)       { s.got.Add(1) }
func (s *sink) OnClose(*backend.Session, uint16, string)       {}
func (s *sink) OnPush(key string, data []byte) (delivered int) { return 0 }

// keepRig is a gateway and one backend (application: sink) joined through
// a proxy that can freeze either direction of the link.
type keepRig struct {
	gw    *gateway.Gateway
	node  *backend.Node
	app   *sink
	proxy *testutil.Proxy
}

func startKeepRig(t *testing.T) *keepRig { return startSinkRig(t, nil) }

// startSinkRig starts a keepRig whose gateway config tune may change.
func startSinkRig(t *testing.T, tune func(*gateway.Config)) *keepRig {
	t.Helper()
	r := &keepRig{app: &sink{}}
	n, err := backend.NewNode(backend.Config{ID: "kn", Listen: "127.0.0.1:0", Logger: testLogger(), PingInterval: testKeepAlive}, r.app)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	r.node = n
	r.proxy = testutil.NewProxy(t, n.Addr())
	src, err := membership.NewStatic([]membership.Node{{ID: "kn", Addr: r.proxy.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: src,
		KeepAlive: testKeepAlive, LinkRetry: time.Hour, Logger: testLogger()}
	if tune != nil {
		tune(&cfg)
	}
	g := runGateway(t, cfg)
	r.gw = g
	return r
}

// kaClient is a WebSocket kaClient whose reader records what it gets and how
// it was closed.
type kaClient struct {
	ws     *websocket.Conn
	got    atomic.Int64
	closed chan struct{}
	code   int // valid after closed
	reason string
	at     time.Time
}

func (r *keepRig) connect(t *testing.T, key string) *kaClient {
	t.Helper()
	ws, err := dialErr(r.gw.Addr(), "/ws/"+key, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", key, err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &kaClient{ws: ws, closed: make(chan struct{})}
	go func() {
		defer close(c.closed)
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				c.at = time.Now()
				c.code = -1
				if ce, ok := err.(*websocket.CloseError); ok {
					c.code, c.reason = ce.Code, ce.Text
				}
				return
			}
			c.got.Add(1)
		}
	}()
	return c
}

// silenceDrops sums wsgate_gateway_link_silence_drops_total from /metrics.
func silenceDrops(t *testing.T, g *gateway.Gateway) int {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "wsgate_gateway_link_silence_drops_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("bad metric line %q", line)
		}
		sum += int(v)
	}
	return sum
}

// TestLinkKeepaliveTrafficPatterns: whatever way the data flows, no link
// is dropped by the silence rule over many intervals. Before the fixed
// ping schedule, pushes with quiet clients ("pushes only") had every
// kaClient closed with 1011 after 3 intervals.
func TestLinkKeepaliveTrafficPatterns(t *testing.T) {
	const (
		clients = 4
		run     = 12 * testKeepAlive // 4x the silence bound
		every   = testKeepAlive / 4
	)
	for _, tc := range []struct {
		name       string
		send, push bool
	}{
		{"idle", false, false},
		{"client messages only", true, false},
		{"pushes only", false, true},
		{"both", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startKeepRig(t)
			cs := make([]*kaClient, clients)
			for i := range cs {
				cs[i] = r.connect(t, fmt.Sprintf("u%d", i))
			}
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if n := r.node.SessionCount(); n != clients {
					return fmt.Errorf("%d sessions on the backend, want %d", n, clients)
				}
				return nil
			})
			var sendErr error
			var mu sync.Mutex
			tick := time.NewTicker(every)
			defer tick.Stop()
			for end := time.Now().Add(run); time.Now().Before(end); <-tick.C {
				for i, c := range cs {
					if tc.send {
						if err := c.ws.WriteMessage(websocket.TextMessage, []byte("up")); err != nil {
							mu.Lock()
							sendErr = err
							mu.Unlock()
						}
					}
					if tc.push {
						r.node.SendToKey(fmt.Sprintf("u%d", i), false, []byte("down"))
					}
				}
			}
			if sendErr != nil {
				t.Fatalf("kaClient write: %v", sendErr)
			}
			for i, c := range cs {
				select {
				case <-c.closed:
					t.Fatalf("client u%d closed: %d %q", i, c.code, c.reason)
				default:
				}
			}
			// The traffic of the pattern really flowed.
			if tc.send {
				testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
					if n := r.app.got.Load(); n < clients*int64(run/every)/2 {
						return fmt.Errorf("backend got %d kaClient messages", n)
					}
					return nil
				})
			}
			if tc.push {
				for i, c := range cs {
					if n := c.got.Load(); n < int64(run/every)/2 {
						t.Fatalf("client u%d got %d pushes", i, n)
					}
				}
			}
			if n := silenceDrops(t, r.gw); n != 0 {
				t.Fatalf("gateway dropped %d links as silent", n)
			}
			if st := r.node.Stats(); st.LinksSilent != 0 || st.Sessions != clients {
				t.Fatalf("backend: %d links dropped as silent, %d sessions (want 0, %d)", st.LinksSilent, st.Sessions, clients)
			}
		})
	}
}

// TestLinkKeepaliveSilentPeer: a backend that stops sending (hung, stopped)
// is detected by the gateway, and a gateway that stops sending is detected
// by the backend, within the stated bound (3 intervals, plus the gateway's
// detector tick), never before 3 intervals; the link's clients are closed.
func TestLinkKeepaliveSilentPeer(t *testing.T) {
	const bound = wire.DeadIntervals * testKeepAlive
	const slack = time.Second // scheduling under -race on a busy 2-core box
	for _, tc := range []struct {
		name   string
		frozen testutil.Direction
	}{
		{"backend goes silent", testutil.FromTarget},
		{"gateway goes silent", testutil.ToTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startKeepRig(t)
			cs := []*kaClient{r.connect(t, "a"), r.connect(t, "b")}
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if n := r.node.SessionCount(); n != len(cs) {
					return fmt.Errorf("%d sessions on the backend, want %d", n, len(cs))
				}
				return nil
			})
			// Pushes keep the backend->gateway direction busy until it is frozen.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(testKeepAlive / 4):
						r.node.SendToKey("a", false, []byte("push"))
					}
				}
			}()
			frozen := time.Now()
			r.proxy.Freeze(tc.frozen, true)
			for _, c := range cs {
				select {
				case <-c.closed:
				case <-time.After(bound + slack + 5*time.Second):
					t.Fatal("kaClient not closed after the link went silent")
				}
				if c.code != 1011 || c.reason != "backend link lost" {
					t.Fatalf("kaClient closed with %d %q, want 1011 \"backend link lost\"", c.code, c.reason)
				}
				if took := c.at.Sub(frozen); took > bound+slack {
					t.Fatalf("silent link detected after %v, bound %v (+%v slack)", took, bound, slack)
				}
			}
			switch tc.frozen {
			case testutil.FromTarget: // the gateway heard nothing
				if n := silenceDrops(t, r.gw); n < 1 {
					t.Fatalf("gateway counted %d silence drops, want at least 1", n)
				}
				if took := cs[0].at.Sub(frozen); took < bound-testKeepAlive/4 {
					t.Fatalf("link dropped after %v of silence, before the bound %v", took, bound)
				}
			case testutil.ToTarget: // the backend heard nothing
				testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
					if st := r.node.Stats(); st.LinksSilent < 1 || st.Sessions != 0 {
						return fmt.Errorf("backend: %d silence drops, %d sessions", st.LinksSilent, st.Sessions)
					}
					return nil
				})
			}
		})
	}
}

// TestFrozenBackendLeavesRing: a backend that stops answering (SIGSTOP:
// its kernel still accepts connections) leaves this gateway's ring once
// its control link is silent for 3 keepalive intervals and the redial's
// Hello does not come within that bound either — not after a fixed 5 s.
func TestFrozenBackendLeavesRing(t *testing.T) {
	r := startKeepRig(t)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if r.gw.Ring().Member("kn") == nil {
			return fmt.Errorf("kn not on the ring yet")
		}
		return nil
	})
	frozen := time.Now()
	r.proxy.Freeze(testutil.FromTarget, true)
	r.proxy.Freeze(testutil.ToTarget, true)
	// 3 intervals of silence, then a Hello wait of the same bound, plus
	// the janitor's tick and scheduling slack.
	limit := 2*wire.DeadIntervals*testKeepAlive + time.Second
	testutil.CheckFor(t, limit, 10*time.Millisecond, func() error {
		if r.gw.Ring().Member("kn") != nil {
			return fmt.Errorf("the frozen backend is still on the ring after %v", time.Since(frozen).Round(time.Millisecond))
		}
		return nil
	})
	t.Logf("frozen backend off the ring after %v", time.Since(frozen).Round(time.Millisecond))
}

// TestKeepaliveStalledLoop: a gateway whose event loops are stalled (an
// overload: at 200,000 clients on 2 cores, a reconnect storm kept a loop
// from reading its links for 45 s) longer than 3 keepalive intervals does
// not drop a link whose backend kept sending: the backend's Pings wait
// unread in the socket, so the loop is behind, not the backend, and its
// clients stay.
func TestKeepaliveStalledLoop(t *testing.T) {
	app := &sink{}
	n, err := backend.NewNode(backend.Config{ID: "st", Listen: "127.0.0.1:0", Logger: testLogger(),
		PingInterval: testKeepAlive, LinkTimeout: time.Minute}, app) // the backend itself waits
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	src, err := membership.NewStatic([]membership.Node{{ID: "st", Addr: n.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	g := runGateway(t, gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: src,
		KeepAlive: testKeepAlive, LinkRetry: time.Hour, Logger: testLogger()})
	r := &keepRig{gw: g, node: n, app: app}
	c := r.connect(t, "a")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n.SessionCount() != 1 {
			return fmt.Errorf("no session on the backend yet")
		}
		return nil
	})
	if n := g.StallLoops(3*wire.DeadIntervals*testKeepAlive + time.Second); n == 0 { // the overload under test
		t.Fatal("no event loop to stall")
	}
	// Once the loop runs again the client is still served: a push reaches it.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-c.closed:
			t.Fatalf("client closed with %d %q after the loop stall", c.code, c.reason)
		default:
		}
		n.SendToKey("a", false, []byte("after the stall"))
		if c.got.Load() == 0 {
			return fmt.Errorf("no push delivered yet")
		}
		return nil
	})
	if d := silenceDrops(t, g); d != 0 {
		t.Fatalf("%d links dropped as silent during the stall", d)
	}
}
