package backend_test

import (
	"bytes"
	"net"
	"testing"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/wire"
)

// echoHandler echoes every message.
type echoHandler struct{}

func (echoHandler) OnOpen(*backend.Session)                             {}
func (echoHandler) OnMessage(s *backend.Session, binary bool, d []byte) { _ = s.Send(binary, d) }
func (echoHandler) OnClose(*backend.Session, uint16, string)            {}
func (echoHandler) OnPush(string, []byte) int                           { return 0 }

// countingConn counts the reads that returned data.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads++
	}
	return n, err
}

// BenchmarkEcho pipelines batches of 64 small messages over 16 sessions and
// reads the echoes back. frames/read shows the node's write coalescing: the
// echoes of a batch arrive in a few TCP reads, not one per message.
func BenchmarkEcho(b *testing.B) {
	n := startNode(b, echoHandler{}, nil)
	g := gwtest.Dial(b, n.Addr(), "gw-bench")
	const sessions, batch = 16, 64
	for id := uint32(1); id <= sessions; id++ {
		g.Open(id, "k", "/ws")
	}
	payload := bytes.Repeat([]byte("x"), 64)
	var out []byte
	for i := range batch {
		out = wire.AppendFrame(out, wire.TypeMessage, 0, uint32(i%sessions)+1, payload)
	}
	cc := &countingConn{Conn: g.C}
	r := wire.NewReader(cc, 0)
	b.ReportAllocs()
	b.SetBytes(int64(batch * len(payload)))
	frames := 0
	for b.Loop() {
		g.Write(out)
		for range batch {
			h, _, err := r.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			if h.Type != wire.TypeMessage {
				b.Fatalf("got %v", h.Type)
			}
			frames++
		}
	}
	b.ReportMetric(float64(frames)/float64(max(cc.reads, 1)), "frames/read")
}
