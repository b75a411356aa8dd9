package backend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wire"
)

// eventually is checkFor with the timeouts used throughout.
func eventually(t testing.TB, cond func() error) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, cond)
}

type closeEvent struct {
	id     uint32
	key    string
	code   uint16
	reason string
}

// recorder is a Handler that echoes by default, records events and checks
// that calls for one session never overlap and follow Open, Message...,
// Close.
type recorder struct {
	t testing.TB

	mu       sync.Mutex
	opens    []*backend.Session
	closes   []closeEvent
	messages int
	pushes   []string
	active   map[*backend.Session]bool // a handler call is running
	state    map[*backend.Session]int  // 1 open, 2 closed

	onMessage func(s *backend.Session, binary bool, data []byte) // nil: echo
	onPush    func(key string, data []byte) int
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, active: map[*backend.Session]bool{}, state: map[*backend.Session]int{}}
}

func (r *recorder) enter(s *backend.Session, call string, wantState int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.active[s] {
		r.t.Errorf("%s for session %d while another call for it runs", call, s.ID())
	}
	if r.state[s] != wantState {
		r.t.Errorf("%s for session %d in state %d", call, s.ID(), r.state[s])
	}
	r.active[s] = true
}

func (r *recorder) leave(s *backend.Session) {
	r.mu.Lock()
	r.active[s] = false
	r.mu.Unlock()
}

func (r *recorder) OnOpen(s *backend.Session) {
	r.enter(s, "OnOpen", 0)
	defer r.leave(s)
	r.mu.Lock()
	r.state[s] = 1
	r.opens = append(r.opens, s)
	r.mu.Unlock()
}

func (r *recorder) OnMessage(s *backend.Session, binary bool, data []byte) {
	r.enter(s, "OnMessage", 1)
	defer r.leave(s)
	r.mu.Lock()
	r.messages++
	f := r.onMessage
	r.mu.Unlock()
	if f != nil {
		f(s, binary, data)
		return
	}
	if err := s.Send(binary, data); err != nil {
		r.t.Errorf("echo: %v", err)
	}
}

func (r *recorder) OnClose(s *backend.Session, code uint16, reason string) {
	r.enter(s, "OnClose", 1)
	defer r.leave(s)
	r.mu.Lock()
	r.state[s] = 2
	r.closes = append(r.closes, closeEvent{s.ID(), s.Key(), code, reason})
	r.mu.Unlock()
}

func (r *recorder) OnPush(key string, data []byte) int {
	r.mu.Lock()
	r.pushes = append(r.pushes, key+"="+string(data))
	f := r.onPush
	r.mu.Unlock()
	if f != nil {
		return f(key, data)
	}
	return 0
}

func (r *recorder) session(t testing.TB, id uint32) *backend.Session {
	t.Helper()
	var s *backend.Session
	eventually(t, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for i := len(r.opens) - 1; i >= 0; i-- { // the latest: ids are reused
			if r.opens[i].ID() == id {
				s = r.opens[i]
				return nil
			}
		}
		return fmt.Errorf("no OnOpen for session %d", id)
	})
	return s
}

// waitCloses waits until OnClose was called n times and returns the calls.
func (r *recorder) waitCloses(t testing.TB, n int) []closeEvent {
	t.Helper()
	var out []closeEvent
	eventually(t, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.closes) != n {
			return fmt.Errorf("%d OnClose calls, want %d: %+v", len(r.closes), n, r.closes)
		}
		out = append([]closeEvent(nil), r.closes...)
		return nil
	})
	return out
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a node on a random loopback port; edit may adjust cfg.
func startNode(t testing.TB, h backend.Handler, edit func(*backend.Config)) *backend.Node {
	t.Helper()
	cfg := backend.Config{ID: "node-a", Listen: "127.0.0.1:0", Logger: quietLogger()}
	if edit != nil {
		edit(&cfg)
	}
	n, err := backend.NewNode(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func sessionCount(n *backend.Node, want int) func() error {
	return func() error {
		if got := n.SessionCount(); got != want {
			return fmt.Errorf("SessionCount = %d, want %d", got, want)
		}
		return nil
	}
}

func TestConfigValidation(t *testing.T) {
	h := newRecorder(t)
	tests := []struct {
		cfg  backend.Config
		h    backend.Handler
		want []string
	}{
		{backend.Config{}, h, []string{"Config.ID is required", "Config.Listen is required"}},
		{backend.Config{ID: "a"}, h, []string{"Config.Listen"}},
		{backend.Config{Listen: ":0"}, h, []string{"Config.ID"}},
		{backend.Config{ID: strings.Repeat("x", 70000), Listen: ":0"}, h, []string{"Config.ID is 70000 bytes"}},
		{backend.Config{ID: "a", Listen: ":0", MaxMessage: -1, FragmentSize: -2}, h, []string{"Config.MaxMessage", "Config.FragmentSize"}},
		{backend.Config{ID: "a", Listen: ":0", PingInterval: -1, LinkTimeout: -1, HelloTimeout: -1, MaxLinkBuffer: -1},
			h, []string{"Config.PingInterval", "Config.LinkTimeout", "Config.HelloTimeout", "Config.MaxLinkBuffer"}},
		{backend.Config{ID: "a", Listen: ":0"}, nil, []string{"Handler is nil"}},
	}
	for _, tt := range tests {
		_, err := backend.NewNode(tt.cfg, tt.h)
		if err == nil {
			t.Errorf("NewNode(%+v): no error", tt.cfg)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("NewNode error %q does not mention %q", err, w)
			}
		}
	}
	n, err := backend.NewNode(backend.Config{ID: "a", Listen: "127.0.0.1:0", Logger: quietLogger()}, h)
	if err != nil {
		t.Fatal(err)
	}
	if n.Addr() != "" || n.ID() != "a" {
		t.Fatalf("before Start: Addr %q ID %q", n.Addr(), n.ID())
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if _, port, err := net.SplitHostPort(n.Addr()); err != nil || port == "0" {
		t.Fatalf("Addr %q: %v", n.Addr(), err)
	}
	if err := n.Start(); !errors.Is(err, backend.ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); !errors.Is(err, backend.ErrNodeClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

func TestHandshakeAndEcho(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	if g.Hello.NodeID != "node-a" || g.Hello.MaxBody != wire.DefaultMaxBody || g.Hello.Version != wire.Version {
		t.Fatalf("node Hello %+v", g.Hello)
	}
	g.Open(1, "u1", "/ws/u1?x=1")
	s := r.session(t, 1)
	if s.Key() != "u1" || s.Keyless() || s.Target() != "/ws/u1?x=1" || s.RemoteAddr() != "192.0.2.1:4242" || s.Node() != n {
		t.Fatalf("session: key %q keyless %v target %q remote %q", s.Key(), s.Keyless(), s.Target(), s.RemoteAddr())
	}
	if n.SessionCount() != 1 {
		t.Fatalf("SessionCount = %d", n.SessionCount())
	}
	for _, tc := range []struct {
		binary bool
		data   string
	}{{false, "hello"}, {true, "\x00\x01\xff"}, {false, ""}, {true, ""}} {
		g.Message(1, tc.binary, []byte(tc.data), 0)
		m := g.ReadMessage(1)
		if m.Binary != tc.binary || string(m.Data) != tc.data || m.Frags != 1 {
			t.Fatalf("echo of %q (binary %v): %+v", tc.data, tc.binary, m)
		}
	}
	// 4 messages of 5+3 bytes each way, counted when handed over / queued.
	want := backend.Stats{Sessions: 1, Links: 1, MessagesIn: 4, BytesIn: 8, MessagesOut: 4, BytesOut: 8}
	if st := n.Stats(); st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	g.Open(2, "", "/ws")
	if s := r.session(t, 2); !s.Keyless() || s.Key() != "" {
		t.Fatalf("keyless session: %v %q", s.Keyless(), s.Key())
	}
}

func TestFragmentedAndLargeMessages(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	g.Open(2, "u2", "/ws/u2")

	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	// 1 MiB in 100 kB fragments, then 1 MiB in one frame (the largest body
	// the node accepts); the echo comes back in 64 KiB fragments.
	for _, frag := range []int{100_000, 0} {
		g.Message(1, true, big, frag)
		m := g.ReadMessage(1)
		if !m.Binary || !bytes.Equal(m.Data, big) {
			t.Fatalf("frag %d: echo differs (binary %v, %d bytes)", frag, m.Binary, len(m.Data))
		}
		if m.Frags != 16 || m.MaxFrag != backend.DefaultFragmentSize {
			t.Fatalf("frag %d: echo in %d fragments, largest %d", frag, m.Frags, m.MaxFrag)
		}
	}

	// Fragments of two sessions interleaved on the link.
	a := gwtest.AppendMessage(nil, 1, false, []byte(strings.Repeat("a", 3000)), 1000)
	b := gwtest.AppendMessage(nil, 2, true, []byte(strings.Repeat("b", 2000)), 1000)
	fa, fb := splitFrames(t, a), splitFrames(t, b)
	g.Write(fa[0], fb[0], fa[1], fb[1], fa[2])
	if m := g.ReadMessage(2); !m.Binary || string(m.Data) != strings.Repeat("b", 2000) {
		t.Fatalf("session 2 got %d bytes binary %v", len(m.Data), m.Binary)
	}
	if m := g.ReadMessage(1); m.Binary || string(m.Data) != strings.Repeat("a", 3000) {
		t.Fatalf("session 1 got %d bytes binary %v", len(m.Data), m.Binary)
	}
}

func TestFragmentSizeConfig(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) { c.FragmentSize = 1000 })
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	data := []byte(strings.Repeat("x", 2500))
	g.Message(1, false, data, 0)
	m := g.ReadMessage(1)
	if m.Frags != 3 || m.MaxFrag != 1000 || !bytes.Equal(m.Data, data) {
		t.Fatalf("echo: %d frags, max %d, %d bytes", m.Frags, m.MaxFrag, len(m.Data))
	}
}

// splitFrames cuts a byte stream into its frames.
func splitFrames(t testing.TB, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		h, err := wire.ParseHeader(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := wire.HeaderSize + h.BodyLen
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func TestSendToKeyAndBroadcast(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g1 := gwtest.Dial(t, n.Addr(), "gw-1")
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	g1.Open(1, "u1", "/ws/u1")
	g1.Open(2, "u2", "/ws/u2")
	g2.Open(1, "u1", "/ws/u1") // same id on another link: a different session
	g2.Open(2, "u1", "/ws/u1")
	g2.Open(3, "", "/ws")
	eventually(t, sessionCount(n, 5))

	if got := n.SendToKey("u1", true, []byte("to u1")); got != 3 {
		t.Fatalf("SendToKey(u1) = %d, want 3", got)
	}
	if got := n.SendToKey("nobody", false, []byte("x")); got != 0 {
		t.Fatalf("SendToKey(nobody) = %d", got)
	}
	if got := n.SendToKey("", false, []byte("x")); got != 0 {
		t.Fatalf("SendToKey(\"\") = %d (keyless sessions have no key)", got)
	}
	for _, g := range []*gwtest.Conn{g1, g2} {
		f := g.Expect(wire.TypeSendKey, 0)
		key, payload, err := wire.ParseSendKey(f.Body)
		if err != nil || string(key) != "u1" || string(payload) != "to u1" || f.Flags != wire.FlagBinary {
			t.Fatalf("SendKey: %q %q %v flags %#x", key, payload, err, f.Flags)
		}
	}

	if got := n.Broadcast(false, []byte("all")); got != 5 {
		t.Fatalf("Broadcast = %d, want 5", got)
	}
	for _, g := range []*gwtest.Conn{g1, g2} {
		f := g.Expect(wire.TypeBroadcast, 0)
		if string(f.Body) != "all" || f.Flags != 0 {
			t.Fatalf("Broadcast frame %q flags %#x", f.Body, f.Flags)
		}
	}

	// Too big for one frame of the gateway's MaxBody: per-session messages.
	big := bytes.Repeat([]byte("z"), wire.DefaultMaxBody+10)
	if got := n.SendToKey("u1", false, big); got != 3 {
		t.Fatalf("big SendToKey = %d", got)
	}
	if m := g1.ReadMessage(1); !bytes.Equal(m.Data, big) {
		t.Fatalf("big SendToKey g1: %d bytes", len(m.Data))
	}
	for _, id := range []uint32{1, 2} {
		if m := g2.ReadMessage(id); !bytes.Equal(m.Data, big) {
			t.Fatalf("big SendToKey g2/%d: %d bytes", id, len(m.Data))
		}
	}
	if got := n.Broadcast(true, big); got != 5 {
		t.Fatalf("big Broadcast = %d", got)
	}
	for _, id := range []uint32{1, 2} {
		if m := g1.ReadMessage(id); !bytes.Equal(m.Data, big) || !m.Binary {
			t.Fatalf("big Broadcast g1/%d", id)
		}
	}
	for _, id := range []uint32{1, 2, 3} {
		if m := g2.ReadMessage(id); !bytes.Equal(m.Data, big) || !m.Binary {
			t.Fatalf("big Broadcast g2/%d", id)
		}
	}

	// Closed sessions leave the index.
	g2.Close(1, 1000, "")
	g2.Close(2, 1001, "")
	eventually(t, sessionCount(n, 3))
	if got := n.SendToKey("u1", false, []byte("again")); got != 1 {
		t.Fatalf("SendToKey after closes = %d", got)
	}
}

func TestPush(t *testing.T) {
	r := newRecorder(t)
	r.onPush = func(key string, data []byte) int { return len(key) + len(data) }
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Push(42, "user", []byte("hi"))
	f := g.Expect(wire.TypePushResult, 42)
	if got, err := wire.ParsePushResult(f.Body); err != nil || got != 6 {
		t.Fatalf("PushResult = %d, %v", got, err)
	}
	r.onPush = func(string, []byte) int { return -5 }
	g.Push(43, "", nil)
	f = g.Expect(wire.TypePushResult, 43)
	if got, _ := wire.ParsePushResult(f.Body); got != 0 {
		t.Fatalf("negative count reported as %d", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pushes) != 2 || r.pushes[0] != "user=hi" || r.pushes[1] != "=" {
		t.Fatalf("pushes %q", r.pushes)
	}
}

func TestCloseFromGateway(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	s := r.session(t, 1)
	g.Close(1, 1001, "client went away")
	c := r.waitCloses(t, 1)
	if c[0] != (closeEvent{1, "u1", 1001, "client went away"}) {
		t.Fatalf("OnClose %+v", c[0])
	}
	// A reason that is not UTF-8 does not fail the link; it is cleaned up.
	g.Open(2, "u2", "/ws/u2")
	g.Write(wire.AppendFrame(nil, wire.TypeClose, 0, 2, []byte{0x03, 0xe8, 'o', 'k', 0xff}))
	if c := r.waitCloses(t, 2); c[1] != (closeEvent{2, "u2", 1000, "ok\uFFFD"}) {
		t.Fatalf("OnClose %+v", c[1])
	}
	eventually(t, sessionCount(n, 0))
	if err := s.Send(false, []byte("late")); !errors.Is(err, backend.ErrSessionClosed) {
		t.Fatalf("Send after close: %v", err)
	}
	if err := s.Close(1000, ""); !errors.Is(err, backend.ErrSessionClosed) {
		t.Fatalf("Close after close: %v", err)
	}
	// Frames for the closed session are ignored; the id can be reused.
	g.Message(1, false, []byte("in flight"), 0)
	g.Close(1, 1000, "")
	g.Open(1, "u9", "/ws/u9")
	g.Message(1, false, []byte("new"), 0)
	if m := g.ReadMessage(1); string(m.Data) != "new" {
		t.Fatalf("echo on reused id: %q", m.Data)
	}
	if s2 := r.session(t, 1); s2 == s {
		t.Fatal("reused id returned the old session")
	}
}

func TestCloseFromBackend(t *testing.T) {
	r := newRecorder(t)
	release := make(chan struct{})
	r.onMessage = func(s *backend.Session, binary bool, data []byte) {
		switch string(data) {
		case "close me":
			if err := s.Close(4000, "closing"); err != nil {
				t.Errorf("Close in handler: %v", err)
			}
			if err := s.Send(false, []byte("after")); !errors.Is(err, backend.ErrSessionClosed) {
				t.Errorf("Send after Close: %v", err)
			}
		case "block":
			<-release
		default:
			_ = s.Send(binary, data)
		}
	}
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	g.Open(2, "u2", "/ws/u2")
	g.Open(3, "u3", "/ws/u3")

	// 1: closed from inside its own handler.
	g.Message(1, false, []byte("close me"), 0)
	if code, reason := g.ExpectClose(1); code != 4000 || reason != "closing" {
		t.Fatalf("Close frame %d %q", code, reason)
	}
	if c := r.waitCloses(t, 1); c[0] != (closeEvent{1, "u1", 4000, "closing"}) {
		t.Fatalf("OnClose %+v", c[0])
	}
	g.Close(1, 4000, "closing") // a gateway acknowledging is harmless

	// 2: closed from another goroutine while idle.
	s2 := r.session(t, 2)
	if err := s2.Close(999, ""); !errors.Is(err, backend.ErrCloseCode) {
		t.Fatalf("code 999: %v", err)
	}
	if err := s2.Close(1006, ""); !errors.Is(err, backend.ErrCloseCode) {
		t.Fatalf("code 1006: %v", err)
	}
	if err := s2.Close(1000, strings.Repeat("r", 124)); !errors.Is(err, backend.ErrCloseReason) {
		t.Fatalf("long reason: %v", err)
	}
	if err := s2.Close(1000, "\xff"); !errors.Is(err, backend.ErrCloseReason) {
		t.Fatalf("bad UTF-8 reason: %v", err)
	}
	if err := s2.Close(1000, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(1000, "bye"); !errors.Is(err, backend.ErrSessionClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if code, reason := g.ExpectClose(2); code != 1000 || reason != "bye" {
		t.Fatalf("Close frame %d %q", code, reason)
	}
	r.waitCloses(t, 2)

	// 3: closed from another goroutine while its OnMessage runs: OnClose
	// must wait for OnMessage to return (the recorder checks overlap).
	s3 := r.session(t, 3)
	g.Message(3, false, []byte("block"), 0)
	eventually(t, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.active[s3] {
			return errors.New("OnMessage not running yet")
		}
		return nil
	})
	if err := s3.Close(1000, "while busy"); err != nil {
		t.Fatal(err)
	}
	g.ExpectClose(3)
	r.mu.Lock()
	if len(r.closes) != 2 {
		t.Errorf("OnClose ran during OnMessage: %+v", r.closes)
	}
	r.mu.Unlock()
	close(release)
	if c := r.waitCloses(t, 3); c[2] != (closeEvent{3, "u3", 1000, "while busy"}) {
		t.Fatalf("OnClose %+v", c[2])
	}
	eventually(t, sessionCount(n, 0))
}

func TestLinkLoss(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	g.Open(1, "u1", "/ws/u1")
	g.Open(2, "u2", "/ws/u2")
	g2.Open(1, "u1", "/ws/u1")
	eventually(t, sessionCount(n, 3))
	_ = g.C.Close()
	closes := r.waitCloses(t, 2)
	for _, c := range closes {
		if c.code != 1006 || c.reason != "link lost" {
			t.Fatalf("OnClose %+v", c)
		}
	}
	eventually(t, sessionCount(n, 1))
	if got := n.SendToKey("u1", false, []byte("x")); got != 1 {
		t.Fatalf("SendToKey after link loss = %d", got)
	}
	g2.Expect(wire.TypeSendKey, 0)
}

func TestOversizedMessage(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) { c.MaxMessage = 1000 })
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	g.Open(2, "u2", "/ws/u2")
	g.Open(3, "u3", "/ws/u3")

	g.Message(3, false, bytes.Repeat([]byte("k"), 1000), 300) // exactly the limit
	if m := g.ReadMessage(3); len(m.Data) != 1000 {
		t.Fatalf("1000-byte message: %d", len(m.Data))
	}
	g.Message(1, false, bytes.Repeat([]byte("x"), 1500), 500) // reassembled too big
	if code, _ := g.ExpectClose(1); code != 1009 {
		t.Fatalf("close code %d", code)
	}
	g.Message(2, true, bytes.Repeat([]byte("y"), 1001), 0) // one frame too big
	if code, _ := g.ExpectClose(2); code != 1009 {
		t.Fatalf("close code %d", code)
	}
	closes := r.waitCloses(t, 2)
	for _, c := range closes {
		if c.code != 1009 {
			t.Fatalf("OnClose %+v", c)
		}
	}
	// The link is fine.
	g.Message(3, false, []byte("still here"), 0)
	if m := g.ReadMessage(3); string(m.Data) != "still here" {
		t.Fatalf("echo %q", m.Data)
	}
}

func TestBadFrames(t *testing.T) {
	open := wire.AppendOpen(nil, 1, false, []byte("u1"), []byte("a"), []byte("/ws"))
	first := wire.AppendFrame(nil, wire.TypeMessage, wire.FlagMore, 1, []byte("a"))
	tests := []struct {
		name   string
		frames []byte
		code   uint16
	}{
		{"unknown type", []byte{0, 0, 0, 6, 0x33, 0, 0, 0, 0, 0}, wire.CodeProtocol},
		{"bad length", []byte{0, 0, 0, 2, 0x03, 0, 0, 0, 0, 0}, wire.CodeProtocol},
		{"too large", wire.AppendHeader(nil, wire.TypeMessage, 0, 1, wire.DefaultMaxBody+1), wire.CodeTooLarge},
		{"Open session 0", wire.AppendOpen(nil, 0, false, nil, nil, nil), wire.CodeProtocol},
		{"Open bad flags", wire.AppendFrame(nil, wire.TypeOpen, 0x80, 1, open[wire.HeaderSize:]), wire.CodeProtocol},
		{"Open bad body", wire.AppendFrame(nil, wire.TypeOpen, 0, 1, []byte{0, 9, 'x'}), wire.CodeProtocol},
		{"duplicate Open", append(bytes.Clone(open), open...), wire.CodeProtocol},
		{"Message session 0", wire.AppendFrame(nil, wire.TypeMessage, 0, 0, nil), wire.CodeProtocol},
		{"Message bad flags", append(bytes.Clone(open), wire.AppendFrame(nil, wire.TypeMessage, 0x10, 1, nil)...), wire.CodeProtocol},
		{"continuation first", append(bytes.Clone(open), wire.AppendFrame(nil, wire.TypeMessage, wire.FlagContinuation, 1, nil)...), wire.CodeProtocol},
		{"two firsts", append(append(bytes.Clone(open), first...), first...), wire.CodeProtocol},
		{"binary flips", append(append(bytes.Clone(open), first...), wire.AppendFrame(nil, wire.TypeMessage, wire.FlagContinuation|wire.FlagBinary, 1, nil)...), wire.CodeProtocol},
		{"Close bad body", append(bytes.Clone(open), wire.AppendFrame(nil, wire.TypeClose, 0, 1, []byte{3})...), wire.CodeProtocol},
		{"Close reason too long", append(bytes.Clone(open), wire.AppendFrame(nil, wire.TypeClose, 0, 1, make([]byte, 126))...), wire.CodeProtocol},
		{"Close session 0", wire.AppendClose(nil, 0, 1000, nil), wire.CodeProtocol},
		{"Ping short", wire.AppendFrame(nil, wire.TypePing, 0, 0, []byte{1}), wire.CodeProtocol},
		{"Ping with session", wire.AppendFrame(nil, wire.TypePing, 0, 5, make([]byte, 8)), wire.CodeProtocol},
		{"Push bad body", wire.AppendFrame(nil, wire.TypePush, 0, 1, []byte{0}), wire.CodeProtocol},
		{"Hello again", wire.AppendHello(nil, wire.Hello{Version: 1, Role: wire.RoleGateway, MaxBody: 4096}), wire.CodeProtocol},
		{"SendKey from gateway", wire.AppendSendKey(nil, 0, []byte("k"), nil), wire.CodeProtocol},
		{"Broadcast from gateway", wire.AppendFrame(nil, wire.TypeBroadcast, 0, 0, nil), wire.CodeProtocol},
		{"PushResult from gateway", wire.AppendPushResult(nil, 1, 1), wire.CodeProtocol},
	}
	r := newRecorder(t)
	n := startNode(t, r, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gwtest.Dial(t, n.Addr(), "gw-bad")
			g.Open(100, "victim", "/ws/victim")
			s := r.session(t, 100)
			g.Write(tt.frames)
			frames := g.ExpectEOF()
			var errFrame *gwtest.Frame
			for i := range frames {
				if frames[i].Type == wire.TypeError {
					errFrame = &frames[i]
				}
			}
			if errFrame == nil {
				t.Fatalf("no Error frame before EOF: %v", frames)
			}
			if code, text := gwtest.ParseError(t, *errFrame); code != tt.code || text == "" {
				t.Fatalf("Error %d %q, want code %d", code, text, tt.code)
			}
			// Sessions of the link are gone with it.
			eventually(t, func() error {
				if err := s.Send(false, nil); !errors.Is(err, backend.ErrSessionClosed) {
					return fmt.Errorf("Send on a dead link: %v", err)
				}
				return nil
			})
		})
	}
	eventually(t, sessionCount(n, 0))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.closes {
		if c.key == "victim" && (c.code != 1006 || c.reason != "link lost") {
			t.Fatalf("OnClose %+v", c)
		}
	}
}

func TestHandshakeErrors(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) { c.HelloTimeout = 200 * time.Millisecond })
	hello := func(h wire.Hello) []byte { return wire.AppendHello(nil, h) }
	tests := []struct {
		name string
		in   []byte
		code uint16
		text string
	}{
		{"version 2", hello(wire.Hello{Version: 2, Role: wire.RoleGateway, MaxBody: 1 << 20, NodeID: "g"}), wire.CodeUnsupportedVersion, "unsupported version"},
		{"version 2, other layout", wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte{0, 2, 9}), wire.CodeUnsupportedVersion, "unsupported version"},
		{"role backend", hello(wire.Hello{Version: 1, Role: wire.RoleBackend, MaxBody: 1 << 20}), wire.CodeProtocol, ""},
		{"tiny MaxBody", hello(wire.Hello{Version: 1, Role: wire.RoleGateway, MaxBody: 100}), wire.CodeProtocol, ""},
		{"Open first", wire.AppendOpen(nil, 1, false, nil, nil, nil), wire.CodeProtocol, "expected Hello"},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wire.CodeProtocol, ""},
		{"huge Hello", wire.AppendHeader(nil, wire.TypeHello, 0, 0, 1<<30), wire.CodeTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gwtest.DialRaw(t, n.Addr())
			g.Write(tt.in)
			frames := g.ExpectEOF()
			if len(frames) != 1 {
				t.Fatalf("frames %v", frames)
			}
			code, text := gwtest.ParseError(t, frames[0])
			if code != tt.code || (tt.text != "" && text != tt.text) {
				t.Fatalf("Error %d %q, want %d %q", code, text, tt.code, tt.text)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		g := gwtest.DialRaw(t, n.Addr())
		if frames := g.ExpectEOF(); len(frames) != 0 {
			t.Fatalf("frames %v", frames)
		}
	})
}

func TestKeepalive(t *testing.T) {
	const linkTimeout = 500 * time.Millisecond
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) {
		c.PingInterval = 20 * time.Millisecond
		c.LinkTimeout = linkTimeout
	})
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.AutoPong = false
	// The node pings when idle; Pings carry 8 bytes.
	for range 3 {
		f := g.Expect(wire.TypePing, 0)
		if len(f.Body) != 8 {
			t.Fatalf("Ping body %x", f.Body)
		}
		g.Write(wire.AppendFrame(nil, wire.TypePong, 0, 0, f.Body))
	}
	// The node answers our Ping with the same bytes.
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	g.Write(wire.AppendPing(nil, data))
	for {
		f := g.Next()
		if f.Type == wire.TypePing {
			continue
		}
		if f.Type != wire.TypePong || !bytes.Equal(f.Body, data[:]) {
			t.Fatalf("got %v %x, want Pong %x", f.Type, f.Body, data)
		}
		break
	}

	// A link that sends nothing is dropped after LinkTimeout even though
	// the node keeps pinging it.
	g.Open(1, "u1", "/ws/u1")
	if c := r.waitCloses(t, 1); c[0].code != 1006 || c[0].reason != "link lost" {
		t.Fatalf("OnClose %+v", c[0])
	}
	g.ExpectEOF()

	// A link that keeps talking (Ping round trips, answering the node's
	// Pings too) stays up well past LinkTimeout.
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	g2.Open(1, "u1", "/ws/u1")
	g2.AutoPong = false
	for start := time.Now(); time.Since(start) < 3*linkTimeout; {
		g2.Write(wire.AppendPing(nil, data))
		for f := g2.Next(); f.Type != wire.TypePong; f = g2.Next() {
			if f.Type != wire.TypePing {
				t.Fatalf("got %v", f.Type)
			}
			g2.Write(wire.AppendFrame(nil, wire.TypePong, 0, 0, f.Body))
		}
	}
	g2.AutoPong = true
	g2.Message(1, false, []byte("alive"), 0)
	if m := g2.ReadMessage(1); string(m.Data) != "alive" {
		t.Fatalf("echo %q", m.Data)
	}
	if len(r.waitCloses(t, 1)) != 1 {
		t.Fatal("unexpected OnClose")
	}
}

func TestShutdownWaitsForSessions(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	g.Open(2, "u2", "/ws/u2")
	eventually(t, sessionCount(n, 2))

	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()

	// New links are refused once the listener is closed.
	eventually(t, func() error {
		c, err := net.DialTimeout("tcp", n.Addr(), time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("listener still accepting")
	})
	// New sessions on existing links are turned away.
	g.Open(3, "u3", "/ws/u3")
	if code, _ := g.ExpectClose(3); code != 1001 {
		t.Fatalf("Open during drain: close %d", code)
	}
	// Existing sessions keep working while the gateway moves them.
	g.Message(1, false, []byte("still served"), 0)
	if m := g.ReadMessage(1); string(m.Data) != "still served" {
		t.Fatalf("echo %q", m.Data)
	}
	g.Close(1, 1012, "moved")
	eventually(t, sessionCount(n, 1))
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned with a session open: %v", err)
	default:
	}
	g.Close(2, 1012, "moved")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last session left")
	}
	// The gateway's Closes are acknowledged (FlagCloseAck), then the link
	// closes with Error CodeGoingAway.
	frames := g.ExpectEOF()
	if len(frames) != 3 || frames[0].Type != wire.TypeClose || frames[0].Session != 1 ||
		frames[1].Type != wire.TypeClose || frames[1].Session != 2 {
		t.Fatalf("frames before EOF: %v", frames)
	}
	if code, _ := gwtest.ParseError(t, frames[2]); code != wire.CodeGoingAway {
		t.Fatalf("Error code %d", code)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if c := r.waitCloses(t, 2); c[0].code != 1012 || c[1].code != 1012 {
		t.Fatalf("OnClose %+v", c)
	}
}

func TestShutdownHonoursContext(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	eventually(t, sessionCount(n, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := n.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if c := r.waitCloses(t, 1); c[0].code != 1001 || c[0].reason != "node shutting down" {
		t.Fatalf("OnClose %+v", c[0])
	}
	g.ExpectEOF()
	if n.SessionCount() != 0 {
		t.Fatalf("SessionCount %d", n.SessionCount())
	}
}

func TestCloseNode(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, nil)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	s := r.session(t, 1)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the link's goroutines: OnClose has already run.
	r.mu.Lock()
	if len(r.closes) != 1 || r.closes[0].code != 1001 {
		t.Errorf("OnClose after Close: %+v", r.closes)
	}
	r.mu.Unlock()
	if err := s.Send(false, []byte("x")); !errors.Is(err, backend.ErrSessionClosed) {
		t.Fatalf("Send after node Close: %v", err)
	}
	g.ExpectEOF()
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
}

// TestConcurrentSend sends from many goroutines at once: every message
// arrives whole, and each goroutine's messages arrive in order.
func TestConcurrentSend(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) { c.FragmentSize = 1024 })
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	s := r.session(t, 1)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Some messages span several fragments.
				msg := fmt.Sprintf("%d:%d:%s", w, i, strings.Repeat("p", (i%3)*1000))
				if err := s.Send(false, []byte(msg)); err != nil {
					t.Errorf("Send: %v", err)
					return
				}
			}
		}()
	}
	next := make([]int, workers)
	for range workers * each {
		m := g.ReadMessage(1)
		var w, i int
		if _, err := fmt.Sscanf(string(m.Data), "%d:%d:", &w, &i); err != nil {
			t.Fatalf("message %.40q: %v", m.Data, err)
		}
		if i != next[w] {
			t.Fatalf("worker %d: message %d arrived, want %d", w, i, next[w])
		}
		if want := len(fmt.Sprintf("%d:%d:", w, i)) + (i%3)*1000; len(m.Data) != want {
			t.Fatalf("message %d:%d has %d bytes, want %d", w, i, len(m.Data), want)
		}
		next[w]++
	}
	wg.Wait()
}

func TestSendBufferFull(t *testing.T) {
	r := newRecorder(t)
	n := startNode(t, r, func(c *backend.Config) { c.MaxLinkBuffer = 64 << 10 })
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	s := r.session(t, 1)
	// The gateway stops reading: the kernel buffers fill, then ours.
	msg := make([]byte, 16<<10)
	full := false
	for i := 0; i < 100_000 && !full; i++ {
		switch err := s.Send(true, msg); {
		case errors.Is(err, backend.ErrBufferFull):
			full = true
		case err != nil:
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("Send never reported ErrBufferFull")
	}
	// Reading again drains it; the session still works.
	eventually(t, func() error {
		_ = g.ReadMessage(1)
		if err := s.Send(false, []byte("ok")); err != nil {
			return err
		}
		return nil
	})
}
