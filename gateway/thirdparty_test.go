package gateway_test

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wire"
)

// smallBackend is a backend written against docs/protocol.md alone, as one
// in another language would be, that announces the smallest MaxBody the
// protocol allows. It records the largest frame body it was sent and
// echoes each reassembled message.
type smallBackend struct {
	ln      net.Listener
	mu      sync.Mutex
	largest int
	errs    []error
}

func startSmallBackend(t *testing.T, id string) *smallBackend {
	b := &smallBackend{}
	b.ln = serveTCP(t, func(c net.Conn) { b.serve(c, id) })
	return b
}

func (b *smallBackend) fail(err error) {
	b.mu.Lock()
	b.errs = append(b.errs, err)
	b.mu.Unlock()
}

func (b *smallBackend) serve(c net.Conn, id string) {
	defer c.Close()
	// The backend reads with the limit it announces: a larger frame is
	// a protocol error (it would answer Error 3 and close the link).
	r := wire.NewReader(c, wire.MinMaxBody)
	h, body, err := r.ReadFrame()
	if err != nil || h.Type != wire.TypeHello {
		return
	}
	if _, err := wire.ParseHello(body); err != nil {
		b.fail(err)
		return
	}
	_, _ = c.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleBackend, MaxBody: wire.MinMaxBody, NodeID: id}))
	msgs := map[uint32][]byte{}
	for {
		h, body, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrUnknownType) {
				b.fail(err) // the gateway broke the protocol; anything else is the link closing
			}
			return
		}
		b.mu.Lock()
		b.largest = max(b.largest, len(body))
		b.mu.Unlock()
		switch h.Type {
		case wire.TypePing:
			_, _ = c.Write(wire.AppendFrame(nil, wire.TypePong, 0, 0, body))
		case wire.TypeMessage:
			msgs[h.Session] = append(msgs[h.Session], body...)
			if h.Flags&wire.FlagMore == 0 { // echo the whole message back in small frames
				m := msgs[h.Session]
				delete(msgs, h.Session)
				var out []byte
				for first := true; first || len(m) > 0; first = false {
					n := min(len(m), wire.MinMaxBody)
					flags := h.Flags &^ (wire.FlagContinuation | wire.FlagMore)
					if !first {
						flags |= wire.FlagContinuation
					}
					if n < len(m) {
						flags |= wire.FlagMore
					}
					out = wire.AppendFrame(out, wire.TypeMessage, flags, h.Session, m[:n])
					m = m[n:]
				}
				_, _ = c.Write(out)
			}
		}
	}
}

// TestBackendSmallMaxBody: the gateway never sends a backend a frame body
// larger than the MaxBody of its Hello, so a large client message reaches
// a backend that accepts only 1 KiB frames, in pieces, and comes back whole.
func TestBackendSmallMaxBody(t *testing.T) {
	b := startSmallBackend(t, "small")
	src, err := membership.NewStatic([]membership.Node{{ID: "small", Addr: b.ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	g := runGateway(t, gateway.Config{Listen: "127.0.0.1:0", Admin: "-", Members: src, Logger: testLogger()})
	ws, err := dialErr(g.Addr(), "/ws/k", websocket.DefaultDialer)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// The first message may go out before the backend's Hello arrives, the
	// second after it: both must respect the limit.
	for i, size := range []int{10_000, 100_000} {
		msg := bytes.Repeat([]byte{'a' + byte(i)}, size)
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		op, got, err := ws.ReadMessage()
		if err != nil || op != websocket.BinaryMessage || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: op %d, %d bytes, %v", size, op, len(got), err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 || b.largest > wire.MinMaxBody {
		t.Fatalf("backend saw a %d-byte frame body (limit %d); errors %v", b.largest, wire.MinMaxBody, b.errs)
	}
}
