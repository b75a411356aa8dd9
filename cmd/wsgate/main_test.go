package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/testutil"
)

// These tests run the real binary as separate processes: backends and a
// gateway with a static --backend list, as a user would start them.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "wsgate")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	if b := os.Getenv("WSGATE_TEST_BINARY"); b != "" {
		binary = b // run the process tests against another build (e.g. an older release)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running wsgate process with its stderr captured.
type proc struct {
	cmd *exec.Cmd
	log *logBuf
}

type logBuf struct {
	lines chan string
	mu    sync.Mutex
	all   strings.Builder
}

func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startCmd(t, binary, args...)
}

// startCmd starts name args... (the wsgate binary, or a shell running it).
func startCmd(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: &logBuf{lines: make(chan string, 1024)}}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.log.mu.Lock()
			p.log.all.WriteString(sc.Text() + "\n")
			p.log.mu.Unlock()
			select {
			case p.log.lines <- sc.Text():
			default:
			}
		}
		close(p.log.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			p.log.mu.Lock()
			t.Logf("log of wsgate %s:\n%s", strings.Join(args, " "), p.log.all.String())
			p.log.mu.Unlock()
		}
	})
	return p
}

// waitLog waits for a log line matching re and returns its submatches.
func (p *proc) waitLog(t testing.TB, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(15 * time.Second)
	for {
		select {
		case line, ok := <-p.log.lines:
			if !ok {
				t.Fatalf("process exited before logging %q", re)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no log line matching %q", re)
		}
	}
}

// startBackend starts `wsgate backend --id id --listen listen extra...`
// and returns it, once started, with the address it listens on.
func startBackend(t testing.TB, id, listen string, extra ...string) (*proc, string) {
	t.Helper()
	p := start(t, append([]string{"backend", "--id", id, "--listen", listen}, extra...)...)
	return p, p.waitLog(t, `backend started.* listen=(\S+)`)[1]
}

// gw is a gateway process and its addresses.
type gw struct {
	*proc
	addr, admin string
}

// startGateway starts `wsgate gateway extra...` with its client and admin
// listeners on random loopback ports, and returns it once started.
func startGateway(t testing.TB, extra ...string) *gw {
	t.Helper()
	p := start(t, append([]string{"gateway", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, extra...)...)
	m := p.waitLog(t, `gateway started.* listen=(\S+) admin=(\S+)`)
	return &gw{proc: p, addr: m[1], admin: m[2]}
}

// startProcesses starts n backend processes (b1..bn) and a gateway process
// routing to them with a static --backend list (extra: more gateway flags).
func startProcesses(t testing.TB, n int, extra ...string) (g *gw, ids []string) {
	t.Helper()
	var args []string
	for i := range n {
		id := fmt.Sprintf("b%d", i+1)
		_, addr := startBackend(t, id, "127.0.0.1:0")
		args = append(args, "--backend", id+"="+addr)
		ids = append(ids, id)
	}
	return startGateway(t, append(args, extra...)...), ids
}

func TestSeparateProcesses(t *testing.T) {
	g, ids := startProcesses(t, 2)
	addr, adminAddr := g.addr, g.admin
	seen := map[string]bool{}
	var clients []*websocket.Conn
	for i := range 20 {
		ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/ws/user-%d", addr, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var w struct{ ServerIP string }
		if err := ws.ReadJSON(&w); err != nil {
			t.Fatal(err)
		}
		seen[w.ServerIP] = true
		if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "ping" {
			t.Fatalf("echo %q %v", m, err)
		}
		clients = append(clients, ws)
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("no client landed on %s: %v", id, seen)
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/count")
	if err != nil {
		t.Fatal(err)
	}
	var count int
	_ = json.NewDecoder(resp.Body).Decode(&count)
	resp.Body.Close()
	if count != 20 {
		t.Fatalf("/count = %d", count)
	}
	// SIGTERM: every client gets 1001 and the process exits 0.
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	for _, ws := range clients {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("after SIGTERM: %v, want close 1001", err)
		}
	}
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("gateway exit: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"gateway"}, "--upstream id=ws://host:port is required"},
		{[]string{"gateway", "--backend", "nohost"}, "want id=host:port"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--backend", "a=127.0.0.1:2"}, `"a" given twice`},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--max-message", "1"}, "--max-message 1"},
		{[]string{"dev", "--backends", "0"}, "--backends 0"},
		{[]string{"dev", "--max-conns", "-5"}, "--max-conns -5"},
		{[]string{"dev", "--max-conns-per-ip", "-1"}, "--max-conns-per-ip"},
		{[]string{"dev", "--handshake-rate-per-ip", "-2"}, "--handshake-rate-per-ip"},
		{[]string{"dev", "--max-outbound-memory", "12"}, "--max-outbound-memory 12"},
		{[]string{"dev", "--max-outbound-memory", "lots"}, "max-outbound-memory: \"lots\": want a size"},
		{[]string{"dev", "--ping-interval", "30s", "--idle-timeout", "10s"}, "--idle-timeout 10s"},
		{[]string{"dev", "--max-frame-rate", "-1"}, "--max-frame-rate"},
		{[]string{"dev", "--auth-jwt-secret-file", "/nonexistent"}, "--auth-jwt-secret-file"},
		{[]string{"dev", "--allowed-origins", "example.com"}, "--allowed-origins"},
		{[]string{"backend", "--keepalive", "0s", "--listen", "127.0.0.1:0"}, "--keepalive"},
		{[]string{"backend", "--listen", "0.0.0.0:0"}, "--cluster-secret-file"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--admin", "0.0.0.0:0"}, "--admin-token-file"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--admin-token-file", "/nonexistent/token"}, "--admin-token-file"},
		{[]string{"dev", "--log-level", "loud"}, "--log-level"},
		{[]string{"dev", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, "--tls-cert"},
		{[]string{"dev", "--tls-key", "/nonexistent/key.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"dev", "--tls-self-signed", "--tls-cert", "/nonexistent/cert.pem"}, "--tls-self-signed"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--link-tls-cert", "/nonexistent/cert.pem"}, "--link-tls-"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--link-tls-ca", "/nonexistent/ca.pem"}, "--link-tls-"},
		{[]string{"gateway", "--upstream", "a=127.0.0.1:1"}, "want id=ws://host:port"},
		{[]string{"gateway", "--upstream", "a=wss://127.0.0.1:1"}, "wss:// upstreams are not supported"},
		{[]string{"gateway", "--upstream", "a=ws://127.0.0.1:1?x=1"}, "without user info, query or fragment"},
		{[]string{"gateway", "--upstream", "a=ws://127.0.0.1:1", "--backend", "a=127.0.0.1:2"}, `"a" given twice`},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--max-message", "2000000000"}, "--max-message 2000000000: at most"},
		{[]string{"announce", "--id", "p", "--upstream", "ws://127.0.0.1:1"}, "needs --amqp and --redis"},
		{[]string{"announce", "--amqp", "amqp://127.0.0.1/", "--redis", "redis://127.0.0.1:6379/0", "--id", "p", "--upstream", "127.0.0.1:1"}, "want a ws:// URL"},
		{[]string{"announce", "--amqp", "amqp://127.0.0.1/", "--redis", "redis://127.0.0.1:6379/0", "--upstream", "ws://127.0.0.1:1"}, "--id and --upstream are required"},
		{[]string{"frobnicate"}, "the commands are dev, gateway, backend, announce, bench, version and help"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--listen", "127.0.0.1:99999"}, "--listen"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:99999"}, "port must be 1..65535"},
		{[]string{"dev", "--admin", "localhost:http"}, "--admin"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--weight", "0"}, "--weight 0"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--pprof", "--admin", "0.0.0.0:0"}, "--pprof with --admin 0.0.0.0:0"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--pprof", "--admin", "-"}, "--pprof with --admin -"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--gc-percent", "0"}, "--gc-percent 0: want 1..10000"},
		{[]string{"backend", "--listen", "127.0.0.1:0", "--advertise", "10.0.0.1:70000"}, "--advertise"},
		{[]string{"gateway", "--amqp", "amqp://127.0.0.1/", "--redis", "mysql://x"}, "--redis"},
		{[]string{"gateway", "--amqp", "http://x", "--redis", "redis://127.0.0.1:6379/0"}, "--amqp"},
	}
	for _, tc := range cases {
		out, err := exec.Command(binary, tc.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("wsgate %v: exit %v, output %q; want exit 2 mentioning %q", tc.args, err, out, tc.want)
		}
	}
	cmd := exec.Command(binary, "gateway", "--backend", "a=127.0.0.1:1")
	cmd.Env = append(os.Environ(), "WSGATE_LOOPS=many")
	if out, _ := cmd.CombinedOutput(); !strings.Contains(string(out), "WSGATE_LOOPS") {
		t.Errorf("bad env var not named: %q", out)
	}
}

// BenchmarkIdleMemory measures the gateway process's memory per idle
// client: it connects 10,000 WebSocket clients through a gateway process
// (backends in their own processes) and reads the gateway's heap (after a
// forced GC) and RSS from its admin API, before and after.
//
//	go test -run '^$' -bench IdleMemory -benchtime 1x ./cmd/wsgate/
func BenchmarkIdleMemory(b *testing.B) {
	const clients = 10000
	for range b.N {
		g, _ := startProcesses(b, 2, "--pprof") // gatewayMemory forces a GC through pprof
		addr, adminAddr := g.addr, g.admin
		heap0, rss0 := gatewayMemory(b, adminAddr)
		conns := make([]net.Conn, 0, clients)
		for i := range clients {
			// Spread source addresses over 127.0.0.x like a real load test.
			c, err := dialWS(addr, fmt.Sprintf("/ws/user-%d", i), net.IPv4(127, 0, 0, byte(1+i%8)))
			if err != nil {
				b.Fatalf("client %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		heap1, rss1 := gatewayMemory(b, adminAddr)
		b.ReportMetric(float64(heap1-heap0)/clients, "heap-B/client")
		b.ReportMetric(float64(rss1-rss0)/clients, "rss-B/client")
		for _, c := range conns {
			c.Close()
		}
	}
}

// dialWS opens a WebSocket with a minimal client (no per-conn goroutine or
// buffers in this process) and reads the 101 response.
func dialWS(addr, path string, src net.IP) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 256), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return c, nil
}

// gatewayMemory forces a GC in the gateway (pprof heap ?gc=1) and reads
// go_memstats_heap_inuse_bytes and process_resident_memory_bytes.
func gatewayMemory(b *testing.B, adminAddr string) (heap, rss float64) {
	b.Helper()
	for range 2 {
		r, err := http.Get("http://" + adminAddr + "/debug/pprof/heap?gc=1")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return testutil.Metric(b, adminAddr, "go_memstats_heap_inuse_bytes"), testutil.Metric(b, adminAddr, "process_resident_memory_bytes")
}

// TestStaticNodeDownAndBack: with a static --backend list, a backend whose
// process dies leaves the gateway's ring at once (its clients get 1011)
// and is taken back when it listens again.
func TestStaticNodeDownAndBack(t *testing.T) {
	_, addr1 := startBackend(t, "b1", "127.0.0.1:0")
	b2, addr2 := startBackend(t, "b2", "127.0.0.1:0")
	g := startGateway(t, "--backend", "b1="+addr1, "--backend", "b2="+addr2)
	g.waitMembers(t, "b1,b2")
	clients := connectAll(t, g, keys("user", 40))

	_ = b2.cmd.Process.Kill()
	expectMoves(t, clients, func(c *wsClient) bool { return c.node == "b2" }, 1011, 10*time.Second)
	g.waitMembers(t, "b1")
	clients = reconnect(t, clients, "b1")

	// Back: the keys b2 owns move to it again, and only those.
	startBackend(t, "b2", addr2)
	g.waitMembers(t, "b1,b2")
	moved := expectMoves(t, clients, func(c *wsClient) bool { return g.owner(t, c.key) != c.node }, 1012, 10*time.Second)
	if len(moved) == 0 {
		t.Fatal("no key moved back to b2")
	}
	reconnect(t, clients, "b2")
}

// TestSecondSignalExits: a client that never answers the close holds the
// drain; a second SIGTERM ends the process at once (exit 130).
func TestSecondSignalExits(t *testing.T) {
	g, _ := startProcesses(t, 1)
	c, err := dialWS(g.addr, "/ws/stubborn", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	g.waitLog(t, "shutting down")
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Fatalf("exit after the second signal: %v, want status 130", err)
		}
	case <-time.After(5 * time.Second): // the drain alone would take 10s
		t.Fatal("still running 5s after the second signal")
	}
}

// TestBackendPprof: a backend serves /debug/pprof on its (loopback) admin
// listener only when asked to with --pprof, and only to a loopback Host
// (DNS rebinding: a page the operator visits sends its own host name);
// TestBadFlags checks that a non-loopback --admin is refused with it.
func TestBackendPprof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		want  int
	}{
		{"on", []string{"--pprof"}, http.StatusOK},
		{"off", nil, http.StatusNotFound},
		{"rebinding", []string{"--pprof"}, http.StatusMisdirectedRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, append([]string{"backend", "--id", "b1", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, tc.extra...)...)
			admin := p.waitLog(t, `backend admin listening.* addr=(\S+)`)[1]
			req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/debug/pprof/heap?debug=1", nil)
			if tc.name == "rebinding" {
				req.Host = "evil.example:80"
			}
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode != tc.want || (tc.want == http.StatusOK && !strings.Contains(string(body), "heap profile")) {
				t.Fatalf("GET /debug/pprof/heap: %d %.80q; want %d", r.StatusCode, body, tc.want)
			}
		})
	}
}
