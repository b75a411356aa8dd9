package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wire"
)

const fixedMillis = 1700000000123

// startDemo starts a demo node whose clock is fixed at fixedMillis.
func startDemo(t *testing.T) *backend.Node {
	t.Helper()
	a := &app{now: func() time.Time { return time.UnixMilli(fixedMillis) }}
	n, err := backend.NewNode(backend.Config{
		ID:     "node-a",
		Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, a)
	if err != nil {
		t.Fatal(err)
	}
	a.node = n
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func TestNewNode(t *testing.T) {
	if _, err := NewNode(backend.Config{}); err == nil || !strings.Contains(err.Error(), "Config.ID") {
		t.Fatalf("NewNode with an empty config: %v", err)
	}
	n, err := NewNode(backend.Config{ID: "demo-1", Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The real clock: the timestamp is now, in milliseconds.
	before := time.Now().UnixMilli()
	g := gwtest.Dial(t, n.Addr(), "gw")
	g.Open(1, "u1", "/ws/u1")
	m := g.ReadMessage(1)
	var ev struct {
		Type      int    `json:"type"`
		Content   string `json:"content"`
		Users     int    `json:"serverUserCount"`
		ServerIP  string `json:"serverIp"`
		Timestamp int64  `json:"timestamp"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatalf("welcome %q: %v", m.Data, err)
	}
	if ev.Type != 2 || ev.Content != "connected" || ev.Users != 1 || ev.ServerIP != "demo-1" ||
		ev.Timestamp < before || ev.Timestamp > time.Now().UnixMilli() {
		t.Fatalf("welcome %+v", ev)
	}
}

func TestWelcomeAndEcho(t *testing.T) {
	n := startDemo(t)
	g := gwtest.Dial(t, n.Addr(), "gw-1")
	g.Open(1, "u1", "/ws/u1")
	m := g.ReadMessage(1)
	want := `{"type":2,"content":"connected","serverUserCount":1,"serverIp":"node-a","timestamp":1700000000123}`
	if m.Binary || string(m.Data) != want {
		t.Fatalf("welcome = %s (binary %v)\nwant      %s", m.Data, m.Binary, want)
	}
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	g2.Open(1, "", "/ws") // keyless sessions are counted too
	want2 := strings.Replace(want, `"serverUserCount":1`, `"serverUserCount":2`, 1)
	if m := g2.ReadMessage(1); string(m.Data) != want2 {
		t.Fatalf("second welcome = %s", m.Data)
	}

	for _, tc := range []struct {
		binary bool
		data   string
	}{{false, "hello"}, {true, "\x00\xff\x10"}, {false, ""}, {false, strings.Repeat("long ", 50000)}} {
		g.Message(1, tc.binary, []byte(tc.data), 30000)
		if m := g.ReadMessage(1); m.Binary != tc.binary || string(m.Data) != tc.data {
			t.Fatalf("echo of %.20q: binary %v, %d bytes", tc.data, m.Binary, len(m.Data))
		}
	}
}

func TestPush(t *testing.T) {
	n := startDemo(t)
	g1 := gwtest.Dial(t, n.Addr(), "gw-1")
	g2 := gwtest.Dial(t, n.Addr(), "gw-2")
	g1.Open(1, "u1", "/ws/u1")
	g1.Open(2, "u2", "/ws/u2")
	g2.Open(5, "u1", "/ws/u1")
	for _, w := range []struct {
		g  *gwtest.Conn
		id uint32
	}{{g1, 1}, {g1, 2}, {g2, 5}} {
		w.g.ReadMessage(w.id) // welcome
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if c := n.SessionCount(); c != 3 {
			return fmt.Errorf("SessionCount %d", c)
		}
		return nil
	})

	data := "he said \"hi\"\n\t<b>&</b> \\ é \x01 \u2028 end"
	g1.Push(77, "u1", []byte(data))
	want := `{"type":1,"content":"he said \"hi\"\n\t<b>&</b> \\ é \u0001 \u2028 end","serverUserCount":3,"serverIp":"node-a","timestamp":1700000000123}`
	for _, g := range []*gwtest.Conn{g1, g2} {
		f := g.Expect(wire.TypeSendKey, 0)
		key, payload, err := wire.ParseSendKey(f.Body)
		if err != nil || string(key) != "u1" || f.Flags != 0 {
			t.Fatalf("SendKey %q flags %#x: %v", key, f.Flags, err)
		}
		if string(payload) != want {
			t.Fatalf("push message\n got %s\nwant %s", payload, want)
		}
		var ev struct{ Content string }
		if err := json.Unmarshal(payload, &ev); err != nil || ev.Content != data {
			t.Fatalf("content %q: %v", ev.Content, err)
		}
	}

	// The deliveries were queued before the result.
	f := g1.Expect(wire.TypePushResult, 77)
	if got, err := wire.ParsePushResult(f.Body); err != nil || got != 2 {
		t.Fatalf("PushResult = %d, %v", got, err)
	}

	g1.Push(78, "nobody", []byte("x"))
	f = g1.Expect(wire.TypePushResult, 78)
	if got, _ := wire.ParsePushResult(f.Body); got != 0 {
		t.Fatalf("push to nobody reached %d", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`"\`, `"\"\\"`},
		{"\n\r\t\b\f", `"\n\r\t\b\f"`},
		{"\x00\x1f\x7f", `"\u0000\u001f` + "\x7f" + `"`},
		{"<>&'/", `"<>&'/"`},
		{"é中😀", `"é中😀"`},
		{"a\xffb", `"a\ufffdb"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
	}
	for _, tt := range tests {
		if got := string(appendJSONString(nil, tt.in)); got != tt.want {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzAppendJSONString checks the hand-written encoder against encoding/json:
// the output is valid JSON that decodes to the same string encoding/json
// would produce (invalid UTF-8 becomes U+FFFD in both).
func FuzzAppendJSONString(f *testing.F) {
	f.Add("hello \"world\"\n")
	f.Add("\xff\xfe\u2028\x00")
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q", out)
		}
		var got, want string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		ref, _ := json.Marshal(s)
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("decodes to %q, encoding/json gives %q", got, want)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid UTF-8 %q changed to %q", s, got)
		}
	})
}

// TestCounterMigrates: a counter session (counter=1) counts its messages,
// and the count moves with the session from one demo node to another (the
// migration frames of docs/protocol.md 4.10, as a gateway sends them).
func TestCounterMigrates(t *testing.T) {
	a, b := startDemo(t), startDemo(t)
	ga := gwtest.DialFlags(t, a.Addr(), "gw-1", wire.FlagMigrate)
	gb := gwtest.DialFlags(t, b.Addr(), "gw-1", wire.FlagMigrate)
	ga.Open(1, "u1", "/ws/u1?x=2&counter=1")
	ga.ReadMessage(1) // welcome
	answer := func(g *gwtest.Conn, id uint32, msg string) string {
		t.Helper()
		g.Message(id, false, []byte(msg), 0)
		var ev struct {
			Type    int
			Content string
		}
		if err := json.Unmarshal(g.ReadMessage(id).Data, &ev); err != nil || ev.Type != TypeCount {
			t.Fatalf("answer to %q: %+v %v", msg, ev, err)
		}
		return ev.Content
	}
	for i := 1; i <= 2; i++ {
		if got, want := answer(ga, 1, "hi"), fmt.Sprintf("%d:hi", i); got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	}
	open := wire.AppendOpen(nil, 5, false, []byte("u1"), []byte("192.0.2.1:4242"), []byte("/ws/u1?x=2&counter=1"))
	open[5] |= wire.FlagResume
	gb.Write(open)
	gb.Expect(wire.TypeReady, 5)
	ga.Write(wire.AppendFrame(nil, wire.TypeHandover, 0, 1, nil))
	st := ga.Expect(wire.TypeState, 1)
	if string(st.Body) != "2" {
		t.Fatalf("exported state %q, want the count 2", st.Body)
	}
	gb.Write(wire.AppendFrame(nil, wire.TypeState, 0, 5, st.Body))
	if got := answer(gb, 5, "again"); got != "3:again" {
		t.Fatalf("first answer on the new node %q, want 3:again (no welcome: the client never left)", got)
	}

	// Without state (the old node crashed), the count starts again.
	open[9] = 6
	gb.Write(open)
	gb.Expect(wire.TypeReady, 6)
	gb.Write(wire.AppendFrame(nil, wire.TypeState, wire.FlagLost, 6, nil))
	if got := answer(gb, 6, "x"); got != "1:x" {
		t.Fatalf("answer after a lost state %q, want 1:x", got)
	}

	// A plain echo session keeps echoing.
	ga.Open(2, "u2", "/ws/u2")
	ga.ReadMessage(2)
	ga.Message(2, false, []byte("echo"), 0)
	if got := string(ga.ReadMessage(2).Data); got != "echo" {
		t.Fatalf("echo %q", got)
	}
}
