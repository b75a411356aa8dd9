// Package gwtest is a tiny gateway for tests of the backend SDK: it dials a
// node over TCP, does the Hello handshake and speaks the link protocol
// frame by frame with internal/wire.
package gwtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/wire"
)

// Timeout bounds every read a Conn makes.
const Timeout = 10 * time.Second

// Frame is a received frame; Body is a copy.
type Frame struct {
	wire.Header
	Body []byte
}

// Msg is a reassembled message for a session (from Message fragments).
type Msg struct {
	Session uint32
	Binary  bool
	Data    []byte
	Frags   int // number of Message frames it came in
	MaxFrag int // largest fragment body
}

// Conn is one fake gateway link. Reads happen on the test goroutine only;
// writes are safe from any goroutine.
type Conn struct {
	t     testing.TB
	C     net.Conn
	R     *wire.Reader
	Hello wire.Hello // the node's Hello (after Dial), Flags from its header

	wmu     sync.Mutex
	pending []Frame // read but not yet consumed (another session's frames)
	partial map[uint32]*Msg
	// AutoPong answers Pings inside Next (default true); Pings are then
	// skipped, and Pongs too.
	AutoPong bool
	Pings    int // Pings answered by Next
}

// DialRaw connects without a handshake.
func DialRaw(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		t.Fatalf("gwtest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Conn{t: t, C: c, R: wire.NewReader(c, wire.DefaultMaxBody), partial: map[uint32]*Msg{}, AutoPong: true}
}

// Dial connects and does the handshake as gateway id.
func Dial(t testing.TB, addr, id string) *Conn {
	t.Helper()
	return DialFlags(t, addr, id, 0)
}

// DialFlags is Dial with Hello flags (wire.FlagMigrate, ...).
func DialFlags(t testing.TB, addr, id string, flags uint8) *Conn {
	t.Helper()
	c := DialRaw(t, addr)
	c.Write(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: id, Flags: flags}))
	f := c.NextRaw()
	if f.Type != wire.TypeHello {
		t.Fatalf("gwtest: expected Hello, got %v %q", f.Type, f.Body)
	}
	h, err := wire.ParseHello(f.Body)
	if err != nil {
		t.Fatalf("gwtest: bad Hello: %v", err)
	}
	if err := h.Check(wire.RoleBackend); err != nil {
		t.Fatalf("gwtest: Hello %+v: %v", h, err)
	}
	h.Flags = f.Flags
	c.Hello = h
	return c
}

// Write writes raw bytes (whole frames, or garbage).
func (c *Conn) Write(b ...[]byte) {
	c.t.Helper()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.C.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := c.C.Write(bytes.Join(b, nil)); err != nil {
		c.t.Fatalf("gwtest: write: %v", err)
	}
}

// Open opens session id for key (keyless when key is "") with target.
func (c *Conn) Open(id uint32, key, target string) {
	c.t.Helper()
	c.Write(wire.AppendOpen(nil, id, key == "", []byte(key), []byte("192.0.2.1:4242"), []byte(target)))
}

// Message sends data to session id in fragments of at most frag bytes
// (frag <= 0: one frame).
func (c *Conn) Message(id uint32, binary bool, data []byte, frag int) {
	c.t.Helper()
	c.Write(AppendMessage(nil, id, binary, data, frag))
}

// AppendMessage appends data as Message fragments of at most frag bytes.
func AppendMessage(dst []byte, id uint32, binary bool, data []byte, frag int) []byte {
	var base uint8
	if binary {
		base = wire.FlagBinary
	}
	if frag <= 0 {
		frag = max(len(data), 1)
	}
	flags := base
	for {
		n := min(frag, len(data))
		f := flags
		if n < len(data) {
			f |= wire.FlagMore
		}
		dst = wire.AppendFrame(dst, wire.TypeMessage, f, id, data[:n])
		data = data[n:]
		if len(data) == 0 {
			return dst
		}
		flags = base | wire.FlagContinuation
	}
}

// Close tells the node that session id closed.
func (c *Conn) Close(id uint32, code uint16, reason string) {
	c.t.Helper()
	c.Write(wire.AppendClose(nil, id, code, []byte(reason)))
}

// Push sends an admin push request.
func (c *Conn) Push(req uint32, key string, payload []byte) {
	c.t.Helper()
	c.Write(wire.AppendPush(nil, req, []byte(key), payload))
}

// NextRaw reads the next frame from the connection, whatever it is.
func (c *Conn) NextRaw() Frame {
	c.t.Helper()
	f, err := c.TryNextRaw()
	if err != nil {
		c.t.Fatalf("gwtest: read: %v", err)
	}
	return f
}

// TryNextRaw is NextRaw returning the error.
func (c *Conn) TryNextRaw() (Frame, error) {
	_ = c.C.SetReadDeadline(time.Now().Add(Timeout))
	h, b, err := c.R.ReadFrame()
	if err != nil {
		return Frame{}, err
	}
	return Frame{h, bytes.Clone(b)}, nil
}

// Next returns the next frame not yet consumed, answering and skipping
// Pings (and skipping Pongs) when AutoPong is set.
func (c *Conn) Next() Frame {
	c.t.Helper()
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return f
	}
	for {
		f := c.NextRaw()
		if c.AutoPong && f.Type == wire.TypePing {
			c.Pings++
			c.Write(wire.AppendFrame(nil, wire.TypePong, 0, 0, f.Body))
			continue
		}
		if c.AutoPong && f.Type == wire.TypePong {
			continue
		}
		return f
	}
}

// Expect returns the next frame, failing the test unless it has type t and
// session id.
func (c *Conn) Expect(t wire.Type, session uint32) Frame {
	c.t.Helper()
	f := c.Next()
	if f.Type != t || f.Session != session {
		c.t.Fatalf("gwtest: got %v (session %d, flags %#x, body %.80q), want %v session %d", f.Type, f.Session, f.Flags, f.Body, t, session)
	}
	return f
}

// ExpectClose returns the code and reason of the next frame, which must be a
// Close for session id.
func (c *Conn) ExpectClose(id uint32) (uint16, string) {
	c.t.Helper()
	f := c.Expect(wire.TypeClose, id)
	code, reason, err := wire.ParseClose(f.Body)
	if err != nil {
		c.t.Fatalf("gwtest: bad Close: %v", err)
	}
	return code, string(reason)
}

// ReadMessage reassembles the next whole message for session id; frames
// of other sessions read meanwhile stay queued for Next, in order.
func (c *Conn) ReadMessage(id uint32) Msg {
	c.t.Helper()
	var keep []Frame
	defer func() { c.pending = append(keep, c.pending...) }()
	for {
		var f Frame
		if len(c.pending) > 0 {
			f, c.pending = c.pending[0], c.pending[1:]
		} else {
			f = c.Next()
		}
		if f.Type != wire.TypeMessage || f.Session != id {
			keep = append(keep, f)
			continue
		}
		m := c.partial[id]
		first := f.Flags&wire.FlagContinuation == 0
		if first != (m == nil) {
			c.t.Fatalf("gwtest: session %d: fragment flags %#x out of order", id, f.Flags)
		}
		if m == nil {
			m = &Msg{Session: id, Binary: f.Flags&wire.FlagBinary != 0}
			c.partial[id] = m
		} else if m.Binary != (f.Flags&wire.FlagBinary != 0) {
			c.t.Fatalf("gwtest: session %d: FlagBinary changed inside a message", id)
		}
		m.Data = append(m.Data, f.Body...)
		m.Frags++
		m.MaxFrag = max(m.MaxFrag, len(f.Body))
		if f.Flags&wire.FlagMore == 0 {
			delete(c.partial, id)
			return *m
		}
	}
}

// ExpectEOF reads until the node closes the link, returning the frames seen
// before (e.g. an Error frame).
func (c *Conn) ExpectEOF() []Frame {
	c.t.Helper()
	frames := c.pending
	c.pending = nil
	for {
		f, err := c.TryNextRaw()
		if err == nil {
			frames = append(frames, f)
			continue
		}
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &ne) && !ne.Timeout()) {
			return frames
		}
		c.t.Fatalf("gwtest: waiting for the link to close: %v (frames %v)", err, frames)
	}
}

// ParseError decodes an Error frame.
func ParseError(t testing.TB, f Frame) (uint16, string) {
	t.Helper()
	if f.Type != wire.TypeError || f.Session != 0 {
		t.Fatalf("gwtest: got %v session %d, want Error", f.Type, f.Session)
	}
	code, text, err := wire.ParseError(f.Body)
	if err != nil {
		t.Fatalf("gwtest: bad Error body: %v", err)
	}
	return code, string(text)
}
