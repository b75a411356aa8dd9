package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/forwarded"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// startPassGateway starts a gateway whose members come from src.
func startPassGateway(t *testing.T, src membership.Source, tune func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	cfg := gateway.Config{ID: "gw1", Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: src, Logger: testLogger(),
		CloseTimeout: time.Second, RebalanceRate: 1000}
	if tune != nil {
		tune(&cfg)
	}
	g := runGateway(t, cfg)
	return g
}

// staticUpstreams is a static member set of plain upstreams, id=URL.
func staticUpstreams(t *testing.T, urls ...string) membership.Source {
	t.Helper()
	var nodes []membership.Node
	for _, u := range urls {
		id, addr, _ := strings.Cut(u, "=")
		nodes = append(nodes, membership.Node{ID: id, Addr: addr})
	}
	src, err := membership.NewStatic(nodes)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// startDemoPlain starts the demo app's plain WebSocket server (wsgate
// backend --ws-listen) as node id and returns its ws:// URL.
func startDemoPlain(t *testing.T, id string) string {
	t.Helper()
	n := startDemoNode(t, backend.Config{ID: id, Listen: "127.0.0.1:0"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := demo.ServePlain(ln, n, testLogger())
	t.Cleanup(func() { _ = s.Close() })
	return "ws://" + s.Addr().String()
}

func dialPass(t *testing.T, g *gateway.Gateway, path string, h http.Header) *websocket.Conn {
	t.Helper()
	ws, resp, err := (&websocket.Dialer{HandshakeTimeout: 5 * time.Second}).Dial("ws://"+g.Addr()+path, h)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	return ws
}

func echo(t *testing.T, ws *websocket.Conn, typ int, msg []byte) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(typ, msg); err != nil {
		t.Fatal(err)
	}
	gt, got, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("echo of %d bytes: %v", len(msg), err)
	}
	if gt != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo: type %d, %d bytes; want type %d, %d bytes", gt, len(got), typ, len(msg))
	}
}

// TestPassthroughDemo: a client routed to the demo's plain WebSocket server
// gets its welcome and its echoes (text, binary, a message fragmented by
// the client, a large one), its pings answered by the upstream, and the
// upstream's answer to its close.
func TestPassthroughDemo(t *testing.T) {
	g := startPassGateway(t, staticUpstreams(t, "p1="+startDemoPlain(t, "p1")), nil)
	ws := dialPass(t, g, "/ws/alice", nil)
	if w := readWelcome(t, ws); w.ServerIP != "p1" {
		t.Fatalf("welcome from %q, want p1", w.ServerIP)
	}
	echo(t, ws, websocket.TextMessage, []byte("hello"))
	echo(t, ws, websocket.BinaryMessage, []byte{0, 1, 2, 0xff})
	echo(t, ws, websocket.TextMessage, bytes.Repeat([]byte("x"), 200<<10)) // gorilla fragments it in 4 KiB frames
	echo(t, ws, websocket.TextMessage, nil)

	pong := make(chan string, 1)
	ws.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := ws.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	echo(t, ws, websocket.TextMessage, []byte("after ping")) // runs the read loop past the pong
	select {
	case p := <-pong:
		if p != "p" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	if g.NodeClients("p1") != 1 {
		t.Fatalf("node p1 counts %d clients, want 1", g.NodeClients("p1"))
	}
	if st := nodeStatus(t, g, "p1"); st.Kind != "plain" || !st.Healthy || st.Clients != 1 {
		t.Fatalf("/api/nodes shows p1 as %+v, want a healthy plain node with 1 client", st)
	}
	if err := ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye")); err != nil {
		t.Fatal(err)
	}
	if code, text := closeCode(t, ws); code != 4000 || text != "bye" {
		t.Fatalf("close %d %q, want the upstream's echo 4000 bye", code, text)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := g.Clients() + g.NodeClients("p1"); n != 0 {
			return fmt.Errorf("%d clients still counted", n)
		}
		return nil
	})
}

// coderUpstream is a third-party WebSocket server (github.com/coder/websocket):
// it first sends the request it got (URI and headers), then echoes; the
// message "close <code>" makes it close with that code.
func coderUpstream(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := cws.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		verified := "ok"
		if _, err := forwarded.Verify(r, testClusterSecret, time.Minute, time.Now()); err != nil {
			verified = err.Error()
		}
		hello, _ := json.Marshal(map[string]any{"uri": r.URL.RequestURI(), "header": r.Header, "verified": verified})
		if err := c.Write(ctx, cws.MessageText, hello); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			var code int
			if _, err := fmt.Sscanf(string(msg), "close %d", &code); err == nil {
				_ = c.Close(cws.StatusCode(code), "by upstream")
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws://" + strings.TrimPrefix(srv.URL, "http://")
}

// testClusterSecret signs the forwarded headers in the passthrough tests.
var testClusterSecret = []byte("passthrough-test-cluster-secret!")

// TestPassthroughThirdParty: in front of coder/websocket's server, the
// client's path and query reach the upstream (behind the URL's path), the
// client's own headers are forwarded, the gateway's X-Forwarded-* and
// X-Wsgate-* are set and a client's forged ones are dropped, and signed
// with the cluster secret (forwarded.Verify passes); the upstream's close
// code reaches the client.
func TestPassthroughThirdParty(t *testing.T) {
	g := startPassGateway(t, staticUpstreams(t, "c1="+coderUpstream(t)+"/app"), func(c *gateway.Config) { c.ClusterSecret = testClusterSecret })
	h := http.Header{}
	h.Set("Cookie", "sid=42")
	h.Set("X-Wsgate-Key", "mallory")
	h.Set("X-Forwarded-For", "6.6.6.6")
	ws := dialPass(t, g, "/ws/al%20ice?room=7", h)
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, first, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		URI      string      `json:"uri"`
		Header   http.Header `json:"header"`
		Verified string      `json:"verified"`
	}
	if err := json.Unmarshal(first, &got); err != nil {
		t.Fatal(err)
	}
	if got.Verified != "ok" {
		t.Errorf("the upstream's forwarded.Verify: %s", got.Verified)
	}
	if got.URI != "/app/ws/al%20ice?room=7" {
		t.Errorf("upstream saw URI %q, want /app/ws/al%%20ice?room=7", got.URI)
	}
	for name, want := range map[string]string{
		"Cookie": "sid=42", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": g.Addr(), "X-Wsgate-Key": "al%20ice", "X-Wsgate-Gateway": "gw1",
	} {
		if v := got.Header.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("upstream saw %s %q, want %q", name, v, want)
		}
	}
	echo(t, ws, websocket.BinaryMessage, bytes.Repeat([]byte{7}, 70000))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("close 4321")); err != nil {
		t.Fatal(err)
	}
	if code, text := closeCode(t, ws); code != 4321 || text != "by upstream" {
		t.Fatalf("close %d %q, want the upstream's 4321 by upstream", code, text)
	}
}

// rawUpstream accepts WebSocket upgrades by hand (after delay) and then
// runs serve on the connection, for upstreams that misbehave.
func rawUpstream(t *testing.T, delay time.Duration, serve func(net.Conn)) string {
	t.Helper()
	ln := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		time.Sleep(delay) // the upstream is slow to answer: what the test is about, not synchronisation
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		serve(c)
	})
	return "ws://" + ln.Addr().String()
}

// TestPassthroughFailures: every way an upstream can fail reaches the
// client as the documented close code (docs/operations.md).
func TestPassthroughFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "ws://" + closed.Addr().String()
	closed.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	t.Cleanup(refusing.Close)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	for _, tc := range []struct {
		name     string
		upstream string
		send     []byte // written by the client right after its upgrade
		code     int
		reason   string
	}{
		{"refused", closedURL, nil, 1013, "upstream unavailable"},
		{"not an upgrade", "ws://" + strings.TrimPrefix(refusing.URL, "http://"), nil, 1014, "upstream refused the upgrade: 403 Forbidden"},
		{"masked frame", rawUpstream(t, 0, func(c net.Conn) {
			_, _ = c.Write(wsframe.AppendMaskedFrame(nil, true, wsframe.OpText, []byte("hi"), [4]byte{1, 2, 3, 4}))
			<-hold
		}), nil, 1014, "upstream protocol error"},
		{"frame too big", rawUpstream(t, 0, func(c net.Conn) {
			_, _ = c.Write(wsframe.AppendHeader(nil, true, wsframe.OpBinary, 2<<20))
			<-hold
		}), nil, 1014, "upstream message too big"},
		{"lost", rawUpstream(t, 0, func(c net.Conn) {}), nil, 1011, "upstream connection lost"},
		{"flood while connecting", rawUpstream(t, 2*time.Second, func(c net.Conn) { <-hold }),
			frame(0x82, make([]byte, 300<<10), []byte{1, 2, 3, 4}), 1013, "upstream not connected yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startPassGateway(t, staticUpstreams(t, "u="+tc.upstream), func(c *gateway.Config) { c.MaxMessage = 1 << 20 })
			r := rawDial(t, g.Addr())
			r.upgradeOnly(t, "/ws/k")
			if tc.send != nil {
				if _, err := r.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			op, payload := r.readFrame(t)
			if op != 0x8 || len(payload) < 2 {
				t.Fatalf("got opcode %d %q, want a close frame", op, payload)
			}
			code, reason := int(payload[0])<<8|int(payload[1]), string(payload[2:])
			if code != tc.code || reason != tc.reason {
				t.Fatalf("close %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
			// A failed connect shows in the node's health; a failure after
			// the upgrade does not (the connect succeeded).
			wantHealthy := tc.name != "refused" && tc.name != "not an upgrade"
			if st := nodeStatus(t, g, "u"); st.Healthy != wantHealthy {
				t.Fatalf("/api/nodes shows the upstream as %+v, want healthy %v", st, wantHealthy)
			}
		})
	}
}

// TestPassthroughRebalance: plain upstreams on the ring move like link
// backends: a node joins and exactly the clients whose key it takes are
// closed with 1012; a node leaves and exactly its clients are; every other
// client keeps its connection and its upstream.
func TestPassthroughRebalance(t *testing.T) {
	bus := membership.NewMemory()
	urls := map[string]string{}
	for _, id := range []string{"p1", "p2", "p3"} {
		urls[id] = startDemoPlain(t, id)
	}
	join := func(id string) {
		if err := bus.Publish(context.Background(), membership.Event{Type: membership.Join, Node: membership.Node{ID: id, Addr: urls[id]}}); err != nil {
			t.Fatal(err)
		}
	}
	join("p1")
	join("p2")
	g := startPassGateway(t, bus, nil)
	type client struct {
		ws    *websocket.Conn
		owner string
	}
	clients := map[string]*client{}
	for i := range 60 {
		key := fmt.Sprintf("user-%d", i)
		ws := dialPass(t, g, "/ws/"+key, nil)
		w := readWelcome(t, ws)
		clients[key] = &client{ws: ws, owner: w.ServerIP}
	}
	step := func(change func(), members ...string) {
		t.Helper()
		var ms []ring.Member
		for _, id := range members {
			ms = append(ms, ring.Member{ID: id, Addr: urls[id]})
		}
		want, err := ring.New(ms)
		if err != nil {
			t.Fatal(err)
		}
		change()
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if g.Ring().Version() != want.Version() {
				return fmt.Errorf("ring not updated")
			}
			return nil
		})
		moved := 0
		for key, c := range clients {
			if want.LookupString(key).ID == c.owner {
				echo(t, c.ws, websocket.TextMessage, []byte(key)) // still served by its upstream
				continue
			}
			moved++
			if code, _ := closeCode(t, c.ws); code != 1012 {
				t.Fatalf("%s: close %d, want 1012", key, code)
			}
			ws := dialPass(t, g, "/ws/"+key, nil)
			w := readWelcome(t, ws)
			if w.ServerIP != want.LookupString(key).ID {
				t.Fatalf("%s reconnected to %s, want %s", key, w.ServerIP, want.LookupString(key).ID)
			}
			clients[key] = &client{ws: ws, owner: w.ServerIP}
		}
		if moved == 0 {
			t.Fatal("the change moved no client: the test shows nothing")
		}
	}
	step(func() { join("p3") }, "p1", "p2", "p3")
	step(func() {
		_ = bus.Publish(context.Background(), membership.Event{Type: membership.Leave, Node: membership.Node{ID: "p1", Addr: urls["p1"]}})
	}, "p2", "p3")
}

// TestPassthroughTLSAuthPush: behind TLS at the edge and JWT auth, the
// upstream is told the verified key and claims (base64url JSON) and that
// the client came over TLS; the token's own key, not the path's, routes;
// a push through the admin API reaches the plain upstream's client.
func TestPassthroughTLSAuthPush(t *testing.T) {
	certFile, keyFile, roots := tlsFiles(t, t.TempDir())
	g := startPassGateway(t, staticUpstreams(t, "c1="+coderUpstream(t)), func(c *gateway.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.Auth = gateway.AuthConfig{HMACSecret: testSecret}
	})
	tok := hs256(t, jwt.MapClaims{"sub": "bob", "role": "admin"})
	ws, err := dialTLS(g.Addr(), "/ws/bob?token="+tok, roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, first, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Header   http.Header
		Verified string
	}
	if err := json.Unmarshal(first, &got); err != nil {
		t.Fatal(err)
	}
	if got.Verified != forwarded.ErrUnsigned.Error() {
		t.Errorf("without a cluster secret the upstream's check says %q, want %q", got.Verified, forwarded.ErrUnsigned)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(got.Header.Get("X-Wsgate-Claims"))
	var m map[string]any
	if err := json.Unmarshal(claims, &m); err != nil || m["role"] != "admin" || m["sub"] != "bob" {
		t.Errorf("X-Wsgate-Claims %q decodes to %v (%v)", got.Header.Get("X-Wsgate-Claims"), m, err)
	}
	if k, p := got.Header.Get("X-Wsgate-Key"), got.Header.Get("X-Forwarded-Proto"); k != "bob" || p != "https" {
		t.Errorf("X-Wsgate-Key %q, X-Forwarded-Proto %q; want bob, https", k, p)
	}
	echo(t, ws, websocket.TextMessage, []byte("over TLS"))
	n, err := g.Push(t.Context(), "bob", []byte("pushed"))
	if err != nil || n != 1 {
		t.Fatalf("push reached %d (%v), want 1", n, err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "pushed" {
		t.Fatalf("read %q %v, want the push", msg, err)
	}
	echo(t, ws, websocket.TextMessage, []byte("after the push"))
}

// nodeStatus is node id's entry in the gateway's /api/nodes.
func nodeStatus(t *testing.T, g *gateway.Gateway, id string) gateway.NodeStatus {
	t.Helper()
	resp, err := http.Get("http://" + g.AdminAddr() + "/api/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var nodes []gateway.NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no node %s in /api/nodes", id)
	return gateway.NodeStatus{}
}

// TestPassthroughHeaderInjection: a request head with a control character
// (a bare CR that an upstream's parser may take for a line end, a NUL) in
// a header value, a header name, the Host or the subprotocols is refused
// with 400 before anything reaches an upstream.
func TestPassthroughHeaderInjection(t *testing.T) {
	got := make(chan string, 8)
	up := rawUpstream(t, 0, func(c net.Conn) { got <- "connected" })
	g := startPassGateway(t, staticUpstreams(t, "u="+up), nil)
	for _, extra := range []string{
		"X-Foo: a\rX-Wsgate-Key: bob\r\n",
		"X-Bar\rX-Wsgate-Claims: e30: v\r\n",
		"X-Nul: v\x00nul\r\n",
		"Sec-WebSocket-Protocol: chat\rX-Wsgate-Gateway: evil\r\n",
		"X-Del: \x7f\r\n",
	} {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /ws/alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", extra)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("request with %q: %v %v, want 400", extra, resp, err)
		}
	}
	select {
	case <-got:
		t.Fatal("a refused request reached the upstream")
	default:
	}
}

// TestProbeUpstreamSigned: the announcer's health check passes an
// upstream that admits only requests signed with the cluster secret
// (forwarded.Verify) when it has the secret, and is refused without it.
func TestProbeUpstreamSigned(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := forwarded.Verify(r, testClusterSecret, time.Minute, time.Now())
		if err != nil || id.Gateway != "announce/app-1" || r.Header.Get("X-Wsgate-Health") != "1" {
			http.Error(w, "not from the cluster", http.StatusForbidden)
			return
		}
		c, err := cws.Accept(w, r, nil)
		if err != nil {
			return
		}
		_, _, _ = c.Read(r.Context()) // the probe's close
		c.CloseNow()
	}))
	t.Cleanup(srv.Close)
	url := "ws://" + strings.TrimPrefix(srv.URL, "http://")
	if err := gateway.ProbeUpstream(t.Context(), url, testClusterSecret, "app-1"); err != nil {
		t.Fatalf("signed probe: %v", err)
	}
	if err := gateway.ProbeUpstream(t.Context(), url, nil, "app-1"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("unsigned probe: %v, want the upstream's 403", err)
	}
}

// TestPassthroughTokenExpiry: a plain upstream's client is closed with
// 1008 when its token expires, as a link backend's is.
func TestPassthroughTokenExpiry(t *testing.T) {
	g := startPassGateway(t, staticUpstreams(t, "c1="+coderUpstream(t)), func(c *gateway.Config) {
		c.Auth = gateway.AuthConfig{HMACSecret: testSecret}
		c.PingInterval = 200 * time.Millisecond
	})
	tok := hs256(t, jwt.MapClaims{"sub": "dave", "exp": time.Now().Add(2 * time.Second).Unix()})
	ws := dialPass(t, g, "/ws/dave?token="+tok, nil)
	if code, text := closeCode(t, ws); code != 1008 || text != "token expired" {
		t.Fatalf("close %d %q, want 1008 token expired", code, text)
	}
}

// TestPassthroughSubprotocol: a client that offers subprotocols gets its
// 101 once the plain upstream has chosen, with the upstream's choice; when
// the upstream cannot be reached, refuses, or chooses what was not offered,
// the client gets an HTTP error instead of a WebSocket.
func TestPassthroughSubprotocol(t *testing.T) {
	chat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := cws.Accept(w, r, &cws.AcceptOptions{Subprotocols: []string{"chat.v2", "chat.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(c.Subprotocol()+":"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(chat.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "ws://" + closed.Addr().String()
	closed.Close()
	rogue := serveTCP(t, func(c net.Conn) { // chooses a protocol nobody offered
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: evil\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		_, _ = io.Copy(io.Discard, c)
	})
	dial := func(g *gateway.Gateway, protocols ...string) (*websocket.Conn, *http.Response, error) {
		d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: protocols}
		return d.Dial("ws://"+g.Addr()+"/ws/k", nil)
	}

	g := startPassGateway(t, staticUpstreams(t, "c1=ws://"+strings.TrimPrefix(chat.URL, "http://")), nil)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"x", "chat.v1"}, "chat.v1"},
		{[]string{"chat.v1", "chat.v2"}, "chat.v2"}, // the server's preference
		{[]string{"other"}, ""},                     // none chosen: a 101 without one
	} {
		ws, resp, err := dial(g, tc.offer...)
		if err != nil {
			t.Fatalf("offer %v: %v", tc.offer, err)
		}
		resp.Body.Close()
		if ws.Subprotocol() != tc.want {
			t.Errorf("offer %v: subprotocol %q, want %q", tc.offer, ws.Subprotocol(), tc.want)
		}
		echo := []byte(tc.want + ":hi")
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, echo) {
			t.Errorf("offer %v: echo %q %v, want %q (the upstream's own view)", tc.offer, got, err, echo)
		}
		ws.Close()
	}

	for _, tc := range []struct {
		name, upstream string
		status         int
	}{
		{"unreachable", closedURL, http.StatusServiceUnavailable},
		{"unoffered protocol", "ws://" + rogue.Addr().String(), http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startPassGateway(t, staticUpstreams(t, "u="+tc.upstream), nil)
			ws, resp, err := dial(g, "chat.v1")
			if err == nil {
				ws.Close()
				t.Fatal("upgraded; want an HTTP error")
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("err %v, response %+v; want HTTP %d", err, resp, tc.status)
			}
			resp.Body.Close()
			testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if n := g.Clients(); n != 0 {
					return fmt.Errorf("%d clients still counted", n)
				}
				return nil
			})
		})
	}

	// While a client's 101 waits for a slow upstream, the gateway's own
	// frames (a broadcast) skip it, and closing it (here: the gateway
	// shuts down) is an HTTP answer, not a close frame.
	t.Run("pending", func(t *testing.T) {
		hold := make(chan struct{})
		t.Cleanup(func() { close(hold) })
		slow := rawUpstream(t, 3*time.Second, func(c net.Conn) { <-hold })
		g := startPassGateway(t, staticUpstreams(t, "u="+slow), nil)
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			ws, resp, err := dial(g, "chat.v1")
			if ws != nil {
				ws.Close()
			}
			done <- result{resp, err}
		}()
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if g.Clients() != 1 {
				return errors.New("client not routed yet")
			}
			return nil
		})
		req, _ := http.NewRequest("POST", "http://"+g.AdminAddr()+"/api/broadcast", strings.NewReader(`{"message":"early"}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		} else {
			resp.Body.Close()
		}
		go func() { _ = g.Shutdown(context.Background()) }()
		r := <-done
		if r.err == nil || r.resp == nil || r.resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("err %v, response %+v: want HTTP 503 (and no frame before it)", r.err, r.resp)
		}
		r.resp.Body.Close()
	})
}
