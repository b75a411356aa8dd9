package gateway_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

// Tests of the edge limits (docs/operations.md, "Limits"): each one makes
// its limit trip with real sockets and checks what the client sees and the
// rejection metric.

// rejected reads wsgate_gateway_rejected_total{reason} from /metrics.
func rejected(t *testing.T, g *gateway.Gateway, reason string) int {
	t.Helper()
	return metricSample(t, g, `wsgate_gateway_rejected_total{reason="`+reason+`"}`)
}

// metricSample reads one sample (name and labels exactly) from the
// gateway's /metrics; 0 when absent.
func metricSample(t *testing.T, g *gateway.Gateway, sample string) int {
	t.Helper()
	return int(testutil.Metric(t, g.AdminAddr(), sample))
}

// dialFrom upgrades a client at path from source address src (127.0.0.x).
// On a refusal it returns the HTTP response (body read) and the error.
func dialFrom(addr, path, src string) (*websocket.Conn, *http.Response, string, error) {
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDial: func(network, a string) (net.Conn, error) {
		nd := net.Dialer{Timeout: 5 * time.Second}
		if src != "" {
			nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		return nd.Dial(network, a)
	}}
	ws, resp, err := d.Dial("ws://"+addr+path, nil)
	var body string
	if resp != nil && resp.Body != nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
	return ws, resp, body, err
}

// expectRefused dials and wants the HTTP status code with a Retry-After.
func expectRefused(t *testing.T, addr, path, src string, code int) {
	t.Helper()
	ws, resp, body, err := dialFrom(addr, path, src)
	if err == nil {
		ws.Close()
		t.Fatalf("dial %s from %s: upgraded, want HTTP %d", path, src, code)
	}
	if resp == nil || resp.StatusCode != code {
		t.Fatalf("dial %s from %s: %v (response %v), want HTTP %d", path, src, err, resp, code)
	}
	if resp.Header.Get("Retry-After") == "" || body == "" {
		t.Fatalf("HTTP %d without Retry-After or a reason: %v %q", code, resp.Header, body)
	}
}

func readyz(t *testing.T, g *gateway.Gateway) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMaxConns(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxConns = 3 })
	g := c.Gateway()
	var held []*websocket.Conn
	for i := range 3 {
		ws, _ := dial(t, c, fmt.Sprintf("/ws/cap%d", i))
		held = append(held, ws)
	}
	expectRefused(t, g.Addr(), "/ws/over", "", http.StatusServiceUnavailable)
	// A raw connection that sends nothing is answered and closed too.
	raw := rawDial(t, g.Addr())
	b, err := io.ReadAll(raw.br)
	if !strings.HasPrefix(string(b), "HTTP/1.1 503 ") || !strings.Contains(string(b), "--max-conns") {
		t.Fatalf("silent connection over the cap got %q (%v), want a 503 naming --max-conns", b, err)
	}
	if code, body := readyz(t, g); code != http.StatusServiceUnavailable || !strings.Contains(body, "connection limit") {
		t.Fatalf("/readyz at the cap: %d %s", code, body)
	}
	if n := rejected(t, g, "max_conns"); n < 2 {
		t.Fatalf("rejected{max_conns} = %d, want >= 2", n)
	}
	// A slot frees: the next client gets in.
	held[0].Close()
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		ws, _, _, err := dialFrom(g.Addr(), "/ws/after", "")
		if err != nil {
			return err
		}
		ws.Close()
		return nil
	})
	if code, _ := readyz(t, g); code != http.StatusOK {
		// after's close may not be processed yet; ready once below the cap
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if code, body := readyz(t, g); code != http.StatusOK {
				return fmt.Errorf("/readyz %d %s", code, body)
			}
			return nil
		})
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxConnsPerIP = 2 })
	g := c.Gateway()
	for i := range 2 {
		ws, _, _, err := dialFrom(g.Addr(), fmt.Sprintf("/ws/ip%d", i), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
	}
	expectRefused(t, g.Addr(), "/ws/ip-over", "127.0.0.1", http.StatusTooManyRequests)
	// Another address is not affected.
	ws, _, _, err := dialFrom(g.Addr(), "/ws/other", "127.0.0.2")
	if err != nil {
		t.Fatalf("other address refused: %v", err)
	}
	ws.Close()
	if n := rejected(t, g, "per_ip_conns"); n != 1 {
		t.Fatalf("rejected{per_ip_conns} = %d, want 1", n)
	}
}

func TestHandshakeRatePerIP(t *testing.T) {
	// 0.5 upgrades per second, burst 1: the second dial in a row is refused.
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.HandshakeRatePerIP = 0.5 })
	g := c.Gateway()
	ws, _, _, err := dialFrom(g.Addr(), "/ws/r1", "127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
	expectRefused(t, g.Addr(), "/ws/r2", "127.0.0.3", http.StatusTooManyRequests)
	ws, _, _, err = dialFrom(g.Addr(), "/ws/r3", "127.0.0.4")
	if err != nil {
		t.Fatalf("other address refused: %v", err)
	}
	ws.Close()
	if n := rejected(t, g, "handshake_rate"); n != 1 {
		t.Fatalf("rejected{handshake_rate} = %d, want 1", n)
	}
}

func TestMaxFrameRate(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxFrameRate = 10 }) // burst 20
	g := c.Gateway()
	// Within the burst: every message is relayed and echoed.
	calm, _ := dial(t, c, "/ws/calm")
	for i := range 15 {
		if err := calm.WriteMessage(websocket.TextMessage, []byte("m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 15 {
		_ = calm.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := calm.ReadMessage(); err != nil {
			t.Fatalf("calm client: %v", err)
		}
	}
	// A flood: closed with 1008 "rate limit".
	flood, _ := dial(t, c, "/ws/flood")
	go func() {
		for i := 0; i < 500; i++ {
			if flood.WriteMessage(websocket.TextMessage, []byte("x")) != nil {
				return
			}
		}
	}()
	if code, reason := closeCode(t, flood); code != 1008 || reason != "rate limit" {
		t.Fatalf("flooding client closed with %d %q, want 1008 \"rate limit\"", code, reason)
	}
	if n := rejected(t, g, "frame_rate"); n != 1 {
		t.Fatalf("rejected{frame_rate} = %d, want 1", n)
	}
}

func TestPingAndIdleTimeout(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) {
		cfg.PingInterval, cfg.IdleTimeout = 200*time.Millisecond, 800*time.Millisecond
	})
	g := c.Gateway()
	// A live client (gorilla answers pings while it reads) stays, and is pinged.
	live, _ := dial(t, c, "/ws/live")
	var mu sync.Mutex
	pings := 0
	live.SetPingHandler(func(data string) error {
		mu.Lock()
		pings++
		mu.Unlock()
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	liveErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				liveErr <- err
				return
			}
		}
	}()
	// A dead one: upgraded, then never reads or answers.
	dead := rawDial(t, g.Addr())
	dead.upgrade(t, "/ws/dead")
	start := time.Now()
	op, p := dead.readFrame(t)
	for op == 9 { // the pings it does not answer
		op, p = dead.readFrame(t)
	}
	if op != 8 || len(p) < 2 || int(p[0])<<8|int(p[1]) != 1001 || string(p[2:]) != "idle timeout" {
		t.Fatalf("silent client got opcode %d %q, want close 1001 \"idle timeout\"", op, p)
	}
	// Silence is measured on the coarse clock (one janitor tick, 50ms here).
	if took := time.Since(start); took < 750*time.Millisecond {
		t.Fatalf("closed as idle after %v, before the 800ms timeout", took)
	}
	select {
	case err := <-liveErr:
		t.Fatalf("live client closed: %v", err)
	default:
	}
	mu.Lock()
	n := pings
	mu.Unlock()
	if n == 0 {
		t.Fatal("live client got no server ping")
	}
	if r := rejected(t, g, "idle_timeout"); r != 1 {
		t.Fatalf("rejected{idle_timeout} = %d, want 1", r)
	}
}

func TestHandshakeStrictness(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.HandshakeTimeout = 30 * time.Second })
	g := c.Gateway()
	for _, tc := range []struct{ name, req string }{
		{"duplicated key", "GET /ws/d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
		{"duplicated version", "GET /ws/d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nsec-websocket-version: 8\r\n\r\n"},
		{"duplicated host", "GET /ws/d HTTP/1.1\r\nHost: x\r\nHost: y\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"},
		{"bare LF", "GET /ws/d HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n"},
		{"bare LF, request unfinished", "GET /ws/d HTTP/1.1\nHost: x\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, g.Addr())
			// The answer must come at once, not at the 30s handshake timeout.
			_ = r.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(r, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(r.br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
}

// TestSlowloris: thousands of half-sent requests do not delay another
// client's upgrade (the loops never wait for a request to complete).
func TestSlowloris(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.HandshakeTimeout = time.Minute })
	g := c.Gateway()
	const n = 2000
	for i := range n {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%50))}}
		conn, err := nd.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatalf("slowloris conn %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		_, _ = io.WriteString(conn, "GET /ws/slow HTTP/1.1\r\nHost: x\r\nUpgr")
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if h := heldConns(t, g); h < n {
			return fmt.Errorf("%d connections held, want %d", h, n)
		}
		return nil
	})
	ws, w := dial(t, c, "/ws/fast")
	if w.ServerIP == "" {
		t.Fatal("no welcome")
	}
	ws.Close()
}

// heldConns reads wsgate_gateway_held_connections.
func heldConns(t *testing.T, g *gateway.Gateway) int {
	t.Helper()
	return metricSample(t, g, "wsgate_gateway_held_connections")
}

// TestCloseWithoutLoss: a client that sends requests and then a Close gets
// every reply the backend sent before the gateway's close frame (the
// backend acknowledges the close, wire.FlagCloseAck).
func TestCloseWithoutLoss(t *testing.T) {
	c := startCluster(t, 1, nil)
	ws, _ := dial(t, c, "/ws/closer")
	const n = 20
	for i := range n {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("req"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got := 0
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok || ce.Code != 1000 {
				t.Fatalf("after %d replies: %v, want the echo of close 1000", got, err)
			}
			break
		}
		if string(m) != "req"+strconv.Itoa(got) {
			t.Fatalf("reply %d is %q", got, m)
		}
		got++
	}
	if got != n {
		t.Fatalf("got %d of %d replies before the close", got, n)
	}
}

// TestOutboundBudget: clients that stop reading while the backend pushes
// to them are closed (1008 "slow consumer", largest backlogs first) once
// the bytes queued toward all clients pass --max-outbound-memory, long
// before any one of them reaches --max-client-backlog; a client that reads
// gets every message and stays.
func TestOutboundBudget(t *testing.T) {
	const budget = 2 << 20
	r := startSinkRig(t, func(cfg *gateway.Config) { cfg.MaxOutboundMemory = budget })
	fast := r.connect(t, "fast")
	// Slow clients: upgraded, tiny receive buffer, never read.
	var slow []net.Conn
	for i := range 4 {
		slow = append(slow, slowReader(t, r.gw.Addr(), fmt.Sprintf("/ws/slow%d", i)))
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := r.node.SessionCount(); n != 5 {
			return fmt.Errorf("%d sessions, want 5", n)
		}
		return nil
	})
	payload := make([]byte, 64<<10)
	const rounds = 100 // 6.4 MB toward each slow client: 12x the budget in all
	for range rounds {
		for i := range slow {
			r.node.SendToKey("slow"+strconv.Itoa(i), true, payload)
		}
		r.node.SendToKey("fast", true, payload[:1024])
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := r.node.SessionCount(); n != 1 {
			return fmt.Errorf("%d sessions left, want only the fast client's", n)
		}
		return nil
	})
	if n := rejected(t, r.gw, "slow_consumer"); n < 1 {
		t.Fatalf("rejected{slow_consumer} = %d", n)
	}
	if n := rejected(t, r.gw, "client_backlog"); n != 0 {
		t.Fatalf("rejected{client_backlog} = %d: the per-client limit tripped, not the budget", n)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := fast.got.Load(); n != rounds {
			return fmt.Errorf("fast client got %d of %d messages", n, rounds)
		}
		return nil
	})
	select {
	case <-fast.closed:
		t.Fatalf("fast client closed: %d %q", fast.code, fast.reason)
	default:
	}
}

// TestTCPKeepalive: accepted client sockets have TCP keepalive (a peer
// that vanished frees its slot even with pings and the idle timeout off).
// /proc/net/tcp shows the server side's keepalive timer (tr 2).
func TestTCPKeepalive(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.PingInterval, cfg.IdleTimeout = -1, -1 })
	ws, _ := dial(t, c, "/ws/ka")
	_, gwPort, _ := net.SplitHostPort(c.Gateway().Addr())
	_, clPort, _ := net.SplitHostPort(ws.LocalAddr().String())
	hexPort := func(p string) string { n, _ := strconv.Atoi(p); return fmt.Sprintf("%04X", n) }
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 6 || !strings.HasSuffix(f[1], ":"+hexPort(gwPort)) || !strings.HasSuffix(f[2], ":"+hexPort(clPort)) {
				continue
			}
			// f[5] is "tr:tm->when"; tr 2 is the keepalive timer of an idle socket.
			if tr, _, _ := strings.Cut(f[5], ":"); tr != "02" {
				return fmt.Errorf("server socket timer %s, want keepalive (02)", f[5])
			}
			return nil
		}
		return fmt.Errorf("server side of the client connection not found in /proc/net/tcp")
	})
}

// TestRefusedResetKeepsCount: clients that reset their connection while it
// is being refused give nothing back (the refusal took nothing): the caps
// hold afterwards (the count once went negative and let clients past).
func TestRefusedResetKeepsCount(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxConns = 2 })
	g := c.Gateway()
	dial(t, c, "/ws/h1")
	dial(t, c, "/ws/h2")
	for range 100 {
		conn, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.(*net.TCPConn).SetLinger(0) // close with a reset
		conn.Close()
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := rejected(t, g, "max_conns"); n < 100 {
			return fmt.Errorf("rejected{max_conns} = %d", n)
		}
		return nil
	})
	if h := heldConns(t, g); h != 2 {
		t.Fatalf("held connections %d, want 2", h)
	}
	expectRefused(t, g.Addr(), "/ws/over", "", http.StatusServiceUnavailable)
}

// TestSendKeyAcrossBudgetCloses: a push to a key reaches every reading
// client of the key even when writing it makes the outbound budget close
// other clients of the same key (the key's list changes under the walk).
func TestSendKeyAcrossBudgetCloses(t *testing.T) {
	// A budget several pushes deep: the slow clients' backlogs (growing by
	// every push) are always the largest, so the readers are never chosen.
	r := startSinkRig(t, func(cfg *gateway.Config) { cfg.MaxOutboundMemory = 16 << 20 })
	// The readers first: a key's list is newest first, so they come after
	// the slow clients in it, where a broken walk would miss them.
	var fast []*kaClient
	for range 4 {
		fast = append(fast, r.connect(t, "k"))
	}
	var slow []net.Conn
	for range 20 {
		slow = append(slow, slowReader(t, r.gw.Addr(), "/ws/k"))
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := r.node.SessionCount(); n != 24 {
			return fmt.Errorf("%d sessions, want 24", n)
		}
		return nil
	})
	payload := make([]byte, 50_000)
	const pushes, batch = 300, 10
	// In batches the readers take before the next: they never fall behind
	// by more than a batch, while the slow clients' backlogs grow by every one.
	for sent := batch; sent <= pushes; sent += batch {
		for range batch {
			r.node.SendToKey("k", true, payload)
		}
		testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			for i, c := range fast {
				if n := c.got.Load(); n < int64(sent) {
					return fmt.Errorf("fast client %d got %d of %d", i, n, sent)
				}
			}
			return nil
		})
	}
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		for i, c := range fast {
			if n := c.got.Load(); n != pushes {
				select {
				case <-c.closed:
					return fmt.Errorf("fast client %d got %d of %d, closed %d %q", i, n, pushes, c.code, c.reason)
				default:
				}
				return fmt.Errorf("fast client %d got %d of %d", i, n, pushes)
			}
		}
		return nil
	})
	if n := rejected(t, r.gw, "slow_consumer"); n < 1 {
		t.Fatalf("the budget closed no slow consumer (rejected %d): the test did not exercise the race", n)
	}
}

// slowReader upgrades at path with a 4 KiB receive buffer and never reads.
func slowReader(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	nd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := nd.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	return conn
}
