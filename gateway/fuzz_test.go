package gateway

import (
	"bytes"
	"testing"

	"github.com/wsgate/wsgate/internal/wsframe"
)

const fuzzRequest = "GET /ws/alice?x=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// FuzzHandshake feeds arbitrary bytes to a connection in the handshake
// state. It must never panic; whatever it answers must be an HTTP response,
// and a 101 must leave an open session routed to a node.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte(fuzzRequest))
	f.Add([]byte("GET /websocket/connect/b%20c HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	f.Add([]byte("GET /?userId=%zz HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 8\r\n\r\n"))
	f.Add(append([]byte(fuzzRequest), 0x81, 0x80, 1, 2, 3, 4))
	l := testLoop(f, func(c *Config) { c.MaxHandshake = 1024 })
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &fakeConn{in: bytes.Clone(data), keep: true}
		s := &session{conn: c, loop: l, state: stHandshake}
		l.timed[s] = struct{}{}
		act, done := l.handshakeTraffic(s, c)
		_ = act
		if len(c.out) > 0 && !bytes.HasPrefix(c.out, []byte("HTTP/1.1 ")) {
			t.Fatalf("answer is not HTTP: %q", c.out)
		}
		if done {
			if s.state != stOpen || s.link == nil || !bytes.HasPrefix(c.out, []byte("HTTP/1.1 101 ")) {
				t.Fatalf("upgraded but state %d link %v answer %q", s.state, s.link, c.out)
			}
			// Frames after the request are left for the frame reader.
			l.onTraffic(s, c)
			l.onClose(s)
		} else {
			delete(l.timed, s)
		}
	})
}

// FuzzClientFrames feeds arbitrary bytes to an open session. It must never
// panic, and it must either keep the session open or close it with a close
// frame carrying a valid code.
func FuzzClientFrames(f *testing.F) {
	m := [4]byte{9, 8, 7, 6}
	text := wsframe.AppendMaskedHeader(nil, true, wsframe.OpText, 5, m)
	text = append(text, "hello"...)
	wsframe.MaskBytes(text[len(text)-5:], m, 0)
	f.Add(text)
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x01, 0x81, 0, 0, 0, 0, 0xe2, 0x80, 0x81, 0, 0, 0, 0, 0x82})
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4, 0x88, 0x82, 0, 0, 0, 0, 3, 232})
	l := testLoop(f, func(c *Config) { c.MaxMessage = 4096 })
	f.Fuzz(func(t *testing.T, data []byte) {
		s, c := openSession(l, "fuzz")
		c.in = bytes.Clone(data)
		l.onTraffic(s, c)
		// Everything written to the client must be well-formed server frames;
		// a closed session's last frame is a close with a valid code.
		var last wsframe.Header
		var lastPayload []byte
		for out := c.out; len(out) > 0; {
			h, n, err := wsframe.ParseHeader(out)
			if err != nil || n == 0 || h.Masked || int64(len(out)-n) < h.Length {
				t.Fatalf("gateway wrote a bad frame: %v %d %+v in %x", err, n, h, c.out)
			}
			last, lastPayload = h, out[n:n+int(h.Length)]
			out = out[n+int(h.Length):]
		}
		if s.state == stClosed && len(c.out) > 0 {
			if last.Op != wsframe.OpClose {
				t.Fatalf("closed without a close frame: %x", c.out)
			}
			if code, _, err := wsframe.ParseClosePayload(lastPayload); err != nil || code != wsframe.CloseNoStatus && !wsframe.ValidCloseCode(code) {
				t.Fatalf("close frame with code %d (%v)", code, err)
			}
		}
		if s.state == stOpen && s.link == nil {
			t.Fatal("open session lost its link")
		}
		l.onClose(s)
	})
}
