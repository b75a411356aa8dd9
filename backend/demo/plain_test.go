package demo

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
)

// startPlain serves a node's demo app (node not started: no gateway
// links needed) as plain WebSocket until the test ends.
func startPlain(tb testing.TB) *PlainServer {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := NewNode(backend.Config{ID: "n1", Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := ServePlain(ln, node, log)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestServePlain(t *testing.T) {
	s := startPlain(t)
	url := "ws://" + s.Addr().String() + "/ws/alice?userId=alice"
	for i := 1; i <= 2; i++ {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var w struct {
			Type            int    `json:"type"`
			Content         string `json:"content"`
			ServerUserCount int    `json:"serverUserCount"`
			ServerIP        string `json:"serverIp"`
			Timestamp       int64  `json:"timestamp"`
		}
		if err := ws.ReadJSON(&w); err != nil {
			t.Fatal(err)
		}
		if w.Type != TypeConnected || w.Content != "connected" || w.ServerUserCount != i || w.ServerIP != "n1" || w.Timestamp == 0 {
			t.Fatalf("welcome %+v", w)
		}
		for _, m := range []struct {
			typ  int
			data string
		}{{websocket.TextMessage, "hello"}, {websocket.BinaryMessage, "\x00\xff"}, {websocket.TextMessage, string(make([]byte, 70000))}} {
			if err := ws.WriteMessage(m.typ, []byte(m.data)); err != nil {
				t.Fatal(err)
			}
			typ, got, err := ws.ReadMessage()
			if err != nil || typ != m.typ || string(got) != m.data {
				t.Fatalf("echo: type %d (%d bytes), %v; want type %d (%d bytes)", typ, len(got), err, m.typ, len(m.data))
			}
		}
	}
	// Close answers the close handshake.
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, _, _ = ws.ReadMessage()
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, 1000) {
		t.Fatalf("after close: %v", err)
	}
}

// BenchmarkPlainEcho is one 64-byte round trip through the plain listener
// (the backend nginx and HAProxy front in comparisons), loopback TCP and
// a gorilla client included.
func BenchmarkPlainEcho(b *testing.B) {
	s := startPlain(b)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr().String()+"/", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 64)
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}
