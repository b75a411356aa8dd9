package gateway_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Regression tests for inputs that once broke the gateway's bookkeeping
// or its limits.

// TestRefusedHandshakesAreNotCounted: refused upgrades (405) and one that
// times out never count as clients, so the counter (which Shutdown's drain
// and /count rely on) stays exact.
func TestRefusedHandshakesAreNotCounted(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.HandshakeTimeout = 300 * time.Millisecond })
	g := c.Gateway()
	for range 3 {
		r := rawDial(t, g.Addr())
		fmt.Fprintf(r, "POST /ws/u1 HTTP/1.1\r\nHost: x\r\n\r\n")
		_, _ = io.Copy(io.Discard, r.br) // until the gateway closes
	}
	r := rawDial(t, g.Addr())
	fmt.Fprintf(r, "GET /ws/u1 HTTP/1.1\r\n") // never finished
	_, _ = io.Copy(io.Discard, r.br)
	dial(t, c, "/ws/u2")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := g.Clients(); n != 1 {
			return fmt.Errorf("Clients() = %d, want 1", n)
		}
		return nil
	})
}

// TestResetDuringHandshake: clients that send an upgrade request and reset
// the connection at once make the 101's write fail inside gnet (which
// closes the conn there and then). The gateway must neither crash nor keep
// such a session.
func TestResetDuringHandshake(t *testing.T) {
	c := startCluster(t, 1, nil)
	g := c.Gateway()
	for i := range 300 {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "GET /ws/u%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i)
		_ = nc.(*net.TCPConn).SetLinger(0) // close sends RST
		nc.Close()
	}
	ws, _ := dial(t, c, "/ws/after") // served after the resets
	ws.Close()
	node := g.Ring().MemberAt(0).ID
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, k := g.Clients(), g.NodeClients(node); n != 0 || k != 0 {
			return fmt.Errorf("%d clients, %d on %s: sessions leaked", n, k, node)
		}
		return nil
	})
}

// TestMessageLengthOverflow: a continuation frame with a 63-bit length
// must not wrap the message size past MaxMessage (1009, not a relay of an
// unbounded stream).
func TestMessageLengthOverflow(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxMessage = 1024 })
	r := rawDial(t, c.Gateway().Addr())
	r.upgrade(t, "/ws/u1")
	m := []byte{1, 2, 3, 4}
	_, _ = r.Write(frame(0x01, []byte("0123456789"), m)) // text, FIN clear
	hdr := []byte{0x00, 0x80 | 127}                      // continuation, 64-bit length
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<63-1)
	_, _ = r.Write(append(hdr, m...))
	payload := []byte(strings.Repeat("a", 4096))
	wsframe.MaskBytes(payload, [4]byte(m), 0)
	_, _ = r.Write(payload)
	if code := r.expectClose(t); code != 1009 {
		t.Fatalf("close %d, want 1009", code)
	}
}
