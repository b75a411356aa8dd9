package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

var mask = []byte{1, 2, 3, 4}

func TestSameKeySameNode(t *testing.T) {
	c := startCluster(t, 3, nil)
	for _, path := range []string{"/ws/alice", "/websocket/connect/alice", "/anything?userId=alice", "/ws/alice?userId=ignored", "/x?a=%zz&userId=alice&userId=bob"} {
		_, w := dial(t, c, path)
		if want := owner(t, c, "alice"); w.ServerIP != want {
			t.Errorf("%s: landed on %s, ring owner is %s", path, w.ServerIP, want)
		}
	}
	// Many keys: every client lands on its ring owner.
	for i := range 60 {
		key := fmt.Sprintf("user-%d", i)
		ws, w := dial(t, c, "/ws/"+key)
		if want := owner(t, c, key); w.ServerIP != want {
			t.Errorf("%s: landed on %s, ring owner is %s", key, w.ServerIP, want)
		}
		var got struct{ Key, Owner string }
		if admin(t, c, "GET", "/api/ring?key="+key, "", &got); got.Owner != w.ServerIP || got.Key != key {
			t.Errorf("/api/ring?key=%s = %+v, client is on %s", key, got, w.ServerIP)
		}
		ws.Close()
	}
}

func TestEcho(t *testing.T) {
	c := startCluster(t, 2, nil)
	ws, _ := dial(t, c, "/ws/echo")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	cases := []struct {
		name string
		typ  int
		data []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, wsgate ✓")},
		{"binary", websocket.BinaryMessage, []byte{0, 1, 2, 0xff, 0xfe}},
		{"empty text", websocket.TextMessage, nil},
		{"1MiB binary", websocket.BinaryMessage, big},
		{"1MiB text", websocket.TextMessage, big},
	}
	for _, tc := range cases {
		if err := ws.WriteMessage(tc.typ, tc.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if typ != tc.typ || !bytes.Equal(got, tc.data) {
			t.Errorf("%s: echo type %d len %d, want type %d len %d", tc.name, typ, len(got), tc.typ, len(tc.data))
		}
	}
}

func TestEchoFragmented(t *testing.T) {
	c := startCluster(t, 2, nil)
	// A small write buffer makes gorilla send a message as many frames.
	d := &websocket.Dialer{WriteBufferSize: 512}
	ws, err := dialErr(c.Gateway().Addr(), "/ws/frag", d)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)
	msg := strings.Repeat("ünïcödé fragments ", 3000) // multibyte runes cross frame boundaries
	w, err := ws.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msg); i += 700 {
		if _, err := w.Write([]byte(msg[i:min(i+700, len(msg))])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	typ, got, err := ws.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(got) != msg {
		t.Fatalf("fragmented echo: type %d len %d err %v", typ, len(got), err)
	}
}

func TestRawFraming(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxMessage = 1024 })
	addr := c.Gateway().Addr()

	t.Run("fragments with ping between", func(t *testing.T) {
		r := rawDial(t, addr)
		r.upgrade(t, "/ws/raw")
		euro := []byte("€")                                      // 3 bytes split over two fragments
		r.Write(frame(0x01, append([]byte("a"), euro[0]), mask)) // text, FIN=0
		r.Write(frame(0x89, []byte("ping!"), mask))              // ping between fragments
		r.Write(frame(0x80, append(euro[1:], 'b'), mask))        // continuation, FIN=1
		if op, p := r.readFrame(t); op != 0xA || string(p) != "ping!" {
			t.Fatalf("want pong 'ping!', got op %d %q", op, p)
		}
		// The echo may come back fragmented: collect to the FIN.
		var msg []byte
		for {
			op, p := r.readFrame(t)
			if op == 8 {
				t.Fatalf("closed: %q", p)
			}
			msg = append(msg, p...)
			if string(msg) == "a€b" {
				break
			}
		}
	})

	cases := []struct {
		name string
		send [][]byte
		code uint16
	}{
		{"unmasked", [][]byte{frame(0x81, []byte("hi"), nil)}, 1002},
		{"reserved opcode", [][]byte{frame(0x83, []byte("hi"), mask)}, 1002},
		{"rsv bit", [][]byte{frame(0xC1, []byte("hi"), mask)}, 1002},
		{"bad utf8", [][]byte{frame(0x81, []byte{0xff, 0xfe}, mask)}, 1007},
		{"bad utf8 across fragments", [][]byte{frame(0x01, []byte{0xe2, 0x82}, mask), frame(0x80, []byte{'x'}, mask)}, 1007},
		{"truncated utf8 at end", [][]byte{frame(0x81, []byte{'a', 0xe2, 0x82}, mask)}, 1007},
		{"continuation without start", [][]byte{frame(0x80, []byte("x"), mask)}, 1002},
		{"new message inside fragmented one", [][]byte{frame(0x01, []byte("x"), mask), frame(0x81, []byte("y"), mask)}, 1002},
		{"too big", [][]byte{frame(0x82, make([]byte, 2000), mask)}, 1009},
		{"too big across fragments", [][]byte{frame(0x02, make([]byte, 600), mask), frame(0x80, make([]byte, 600), mask)}, 1009},
		{"fragmented ping", [][]byte{frame(0x09, []byte("x"), mask)}, 1002},
		{"bad close code", [][]byte{frame(0x88, []byte{0x03, 0xe7}, mask)}, 1002}, // 999
		{"client close", [][]byte{frame(0x88, []byte{0x03, 0xe8, 'b', 'y', 'e'}, mask)}, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, addr)
			r.upgrade(t, "/ws/raw-"+url.PathEscape(tc.name))
			for _, f := range tc.send {
				r.Write(f)
			}
			if got := r.expectClose(t); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
			// The gateway closes the TCP connection after its close frame.
			if _, err := r.br.ReadByte(); err != io.EOF {
				t.Fatalf("after close: %v, want EOF", err)
			}
		})
	}
}

func TestCloseHandshakeReachesBackend(t *testing.T) {
	c := startCluster(t, 1, nil)
	ws, w := dial(t, c, "/ws/bye")
	node := c.Node(w.ServerIP)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := node.SessionCount(); n != 1 {
			return fmt.Errorf("backend has %d sessions", n)
		}
		return nil
	})
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
	if code, _ := closeCode(t, ws); code != websocket.CloseNormalClosure {
		t.Fatalf("echoed close code %d", code)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := node.SessionCount(); n != 0 {
			return fmt.Errorf("backend still has %d sessions", n)
		}
		if n := c.Gateway().Clients(); n != 0 {
			return fmt.Errorf("gateway still has %d clients", n)
		}
		return nil
	})
}

func TestPingPong(t *testing.T) {
	c := startCluster(t, 1, nil)
	ws, _ := dial(t, c, "/ws/pinger")
	got := make(chan string, 1)
	ws.SetPongHandler(func(s string) error { got <- s; return nil })
	go func() { _, _, _ = ws.ReadMessage() }()
	if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "are you there" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

func TestHTTPErrors(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) {
		cfg.MaxHandshake = 1024
		cfg.HandshakeTimeout = 300 * time.Millisecond
	})
	addr := c.Gateway().Addr()
	const valid = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	cases := []struct {
		name   string
		req    string
		status int
		header string // a header the response must carry
	}{
		{"POST", "POST /ws/a HTTP/1.1\r\n" + valid + "Sec-WebSocket-Version: 13\r\n\r\n", 405, ""},
		{"plain GET", "GET /ws/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
		{"bad key header", "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, ""},
		{"old version", "GET /ws/a HTTP/1.1\r\n" + valid + "Sec-WebSocket-Version: 8\r\n\r\n", 426, "Sec-Websocket-Version"},
		{"huge headers", "GET /ws/a HTTP/1.1\r\n" + valid + "X-Pad: " + strings.Repeat("p", 2000) + "\r\nSec-WebSocket-Version: 13\r\n\r\n", 431, ""},
		{"endless headers", "GET /ws/a HTTP/1.1\r\n" + strings.Repeat("X-Pad: ppppppppppppp\r\n", 100), 431, ""},
		{"bad escape in key", "GET /ws/%zz HTTP/1.1\r\n" + valid + "Sec-WebSocket-Version: 13\r\n\r\n", 400, ""},
		{"bad escape in userId", "GET /x?userId=%zz HTTP/1.1\r\n" + valid + "Sec-WebSocket-Version: 13\r\n\r\n", 400, ""},
		{"key too long", "GET /ws/" + strings.Repeat("k", 300) + " HTTP/1.1\r\n" + valid + "Sec-WebSocket-Version: 13\r\n\r\n", 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, addr)
			io.WriteString(r, tc.req)
			resp, err := http.ReadResponse(r.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.header != "" && resp.Header.Get(tc.header) == "" {
				t.Fatalf("response lacks %s: %v", tc.header, resp.Header)
			}
		})
	}
	t.Run("slow handshake dropped", func(t *testing.T) {
		r := rawDial(t, addr)
		io.WriteString(r, "GET /ws/slow HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		if _, err := r.br.ReadByte(); err != io.EOF {
			t.Fatalf("want EOF, got %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("dropped after %v, timeout is 300ms", d)
		}
	})
	t.Run("frame sent with the request", func(t *testing.T) {
		// Bytes that arrive with the handshake must not be lost.
		r := rawDial(t, addr)
		io.WriteString(r, "GET /ws/eager HTTP/1.1\r\n"+valid+"Sec-WebSocket-Version: 13\r\n\r\n"+string(frame(0x81, []byte("early"), mask)))
		resp, err := http.ReadResponse(r.br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		r.readFrame(t) // welcome
		if op, p := r.readFrame(t); op != 1 || string(p) != "early" {
			t.Fatalf("echo of early frame: op %d %q", op, p)
		}
	})
}

func TestMembershipChangeBeforeAnyClient(t *testing.T) {
	c := startCluster(t, 2, nil)
	var added struct{ ID string }
	if st := admin(t, c, "POST", "/api/nodes", "", &added); st != http.StatusCreated {
		t.Fatalf("POST /api/nodes: %d", st)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if c.Gateway().Ring().Member(added.ID) == nil {
			return fmt.Errorf("ring lacks %s", added.ID)
		}
		return nil
	})
	// The pacer ran with no event loop known yet; the gateway still serves.
	_, w := dial(t, c, "/ws/after")
	if w.ServerIP != owner(t, c, "after") {
		t.Fatalf("landed on %s", w.ServerIP)
	}
}

func TestNoBackend(t *testing.T) {
	c := startCluster(t, 1, nil)
	for _, n := range c.Gateway().Nodes(t.Context()) {
		if admin(t, c, "DELETE", "/api/nodes/"+n.ID, "", nil) != http.StatusAccepted {
			t.Fatal("delete failed")
		}
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if r := c.Gateway().Ring(); r.Len() != 0 {
			return fmt.Errorf("ring has %d members", r.Len())
		}
		return nil
	})
	r := rawDial(t, c.Gateway().Addr())
	io.WriteString(r, "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("want 503, got %v %v", resp, err)
	}
}

func TestKeylessSpread(t *testing.T) {
	c := startCluster(t, 3, nil)
	seen := map[string]int{}
	for range 30 {
		_, w := dial(t, c, "/ws/")
		seen[w.ServerIP]++
	}
	if len(seen) != 3 {
		t.Fatalf("keyless clients landed on %v, want all 3 nodes", seen)
	}
	for id, n := range seen {
		if n < 5 {
			t.Errorf("node %s got %d of 30 keyless clients", id, n)
		}
	}
}

func TestPush(t *testing.T) {
	c := startCluster(t, 3, nil)
	a1, _ := dial(t, c, "/ws/carol")
	a2, _ := dial(t, c, "/websocket/connect/carol")
	other, _ := dial(t, c, "/ws/dave")

	var res struct{ Delivered int }
	if st := admin(t, c, "POST", "/api/send", `{"userId":"carol","message":"hi \"carol\""}`, &res); st != 200 || res.Delivered != 2 {
		t.Fatalf("POST /api/send: %d %+v", st, res)
	}
	for _, ws := range []*websocket.Conn{a1, a2} {
		var m welcome
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := ws.ReadJSON(&m); err != nil || m.Type != 1 || m.Content != `hi "carol"` || m.ServerIP != owner(t, c, "carol") || m.Timestamp == 0 {
			t.Fatalf("push: %+v %v", m, err)
		}
	}
	if st := admin(t, c, "POST", "/api/send", `{"userId":"dave","message":"yo"}`, &res); st != 200 || res.Delivered != 1 {
		t.Fatalf("POST /api/send to dave: %d %+v", st, res)
	}
	var m welcome
	_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := other.ReadJSON(&m); err != nil || m.Content != "yo" || m.Type != 1 {
		t.Fatalf("push to dave: %+v %v", m, err)
	}
	if st := admin(t, c, "POST", "/api/send", `{"userId":"nobody","message":"x"}`, &res); st != 200 || res.Delivered != 0 {
		t.Fatalf("POST /api/send to an absent user: %d %+v", st, res)
	}
	// The old system's state-changing GET is gone (a cross-site <img> could trigger it).
	if st := admin(t, c, "GET", "/send?userId=dave&message=yo", "", nil); st != http.StatusNotFound && st != http.StatusMethodNotAllowed {
		t.Fatalf("GET /send: %d, want 404", st)
	}
	var e struct{ Error string }
	for _, body := range []string{`{`, `{"message":"x"}`, `{"userId":1}`, `{"userId":"a","extra":1}`} {
		if st := admin(t, c, "POST", "/api/send", body, &e); st != 400 || e.Error == "" {
			t.Errorf("POST /api/send %s: %d %+v, want 400 with error", body, st, e)
		}
	}
}

func TestAdminAPI(t *testing.T) {
	c := startCluster(t, 2, nil)
	dial(t, c, "/ws/x1")
	dial(t, c, "/ws/x2")
	var count int
	if admin(t, c, "GET", "/count", "", &count); count != 2 {
		t.Fatalf("/count = %d", count)
	}
	var nodes []gateway.NodeStatus
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		admin(t, c, "GET", "/api/nodes", "", &nodes)
		total := 0
		for _, n := range nodes {
			if !n.Healthy || n.Addr == "" {
				return fmt.Errorf("node not healthy: %+v", n)
			}
			total += n.Clients
		}
		if len(nodes) != 2 || total != 2 {
			return fmt.Errorf("nodes %+v", nodes)
		}
		return nil
	})
	var e struct{ Error string }
	if st := admin(t, c, "DELETE", "/api/nodes/nope", "", &e); st != 404 || e.Error == "" {
		t.Fatalf("DELETE unknown node: %d %+v", st, e)
	}
	if st := admin(t, c, "GET", "/api/ring", "", &e); st != 400 {
		t.Fatalf("/api/ring without key: %d", st)
	}
	var h map[string]string
	if st := admin(t, c, "GET", "/healthz", "", &h); st != 200 || h["status"] != "ok" {
		t.Fatalf("/healthz %d %v", st, h)
	}
	var added struct{ ID string }
	if st := admin(t, c, "POST", "/api/nodes", "", &added); st != 201 || added.ID == "" {
		t.Fatalf("POST /api/nodes: %d %+v", st, added)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := len(c.Gateway().Nodes(t.Context())); n != 3 || c.Gateway().Ring().Len() != 3 {
			return fmt.Errorf("%d nodes", n)
		}
		return nil
	})
	resp, err := http.Get("http://" + c.Gateway().AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"wsgate_gateway_connections 2", "wsgate_gateway_handshakes_total{result=\"ok\"} 2", "wsgate_gateway_ring_members 3"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var info gateway.Info
	if st := admin(t, c, "GET", "/api/info", "", &info); st != 200 || info.Listen != c.Gateway().Addr() ||
		info.Clients != 2 || info.RingMembers != 3 || len(info.RingVersion) != 16 || !info.NodeManager {
		t.Fatalf("/api/info: %d %+v", st, info)
	}
	// The dashboard is served at / only.
	for path, want := range map[string]int{"/": 200, "/nope": 404} {
		resp, err := http.Get("http://" + c.Gateway().AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 200 && (!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(page, []byte("/api/nodes"))) {
			t.Fatalf("GET /: %s, %d bytes", resp.Header.Get("Content-Type"), len(page))
		}
	}
}

func TestShutdownClosesClientsWith1001(t *testing.T) {
	c := startCluster(t, 2, nil)
	ws, _ := dial(t, c, "/ws/leaving")
	done := make(chan error, 1)
	go func() { done <- c.Gateway().Shutdown(t.Context()) }()
	if code, _ := closeCode(t, ws); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBroadcastAndPresence(t *testing.T) {
	c := startCluster(t, 3, func(cfg *gateway.Config) { cfg.PresenceFlush, cfg.PresenceTTL = 10*time.Millisecond, time.Second })
	var clients []*websocket.Conn
	for i := range 12 {
		ws, _ := dial(t, c, fmt.Sprintf("/ws/bc-%d", i))
		clients = append(clients, ws)
	}
	keyless, _ := dial(t, c, "/ws/")
	clients = append(clients, keyless)
	if st := admin(t, c, "POST", "/api/broadcast", `{"message":"to everyone"}`, nil); st != http.StatusAccepted {
		t.Fatalf("POST /api/broadcast: %d", st)
	}
	for i, ws := range clients {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, m, err := ws.ReadMessage()
		if err != nil || typ != websocket.TextMessage || string(m) != "to everyone" {
			t.Fatalf("client %d: %d %q %v", i, typ, m, err)
		}
	}
	// Presence: where is bc-3?
	var where struct {
		UserID   string
		Online   bool
		Sessions []struct{ Gateway, Session, Node string }
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		admin(t, c, "GET", "/api/users/bc-3", "", &where)
		if !where.Online || len(where.Sessions) != 1 || where.Sessions[0].Node != owner(t, c, "bc-3") {
			return fmt.Errorf("presence of bc-3: %+v", where)
		}
		return nil
	})
	clients[3].Close()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		admin(t, c, "GET", "/api/users/bc-3", "", &where)
		if where.Online {
			return fmt.Errorf("bc-3 still online: %+v", where)
		}
		return nil
	})
	var nodes []gateway.NodeStatus
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		admin(t, c, "GET", "/api/nodes", "", &nodes)
		online := 0
		for _, n := range nodes {
			online += n.Online
		}
		if online != 12 { // 11 keyed + 1 keyless
			return fmt.Errorf("online total %d: %+v", online, nodes)
		}
		return nil
	})
}

// TestHandshakeGraceStalledLoop: a client whose upgrade request waits
// unread when its handshake timeout passes is not dropped: the event loop
// was behind (here stalled for five timeouts), not the client, and it gets
// one more timeout. (A client that is slow itself is still dropped: "slow
// handshake dropped" in TestHTTPErrors.)
func TestHandshakeGraceStalledLoop(t *testing.T) {
	const timeout = 300 * time.Millisecond
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.HandshakeTimeout = timeout })
	g := c.Gateway()
	r := rawDial(t, g.Addr())
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := heldConns(t, g); n != 1 {
			return fmt.Errorf("%d connections held, want the raw one accepted", n)
		}
		return nil
	})
	if g.StallLoops(5*timeout) == 0 {
		t.Fatal("no event loop to stall")
	}
	r.upgrade(t, "/ws/late") // sent while the loop sleeps; answered once it wakes
	if n := metricSample(t, g, "wsgate_gateway_handshake_graced_total"); n != 1 {
		t.Fatalf("handshake_graced_total = %d, want 1", n)
	}
}
