package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wsframe"
)

func testLogger() *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts a dev cluster with n backends on random ports.
func startCluster(t testing.TB, n int, tune func(*gateway.Config)) *devcluster.Cluster {
	t.Helper()
	cfg := gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", CloseTimeout: time.Second, DrainTimeout: 3 * time.Second}
	if tune != nil {
		tune(&cfg)
	}
	c, err := devcluster.Start(devcluster.Config{Backends: n, Gateway: cfg, Logger: testLogger(), DrainTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(t.Context()) })
	return c
}

// runGateway builds and starts a gateway with cfg and closes it when the
// test ends.
func runGateway(t testing.TB, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// serveTCP listens on a random loopback port until the test ends and runs
// handle on a goroutine for each connection it accepts (handle closes it).
func serveTCP(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln
}

// welcome is the demo app's message to a new client.
type welcome struct {
	Type            int    `json:"type"`
	Content         string `json:"content"`
	ServerUserCount int    `json:"serverUserCount"`
	ServerIP        string `json:"serverIp"`
	Timestamp       int64  `json:"timestamp"`
}

// dial connects a WebSocket client to path and reads the welcome message.
func dial(t testing.TB, c *devcluster.Cluster, path string) (*websocket.Conn, welcome) {
	t.Helper()
	ws, err := dialErr(c.Gateway().Addr(), path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws, readWelcome(t, ws)
}

func dialErr(addr, path string, d *websocket.Dialer) (*websocket.Conn, error) {
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	}
	ws, resp, err := d.Dial("ws://"+addr+path, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return ws, err
}

func readWelcome(t testing.TB, ws *websocket.Conn) welcome {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var w welcome
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read welcome: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("welcome is message type %d, want text", typ)
	}
	if err := json.Unmarshal(data, &w); err != nil || w.Type != 2 || w.Content != "connected" || w.ServerIP == "" {
		t.Fatalf("bad welcome %q (err %v)", data, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return w
}

// admin calls the gateway's admin API and decodes a JSON answer into out.
func admin(t testing.TB, c *devcluster.Cluster, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+c.Gateway().AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func owner(t testing.TB, c *devcluster.Cluster, key string) string {
	t.Helper()
	m := c.Gateway().Ring().LookupString(key)
	if m == nil {
		t.Fatalf("no owner for %q", key)
	}
	return m.ID
}

// closeCode waits for ws to be closed by the server and returns the code.
func closeCode(t testing.TB, ws *websocket.Conn) (int, string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if ok := asCloseError(err, &ce); ok {
			return ce.Code, ce.Text
		}
		t.Fatalf("want a close frame, got %v", err)
	}
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

// rawConn is a hand-rolled client for the tests that must send bad frames
// or bad requests.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func rawDial(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// upgrade sends a valid upgrade request for path and reads the 101 and the
// welcome frame.
func (r *rawConn) upgrade(t testing.TB, path string) {
	t.Helper()
	r.upgradeOnly(t, path)
	if op, _ := r.readFrame(t); op != 1 {
		t.Fatalf("want welcome text frame, got opcode %d", op)
	}
}

// upgradeOnly sends a valid upgrade request for path and reads the 101.
func (r *rawConn) upgradeOnly(t testing.TB, path string) {
	t.Helper()
	fmt.Fprintf(r, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
}

// readFrame reads one unmasked server frame.
func (r *rawConn) readFrame(t testing.TB) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(r.br, b[:])
		n = int(b[0])<<8 | int(b[1])
	case 127:
		var b [8]byte
		io.ReadFull(r.br, b[:])
		n = 0
		for _, x := range b {
			n = n<<8 | int(x)
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

// expectClose reads frames until a close frame and returns its code.
func (r *rawConn) expectClose(t testing.TB) uint16 {
	t.Helper()
	for {
		op, p := r.readFrame(t)
		if op == 8 {
			if len(p) < 2 {
				return 1005
			}
			return uint16(p[0])<<8 | uint16(p[1])
		}
	}
}

// frame builds a client frame whose first byte (FIN, RSV, opcode) is b0;
// masked with mask unless mask is nil.
func frame(b0 byte, payload []byte, mask []byte) []byte {
	var out []byte
	if mask == nil {
		out = append(wsframe.AppendHeader(nil, true, 0, len(payload)), payload...)
	} else {
		m := [4]byte(mask)
		out = wsframe.AppendMaskedHeader(nil, true, 0, len(payload), m)
		start := len(out)
		out = append(out, payload...)
		wsframe.MaskBytes(out[start:], m, 0)
	}
	out[0] = b0
	return out
}

// staticMembers is a one-node member set for tests that build a Gateway
// without starting it (the node is never dialled).
func staticMembers(t testing.TB) membership.Source {
	t.Helper()
	src, err := membership.NewStatic([]membership.Node{{ID: "n", Addr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// startDemoNode starts a demo backend with cfg (its logger set) and stops
// it at the test's end.
func startDemoNode(t testing.TB, cfg backend.Config) *backend.Node {
	t.Helper()
	cfg.Logger = testLogger()
	n, err := demo.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}
