package gateway_test

// Attacks on plain WebSocket upstreams (passthrough): a hostile client, a
// hostile or broken upstream, and the leaks either could cause.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/presence"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wsframe"
)

var atkMask = []byte{0x11, 0x22, 0x33, 0x44}

// atkFrame is one frame as an upstream or a client reads it.
type atkFrame struct {
	fin     bool
	op      wsframe.OpCode
	masked  bool
	payload []byte // unmasked
}

// atkParse splits b into whole frames (unmasking client frames); rest is
// an incomplete tail; err a malformed header.
func atkParse(b []byte) (frames []atkFrame, rest []byte, err error) {
	for len(b) > 0 {
		var h wsframe.Header
		n, err := h.Parse(b)
		if err != nil {
			return frames, b, err
		}
		if n == 0 || int64(len(b)-n) < h.Length {
			return frames, b, nil
		}
		p := append([]byte(nil), b[n:n+int(h.Length)]...)
		if h.Masked {
			wsframe.MaskBytes(p, h.Mask, 0)
		}
		frames = append(frames, atkFrame{fin: h.Fin, op: h.Op, masked: h.Masked, payload: p})
		b = b[n+int(h.Length):]
	}
	return frames, nil, nil
}

// atkRecorder keeps every byte an upstream receives after its 101.
type atkRecorder struct {
	mu   sync.Mutex
	buf  []byte
	eof  chan struct{} // closed when the gateway closed the upstream connection
	conn net.Conn
}

func (r *atkRecorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...)
}

// record reads c until EOF.
func (r *atkRecorder) record(c net.Conn) {
	defer close(r.eof)
	b := make([]byte, 64<<10)
	for {
		n, err := c.Read(b)
		r.mu.Lock()
		r.buf = append(r.buf, b[:n]...)
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// waitEOF waits for the gateway to close the upstream connection.
func (r *atkRecorder) waitEOF(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-r.eof:
	case <-time.After(within):
		t.Fatalf("the gateway did not close the upstream connection within %v", within)
	}
}

// recordingUpstream accepts one upgrade, runs first on the connection (it
// may write frames), then records what the gateway sends until EOF.
func recordingUpstream(t *testing.T, first func(c net.Conn)) (string, *atkRecorder) {
	t.Helper()
	rec := &atkRecorder{eof: make(chan struct{})}
	var once sync.Once
	url := rawUpstream(t, 0, func(c net.Conn) {
		once.Do(func() {
			rec.conn = c
			if first != nil {
				first(c)
			}
			rec.record(c)
		})
	})
	return url, rec
}

// hangUpstream accepts connections, reads the upgrade request and never
// answers it. got is signalled when a request arrived, gone when the
// gateway closed the connection (with the bytes it sent after the request).
func hangUpstream(t *testing.T) (url string, got chan struct{}, gone chan int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got, gone = make(chan struct{}, 100), make(chan int, 100)
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				got <- struct{}{}
				n, _ := io.Copy(io.Discard, br)
				gone <- int(n)
			}()
		}
	}()
	return "ws://" + ln.Addr().String(), got, gone
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr
}

// readClose reads frames until a close frame and returns its code and reason.
func (r *rawConn) readClose(t *testing.T) (int, string) {
	t.Helper()
	for {
		op, p := r.readFrame(t)
		if op != 8 {
			continue
		}
		if len(p) < 2 {
			return 1005, ""
		}
		return int(p[0])<<8 | int(p[1]), string(p[2:])
	}
}

// waitEOF waits for the gateway to close the client connection.
func (r *rawConn) waitEOF(t *testing.T) {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, r.br); err != nil {
		t.Fatalf("waiting for the gateway to close the connection: %v", err)
	}
}

func maskedClose(code uint16, reason string) []byte {
	return wsframe.AppendMaskedClose(nil, code, reason, [4]byte(atkMask))
}

func waitCounts(t *testing.T, g *gateway.Gateway, nodes ...string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := g.Clients(); n != 0 {
			return fmt.Errorf("g.Clients() = %d, want 0", n)
		}
		for _, id := range nodes {
			if n := g.NodeClients(id); n != 0 {
				return fmt.Errorf("g.NodeClients(%s) = %d, want 0", id, n)
			}
		}
		return nil
	})
}

// atkPresence is a presence store (Redis's role) that keeps the sessions
// the gateway reports.
type atkPresence struct {
	mu       sync.Mutex
	sessions map[string]presence.Change
	synced   bool // the gateway's first resync (reset, then its sessions) is done
	reset    bool
}

func (p *atkPresence) Apply(_ context.Context, _ string, changes []presence.Change) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.synced = p.synced || p.reset
	for _, c := range changes {
		if c.Add {
			p.sessions[c.Session] = c
		} else {
			delete(p.sessions, c.Session)
		}
	}
	return nil
}

func (p *atkPresence) Where(_ context.Context, user string) ([]presence.Location, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []presence.Location{}
	for _, c := range p.sessions {
		if c.User == user {
			out = append(out, presence.Location{Gateway: "gw1", Session: c.Session, Node: c.Node})
		}
	}
	return out, nil
}

func (p *atkPresence) GatewayAlive(context.Context, string, time.Duration, map[string]int) (bool, error) {
	return false, nil
}

func (p *atkPresence) ResetGateway(context.Context, string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.sessions)
	p.reset = true
	return nil
}

func (p *atkPresence) ReapGateways(context.Context) ([]string, error) { return nil, nil }

func (p *atkPresence) Online(context.Context) (map[string]int, error) { return nil, nil }

func (p *atkPresence) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, c := range p.sessions {
		out = append(out, c.User+"@"+c.Node)
	}
	return out
}

// TestPassthroughAttackFailedConnectPresence: many clients at once to an
// upstream whose connect fails at once (a refused port: the kernel answers
// a loopback connect before the upgrade request is written; an unroutable
// address: connect(2) itself fails). Each gets 1013; once they are gone
// the gateway counts no client and presence lists no session (a phantom
// session would draw pushes to a node the user is not on, forever).
func TestPassthroughAttackFailedConnectPresence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, url string }{
		{"refused", closedPortURL(t)},
		{"unroutable", "ws://255.255.255.255:9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := &atkPresence{sessions: map[string]presence.Change{}}
			g := startPassGateway(t, staticUpstreams(t, "dead="+tc.url), func(c *gateway.Config) {
				c.Presence = store
				c.PresenceFlush = 10 * time.Millisecond
			})
			testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				store.mu.Lock()
				defer store.mu.Unlock()
				if !store.synced {
					return errors.New("the gateway's presence is not synced yet")
				}
				return nil
			})
			concurrently(t, 20, func(i int) error {
				ws, resp, err := (&websocket.Dialer{HandshakeTimeout: 5 * time.Second}).Dial(fmt.Sprintf("ws://%s/ws/user-%d", g.Addr(), i), nil)
				if err != nil {
					return err
				}
				resp.Body.Close()
				defer ws.Close()
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _, err = ws.ReadMessage()
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != 1013 || ce.Text != "upstream unavailable" {
					return fmt.Errorf("user-%d: %v, want close 1013 upstream unavailable", i, err)
				}
				return nil
			})
			waitCounts(t, g, "dead")
			testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
				if l := store.list(); len(l) > 0 {
					return fmt.Errorf("presence still lists %d sessions of clients that are gone: %v", len(l), l)
				}
				return nil
			})
		})
	}
}

// TestPassthroughAttackFailAfterPartialFrame: the client's frame arrives
// in two pieces, the second followed by a bad frame in the same write.
// The upstream must get the whole first frame and then the gateway's
// close (1002), a well-formed stream; not the close frame's bytes inside
// the first frame's payload.
func TestPassthroughAttackFailAfterPartialFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"unmasked frame", frame(0x81, []byte("xx"), nil)},
		{"close with a bad code", frame(0x88, []byte{0x03, 0xe7}, atkMask)}, // 999
		{"reserved bits", frame(0xc1, []byte("xx"), atkMask)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, rec := recordingUpstream(t, func(c net.Conn) {
				_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpText, []byte("ready")))
			})
			g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
			r := rawDial(t, g.Addr())
			r.upgradeOnly(t, "/ws/k")
			if op, p := r.readFrame(t); op != 1 || string(p) != "ready" {
				t.Fatalf("got %d %q, want the upstream's ready", op, p)
			}
			payload := []byte("0123456789")
			a := frame(0x82, payload, atkMask)
			cut := len(a) - 5
			if _, err := r.Write(a[:cut]); err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				if n := len(rec.bytes()); n < cut {
					return fmt.Errorf("upstream has %d bytes of %d", n, cut)
				}
				return nil
			})
			if _, err := r.Write(append(append([]byte(nil), a[cut:]...), tc.bad...)); err != nil {
				t.Fatal(err)
			}
			if code, _ := r.readClose(t); code != 1002 {
				t.Fatalf("client got close %d, want 1002", code)
			}
			rec.waitEOF(t, 5*time.Second)
			frames, rest, err := atkParse(rec.bytes())
			if err != nil || len(rest) > 0 {
				t.Errorf("upstream's stream does not parse: %v (%d bytes left over, frames %+v)", err, len(rest), frames)
			}
			if len(frames) < 1 || frames[0].op != wsframe.OpBinary || !bytes.Equal(frames[0].payload, payload) {
				t.Fatalf("upstream's first frame is %+v, want binary %q", frames, payload)
			}
			// (The close's code is TestPassthroughAttackBadClientFrames's.)
			if len(frames) != 2 || frames[1].op != wsframe.OpClose {
				t.Fatalf("upstream got frames %+v, want the binary frame then a close", frames)
			}
		})
	}
}

// TestPassthroughAttackDataAfterUpstreamClose: the upstream closes first;
// before answering, the client sends a large data frame (read by the
// gateway in several pieces) and then its close in the same write. The
// upstream must get a well-formed stream ending with the client's close,
// not the tail of a payload whose head was dropped.
func TestPassthroughAttackDataAfterUpstreamClose(t *testing.T) {
	t.Parallel()
	url, rec := recordingUpstream(t, func(c net.Conn) {
		_, _ = c.Write(wsframe.AppendClose(nil, 4000, "bye"))
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/k")
	if code, reason := r.readClose(t); code != 4000 || reason != "bye" {
		t.Fatalf("client got close %d %q, want the upstream's 4000 bye", code, reason)
	}
	big := frame(0x82, bytes.Repeat([]byte{'z'}, 1<<20), atkMask)
	if _, err := r.Write(append(big, maskedClose(4000, "bye")...)); err != nil {
		t.Fatal(err)
	}
	r.waitEOF(t)
	rec.waitEOF(t, 5*time.Second)
	got := rec.bytes()
	frames, rest, err := atkParse(got)
	if err != nil || len(rest) > 0 {
		head := got[:min(len(got), 8)]
		t.Fatalf("upstream's stream after its close does not parse (%d bytes, starting % x): %v", len(got), head, err)
	}
	if len(frames) == 0 || frames[len(frames)-1].op != wsframe.OpClose {
		t.Fatalf("upstream got %d frames, the last not the client's close", len(frames))
	}
	waitCounts(t, g, "u")
}

// TestPassthroughAttackClientGoneWhileConnecting: the client drops its TCP
// connection while the upstream has not answered the upgrade (with frames
// pipelined behind its request, held by the gateway): the upstream
// connection is closed at once (not at the 5 s connect deadline), and
// nothing is left counted.
func TestPassthroughAttackClientGoneWhileConnecting(t *testing.T) {
	t.Parallel()
	url, got, gone := hangUpstream(t)
	g := startPassGateway(t, staticUpstreams(t, "h="+url), nil)
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /ws/k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write(append([]byte(req), frame(0x81, []byte("held"), atkMask)...)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got no upgrade request")
	}
	if g.NodeClients("h") != 1 || g.Clients() != 1 {
		t.Fatalf("counts %d/%d, want 1/1", g.NodeClients("h"), g.Clients())
	}
	c.(*net.TCPConn).SetLinger(0) // abrupt: RST
	c.Close()
	select {
	case n := <-gone:
		if n != 0 {
			t.Errorf("the upstream got %d bytes after its request, want none (it never upgraded)", n)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream connection outlived its client")
	}
	waitCounts(t, g, "h")
}

// TestPassthroughAttackUpstreamSilent: an upstream that never answers the
// upgrade: 1013 after the 5 s connect deadline, the held frames never
// sent, the upstream connection closed.
func TestPassthroughAttackUpstreamSilent(t *testing.T) {
	t.Parallel()
	url, got, gone := hangUpstream(t)
	g := startPassGateway(t, staticUpstreams(t, "h="+url), nil)
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/k")
	if _, err := r.Write(frame(0x81, []byte("held"), atkMask)); err != nil {
		t.Fatal(err)
	}
	<-got
	start := time.Now()
	if code, reason := r.readClose(t); code != 1013 || reason != "upstream unavailable" {
		t.Fatalf("close %d %q, want 1013 upstream unavailable", code, reason)
	}
	if d := time.Since(start); d > 7*time.Second {
		t.Errorf("closed after %v, want about 5 s", d)
	}
	select {
	case n := <-gone:
		if n != 0 {
			t.Errorf("the upstream got %d bytes after its request, want none", n)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream connection stayed open after the timeout")
	}
	_, _ = r.Write(maskedClose(1000, ""))
	waitCounts(t, g, "h")
}

// TestPassthroughAttackUpstreamDataAfterClose: the upstream sends a text
// frame and a ping after its close frame (same write): the client gets the
// close and nothing after it; its answer reaches the upstream.
func TestPassthroughAttackUpstreamDataAfterClose(t *testing.T) {
	t.Parallel()
	url, rec := recordingUpstream(t, func(c net.Conn) {
		var b []byte
		b = wsframe.AppendClose(b, 4001, "x")
		b = wsframe.AppendFrame(b, true, wsframe.OpText, []byte("late"))
		b = wsframe.AppendFrame(b, true, wsframe.OpPing, []byte("late"))
		_, _ = c.Write(b)
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/k")
	if op, p := r.readFrame(t); op != 8 || len(p) < 2 || int(p[0])<<8|int(p[1]) != 4001 {
		t.Fatalf("client got %d %q first, want the upstream's close 4001", op, p)
	}
	if _, err := r.Write(maskedClose(4001, "")); err != nil {
		t.Fatal(err)
	}
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(r.br); err != nil || len(rest) > 0 {
		t.Fatalf("after the close the client got % x (%v), want nothing and EOF", rest, err)
	}
	rec.waitEOF(t, 5*time.Second)
	frames, _, err := atkParse(rec.bytes())
	if err != nil || len(frames) != 1 || frames[0].op != wsframe.OpClose || !frames[0].masked {
		t.Fatalf("upstream got %+v (%v), want the client's masked close", frames, err)
	}
	waitCounts(t, g, "u")
}

// TestPassthroughAttackCloseRightAfter101: the upstream's 101, its close
// frame and its FIN come together: the client gets the upstream's code
// (not 1011) and the gateway forgets it when it answers.
func TestPassthroughAttackCloseRightAfter101(t *testing.T) {
	t.Parallel()
	url := rawUpstream(t, 0, func(c net.Conn) {
		_, _ = c.Write(wsframe.AppendClose(nil, 4002, "go"))
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
	for range 5 {
		r := rawDial(t, g.Addr())
		r.upgradeOnly(t, "/ws/k")
		if code, reason := r.readClose(t); code != 4002 || reason != "go" {
			t.Fatalf("close %d %q, want the upstream's 4002 go", code, reason)
		}
		if _, err := r.Write(maskedClose(4002, "")); err != nil {
			t.Fatal(err)
		}
		r.waitEOF(t)
	}
	waitCounts(t, g, "u")
}

// TestPassthroughAttackSlowUpstreamFrame: the upstream writes a frame's
// header a byte at a time and its 200 KiB payload in slow pieces; a push
// meanwhile goes before the frame, not into it. Then the upstream's ping
// reaches the client, and the client's pong the upstream.
func TestPassthroughAttackSlowUpstreamFrame(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	midFrame, pushed := make(chan struct{}), make(chan struct{})
	pong := make(chan []byte, 1)
	url := rawUpstream(t, 0, func(c net.Conn) {
		hdr := wsframe.AppendHeader(nil, true, wsframe.OpBinary, len(payload))
		for i := range hdr {
			_, _ = c.Write(hdr[i : i+1])
			time.Sleep(5 * time.Millisecond) // the attack: a header dribbled byte by byte
		}
		_, _ = c.Write(payload[:1000])
		close(midFrame)
		<-pushed
		for p := payload[1000:]; len(p) > 0; {
			n := min(len(p), 16<<10)
			_, _ = c.Write(p[:n])
			p = p[n:]
			time.Sleep(2 * time.Millisecond) // the attack: a slow payload
		}
		_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpPing, []byte("pp")))
		var buf []byte
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			buf = append(buf, b[:n]...)
			frames, _, perr := atkParse(buf)
			if perr != nil {
				pong <- []byte("bad stream: " + perr.Error())
				return
			}
			for _, f := range frames {
				if f.op == wsframe.OpPong {
					pong <- f.payload
					_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpText, []byte("end")))
					_, _ = io.Copy(io.Discard, c)
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), func(c *gateway.Config) { c.MaxMessage = 1 << 20 })
	ws := dialPass(t, g, "/ws/slow", nil)
	<-midFrame
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if g.NodeClients("u") != 1 {
			return errors.New("client not counted yet")
		}
		return nil
	})
	n, err := g.Push(t.Context(), "slow", []byte("pushed"))
	close(pushed)
	if err != nil || n != 1 {
		t.Fatalf("push reached %d (%v), want 1", n, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, want := range [][]byte{[]byte("pushed"), payload, []byte("end")} {
		_, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes %.20q, want %d bytes %.20q", i, len(got), got, len(want), want)
		}
	}
	select {
	case p := <-pong:
		if string(p) != "pp" {
			t.Fatalf("upstream got pong %q, want pp", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's pong did not reach the upstream")
	}
}

// TestPassthroughAttackPushMidFragment: while the upstream is in the middle
// of a fragmented message a push does not reach the client (it would break
// the message); after the last fragment it does.
func TestPassthroughAttackPushMidFragment(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	url := rawUpstream(t, 0, func(c net.Conn) {
		_, _ = c.Write(wsframe.AppendFrame(nil, false, wsframe.OpText, []byte("frag1")))
		<-next
		_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpContinuation, []byte("frag2")))
		_, _ = io.Copy(io.Discard, c)
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/frag")
	if op, p := r.readFrame(t); op != 1 || string(p) != "frag1" {
		t.Fatalf("got %d %q, want the first fragment", op, p)
	}
	if n, err := g.Push(t.Context(), "frag", []byte("pushed")); err != nil || n != 0 {
		close(next)
		t.Fatalf("push in the middle of a message reached %d (%v), want 0", n, err)
	}
	close(next)
	if op, p := r.readFrame(t); op != 0 || string(p) != "frag2" {
		t.Fatalf("got %d %q, want the last fragment", op, p)
	}
	if n, err := g.Push(t.Context(), "frag", []byte("pushed")); err != nil || n != 1 {
		t.Fatalf("push after the message reached %d (%v), want 1", n, err)
	}
	if op, p := r.readFrame(t); op != 1 || string(p) != "pushed" {
		t.Fatalf("got %d %q, want the push", op, p)
	}
}

// echoServe is an upstream that echoes each client frame unmasked (same
// FIN and opcode), answers pings with pongs and closes with a close echo.
func echoServe(c net.Conn) {
	var buf []byte
	b := make([]byte, 4096)
	for {
		n, err := c.Read(b)
		buf = append(buf, b[:n]...)
		frames, rest, perr := atkParse(buf)
		if perr != nil {
			return
		}
		buf = append([]byte(nil), rest...)
		for _, f := range frames {
			if !f.masked {
				return
			}
			switch f.op {
			case wsframe.OpPing:
				_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpPong, f.payload))
			case wsframe.OpPong:
			case wsframe.OpClose:
				_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpClose, f.payload))
				return
			default:
				_, _ = c.Write(wsframe.AppendFrame(nil, f.fin, f.op, f.payload))
			}
		}
		if err != nil {
			return
		}
	}
}

// TestPassthroughAttackPipelined: the client writes its upgrade request and
// its frames in one TCP write (a message fragmented around a ping, then a
// close in the middle of another fragmented message) while the upstream is
// slow to answer: the frames are held and relayed in order; the close is
// answered by the upstream.
func TestPassthroughAttackPipelined(t *testing.T) {
	t.Parallel()
	url := rawUpstream(t, 200*time.Millisecond, echoServe)
	g := startPassGateway(t, staticUpstreams(t, "u="+url), nil)
	r := rawDial(t, g.Addr())
	req := "GET /ws/k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	b := []byte(req)
	b = append(b, frame(0x81, []byte("early"), atkMask)...)
	b = append(b, frame(0x89, []byte("p1"), atkMask)...)
	b = append(b, frame(0x01, []byte("he"), atkMask)...)
	b = append(b, frame(0x89, []byte("p2"), atkMask)...)
	b = append(b, frame(0x80, []byte("llo"), atkMask)...)
	b = append(b, frame(0x02, []byte("half"), atkMask)...)
	b = append(b, maskedClose(4003, "mid-message")...)
	if _, err := r.Write(b); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for i, want := range []struct {
		op byte
		p  string
	}{{1, "early"}, {0xa, "p1"}, {1, "he"}, {0xa, "p2"}, {0, "llo"}, {2, "half"}} {
		if op, p := r.readFrame(t); op != want.op || string(p) != want.p {
			t.Fatalf("frame %d: %d %q, want %d %q", i, op, p, want.op, want.p)
		}
	}
	if code, reason := r.readClose(t); code != 4003 || reason != "mid-message" {
		t.Fatalf("close %d %q, want the upstream's echo 4003 mid-message", code, reason)
	}
	r.waitEOF(t)
	waitCounts(t, g, "u")
}

// TestPassthroughAttackBadClientFrames: frames a server must refuse get
// the documented code, and the upstream (upgraded) is sent the same code.
func TestPassthroughAttackBadClientFrames(t *testing.T) {
	t.Parallel()
	big := wsframe.AppendMaskedHeader(nil, true, wsframe.OpBinary, 1<<40, [4]byte(atkMask))
	for _, tc := range []struct {
		name string
		send []byte
		code int
	}{
		{"unmasked", frame(0x82, []byte("x"), nil), 1002},
		{"64-bit length over the limit", big, 1009},
		{"64-bit length with the top bit", append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1}, atkMask...), 1002},
		{"reserved bits", frame(0x92, []byte("x"), atkMask), 1002},
		{"reserved opcode", frame(0x83, []byte("x"), atkMask), 1002},
		{"fragmented ping", frame(0x09, []byte("x"), atkMask), 1002},
		{"long ping", frame(0x89, make([]byte, 126), atkMask), 1002},
		{"continuation without a message", frame(0x80, []byte("x"), atkMask), 1002},
		{"new message inside a fragmented one", append(frame(0x01, []byte("a"), atkMask), frame(0x81, []byte("b"), atkMask)...), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, rec := recordingUpstream(t, func(c net.Conn) {
				_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpText, []byte("ready")))
			})
			g := startPassGateway(t, staticUpstreams(t, "u="+url), func(c *gateway.Config) { c.MaxMessage = 1 << 20 })
			r := rawDial(t, g.Addr())
			r.upgradeOnly(t, "/ws/k")
			if op, p := r.readFrame(t); op != 1 || string(p) != "ready" {
				t.Fatalf("got %d %q, want ready", op, p)
			}
			if _, err := r.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if code, _ := r.readClose(t); code != tc.code {
				t.Fatalf("client got close %d, want %d", code, tc.code)
			}
			rec.waitEOF(t, 5*time.Second)
			frames, _, err := atkParse(rec.bytes())
			if err != nil || len(frames) == 0 {
				t.Fatalf("upstream got %+v (%v)", frames, err)
			}
			last := frames[len(frames)-1]
			if last.op != wsframe.OpClose || len(last.payload) < 2 || int(last.payload[0])<<8|int(last.payload[1]) != tc.code {
				t.Fatalf("upstream's last frame %+v, want a close %d", last, tc.code)
			}
			waitCounts(t, g, "u")
		})
	}
}

// TestPassthroughAttackRebalanceMidFrame: the ring moves a client that is
// in the middle of sending a frame: it gets 1012, and the upstream gets
// exactly the bytes the client sent, then EOF (no close frame inside the
// unfinished payload).
func TestPassthroughAttackRebalanceMidFrame(t *testing.T) {
	t.Parallel()
	bus := membership.NewMemory()
	urlA, rec := recordingUpstream(t, func(c net.Conn) {
		_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpText, []byte("ready")))
	})
	urlB := rawUpstream(t, 0, echoServe)
	for id, u := range map[string]string{"a": urlA, "b": urlB} {
		if err := bus.Publish(context.Background(), membership.Event{Type: membership.Join, Node: membership.Node{ID: id, Addr: u}}); err != nil {
			t.Fatal(err)
		}
	}
	g := startPassGateway(t, bus, nil)
	key := atkKeyOf(t, "a", ring.Member{ID: "a", Addr: urlA}, ring.Member{ID: "b", Addr: urlB})
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/"+key)
	if op, p := r.readFrame(t); op != 1 || string(p) != "ready" {
		t.Fatalf("got %d %q, want ready", op, p)
	}
	part := frame(0x82, make([]byte, 100), atkMask)[:50]
	if _, err := r.Write(part); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(rec.bytes()); n < len(part) {
			return fmt.Errorf("upstream has %d bytes", n)
		}
		return nil
	})
	if err := bus.Publish(context.Background(), membership.Event{Type: membership.Leave, Node: membership.Node{ID: "a", Addr: urlA}}); err != nil {
		t.Fatal(err)
	}
	if code, reason := r.readClose(t); code != 1012 {
		t.Fatalf("close %d %q, want 1012", code, reason)
	}
	rec.waitEOF(t, 5*time.Second)
	if got := rec.bytes(); !bytes.Equal(got, part) {
		t.Fatalf("upstream got %d bytes % x, want exactly the client's %d", len(got), got[min(len(got), len(part)):], len(part))
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := g.NodeClients("a"); n != 0 {
			return fmt.Errorf("node a counts %d", n)
		}
		return nil
	})
}

// atkKeyOf is a key that members route to node id.
func atkKeyOf(t *testing.T, id string, members ...ring.Member) string {
	t.Helper()
	r, err := ring.New(members)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if k := fmt.Sprintf("key-%d", i); r.LookupString(k).ID == id {
			return k
		}
	}
	t.Fatalf("no key for %s", id)
	return ""
}

// TestPassthroughAttackRebalanceWhileConnecting: the client's node leaves
// while its upstream has not answered the upgrade: 1012 at once, the
// upstream connection closed, the node's count back to 0.
func TestPassthroughAttackRebalanceWhileConnecting(t *testing.T) {
	t.Parallel()
	bus := membership.NewMemory()
	urlA, got, gone := hangUpstream(t)
	urlB := rawUpstream(t, 0, echoServe)
	for id, u := range map[string]string{"a": urlA, "b": urlB} {
		if err := bus.Publish(context.Background(), membership.Event{Type: membership.Join, Node: membership.Node{ID: id, Addr: u}}); err != nil {
			t.Fatal(err)
		}
	}
	g := startPassGateway(t, bus, nil)
	key := atkKeyOf(t, "a", ring.Member{ID: "a", Addr: urlA}, ring.Member{ID: "b", Addr: urlB})
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/"+key)
	<-got
	if err := bus.Publish(context.Background(), membership.Event{Type: membership.Leave, Node: membership.Node{ID: "a", Addr: urlA}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if code, _ := r.readClose(t); code != 1012 {
		t.Fatalf("close %d, want 1012", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("1012 after %v", d)
	}
	select {
	case <-gone:
	case <-time.After(3 * time.Second):
		t.Fatal("the connecting upstream connection was not closed")
	}
	_, _ = r.Write(maskedClose(1012, ""))
	r.waitEOF(t)
	waitCounts(t, g, "a", "b")
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestPassthroughAttackDeadUpstreamFlood: 200 clients at once to an
// upstream that accepts nothing: each is told 1013, and the gateway is
// left with no client, no descriptor and no goroutine more than before.
func TestPassthroughAttackDeadUpstreamFlood(t *testing.T) {
	url := closedPortURL(t)
	g := startPassGateway(t, staticUpstreams(t, "dead="+url), nil)
	// Warm up (the loops, the first client), then measure.
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/warm")
	r.readClose(t)
	r.Close()
	waitCounts(t, g, "dead")
	fds, gor := openFDs(t), runtime.NumGoroutine()

	concurrently(t, 200, func(i int) error {
		c, err := net.DialTimeout("tcp", g.Addr(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /ws/u%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			return fmt.Errorf("upgrade %d: %v %v", i, resp, err)
		}
		rest, _ := io.ReadAll(io.LimitReader(br, 64))
		if !bytes.Contains(rest, []byte("upstream unavailable")) {
			return fmt.Errorf("client %d got % x, want 1013 upstream unavailable", i, rest)
		}
		return nil
	})
	waitCounts(t, g, "dead")
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if f, gr := openFDs(t), runtime.NumGoroutine(); f > fds+5 || gr > gor+5 {
			return fmt.Errorf("%d descriptors (%d before), %d goroutines (%d before)", f, fds, gr, gor)
		}
		return nil
	})
}

// TestPassthroughAttackClientCloseWhileConnecting: the client closes while
// the upstream is still connecting; the upstream then answers: the held
// close reaches it and its echo reaches the client.
func TestPassthroughAttackClientCloseWhileConnecting(t *testing.T) {
	t.Parallel()
	url := rawUpstream(t, 300*time.Millisecond, echoServe)
	g := startPassGateway(t, staticUpstreams(t, "u="+url), func(c *gateway.Config) { c.CloseTimeout = 3 * time.Second })
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/k")
	if _, err := r.Write(append(frame(0x81, []byte("bye soon"), atkMask), maskedClose(4004, "early")...)); err != nil {
		t.Fatal(err)
	}
	if op, p := r.readFrame(t); op != 1 || string(p) != "bye soon" {
		t.Fatalf("got %d %q, want the echo", op, p)
	}
	if code, reason := r.readClose(t); code != 4004 || reason != "early" {
		t.Fatalf("close %d %q, want the upstream's echo 4004 early", code, reason)
	}
	r.waitEOF(t)
	waitCounts(t, g, "u")
}

// TestPassthroughAttackConcurrentConnects: clients on every loop connect
// to their upstreams at once (under -race: the loops share the resolved
// target).
func TestPassthroughAttackConcurrentConnects(t *testing.T) {
	t.Parallel()
	url := rawUpstream(t, 0, echoServe)
	g := startPassGateway(t, staticUpstreams(t, "u="+url), func(c *gateway.Config) { c.Loops = 4 })
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ws, resp, err := (&websocket.Dialer{HandshakeTimeout: 5 * time.Second}).Dial(fmt.Sprintf("ws://%s/ws/c%d", g.Addr(), i), nil)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			defer ws.Close()
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			msg := fmt.Appendf(nil, "hello %d", i)
			if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
				errs <- err
				return
			}
			if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("client %d: %q %v", i, got, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPassthroughAttackUpstreamNotReading: an upstream that stops reading
// while the client keeps writing: the client is closed with 1013
// "upstream overloaded" once --max-link-backlog is queued.
func TestPassthroughAttackUpstreamNotReading(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	url := rawUpstream(t, 0, func(c net.Conn) {
		_, _ = c.Write(wsframe.AppendFrame(nil, true, wsframe.OpText, []byte("ready")))
		<-stop
	})
	g := startPassGateway(t, staticUpstreams(t, "u="+url), func(c *gateway.Config) {
		c.MaxLinkBacklog = 1 << 20
		c.MaxFrameRate = -1
	})
	r := rawDial(t, g.Addr())
	r.upgradeOnly(t, "/ws/k")
	if op, p := r.readFrame(t); op != 1 || string(p) != "ready" {
		t.Fatalf("got %d %q, want ready", op, p)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := frame(0x82, make([]byte, 64<<10), atkMask)
		for range 1000 { // 64 MiB at most; the kernel's buffers take a few
			if _, err := r.Write(f); err != nil {
				return
			}
		}
	}()
	if code, reason := r.readClose(t); code != 1013 || reason != "upstream overloaded" {
		t.Fatalf("close %d %q, want 1013 upstream overloaded", code, reason)
	}
	r.Close()
	<-done
	waitCounts(t, g, "u")
}

// concurrently runs f(0..n-1) at once and reports every error.
func concurrently(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPassthroughAttackUpstreamResetUnderLoad: the upstream resets its
// connection (RST) while the gateway's loop is stalled and the client's
// next frames wait: whichever the loop reads first, the write to the dead
// upstream fails inside gnet's Write, which closes it then and there. The
// gateway must survive that (it once dereferenced the closed upstream) and
// send the client one close frame, 1011, not two.
func TestPassthroughAttackUpstreamResetUnderLoad(t *testing.T) {
	for round := range 3 {
		reset := make(chan struct{})
		up := rawUpstream(t, 0, func(c net.Conn) {
			<-reset
			_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		})
		g := startPassGateway(t, staticUpstreams(t, "u="+up), nil)
		r := rawDial(t, g.Addr())
		r.upgradeOnly(t, "/ws/k")
		testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if nodeStatus(t, g, "u").Clients != 1 {
				return errors.New("client not routed yet")
			}
			return nil
		})
		g.StallLoops(300 * time.Millisecond) // the load: the loop reads nothing meanwhile
		if _, err := r.Write(frame(0x82, make([]byte, 64<<10), atkMask)); err != nil {
			t.Fatal(err)
		}
		close(reset)
		op, payload := r.readFrame(t)
		if op != 0x8 || len(payload) < 2 || int(payload[0])<<8|int(payload[1]) != 1011 {
			t.Fatalf("round %d: got opcode %d %q, want close 1011", round, op, payload)
		}
		_ = r.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if op, p := r.tryFrame(); op >= 0 {
			t.Fatalf("round %d: a second frame after the close: opcode %d %q", round, op, p)
		}
		// The gateway is alive: a new client gets through.
		r2 := rawDial(t, g.Addr())
		r2.upgradeOnly(t, "/ws/k2")
	}
}

// tryFrame reads one frame or reports -1 when the connection ends (EOF,
// reset or the read deadline) before one comes.
func (r *rawConn) tryFrame() (op int, payload []byte) {
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return -1, nil
	}
	n := int(h[1] & 0x7f)
	p := make([]byte, n)
	if n < 126 {
		if _, err := io.ReadFull(r.br, p); err != nil {
			return -1, nil
		}
	}
	return int(h[0] & 0x0f), p
}

// TestAttackCloseBeforePending101: a client that offered a subprotocol
// sends a close frame before its 101 (which waits for a hanging
// upstream): when its close handshake times out it gets an HTTP answer,
// not a WebSocket close frame, and nothing stays counted. From an
// independent attack on the pending-101 path.
func TestAttackCloseBeforePending101(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	hang := serveTCP(t, func(c net.Conn) { <-hold; c.Close() }) // accepts, never answers
	g := startPassGateway(t, staticUpstreams(t, "u=ws://"+hang.Addr().String()), func(c *gateway.Config) { c.CloseTimeout = 200 * time.Millisecond })
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /ws/k HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if g.Clients() != 1 {
			return errors.New("client not routed yet")
		}
		return nil
	})
	if _, err := c.Write(frame(0x88, []byte{0x03, 0xe8}, []byte{1, 2, 3, 4})); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
	got, _ := io.ReadAll(c)
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 503 ")) {
		t.Fatalf("client got %q, want an HTTP 503 (it never got a 101)", got)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := g.Clients(); n != 0 {
			return fmt.Errorf("%d clients counted", n)
		}
		return nil
	})
}
