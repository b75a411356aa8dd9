package backend

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/internal/wire"
)

// Output buffer tuning.
const (
	// keepBuf: a writer buffer larger than this is dropped after a flush
	// instead of being reused, so one big message does not pin memory.
	keepBuf = 1 << 20
	// finalFlushTimeout bounds the last write on a link that is closing
	// after an Error frame.
	finalFlushTimeout = 2 * time.Second
	// releaseRbuf: a reassembly buffer larger than this is released after
	// its message is delivered.
	releaseRbuf = 64 << 10
)

// link is one gateway connection.
//
// Goroutines: serve (the reader: handshake, then readLoop, then teardown)
// and writeLoop, both counted in Node.wg. peer, frag, maxOut and log are
// written by the handshake before writeLoop starts and read-only after.
type link struct {
	n      *Node
	c      net.Conn
	source string // the peer's address (host), for the per-source handshake slots
	dr     deadlineReader
	rd     *wire.Reader
	log    *slog.Logger

	peer   wire.Hello // the gateway's Hello
	frag   int        // outgoing fragment size: min(FragmentSize, peer MaxBody)
	maxOut int        // largest body the gateway accepts

	// Reassembly budget (Config.MaxLinkReassembly), owned by the reader
	// goroutine: rbytes is the sum of cap(s.rbuf) over rheld, the sessions
	// of the link that hold a reassembly buffer (including ended sessions
	// whose buffer is not reclaimed yet).
	rbytes int
	rheld  map[*Session]struct{}
	shook  bool // the handshake slot was released (handshakeDone)

	// smu guards sessions. Taken after Node.mu, before wmu.
	smu      sync.Mutex
	sessions map[uint32]*Session

	// wmu guards the output buffer and close state below (and every
	// Session.outClosed of the link). Taken after Node.mu and smu.
	//
	// Buffer lifetime: appenders write frames into wbuf under wmu; the
	// writer swaps wbuf for its spare buffer under wmu and then writes the
	// old wbuf without the lock, so frames are never modified while being
	// written and never split between sessions' messages.
	wmu        sync.Mutex
	wbuf       []byte
	up         bool   // the handshake is done (the writer may run)
	closing    bool   // an Error frame is queued: flush it, then close the conn
	dead       bool   // teardown began: nothing more is queued
	localCode  uint16 // non-zero: the node closed the link on purpose, OnClose code
	localCause string // OnClose reason that goes with localCode
	stopOnce   sync.Once

	wakeCh     chan struct{} // cap 1: the writer has work
	stop       chan struct{} // closed by closeConn: the writer must exit now
	writerDone chan struct{} // closed when writeLoop returns
	spare      []byte        // writer-owned second buffer
}

// deadlineReader pushes the read deadline forward before every read from the
// connection, so a link silent for timeout fails its read. timeout 0 leaves
// the deadline alone (handshake).
type deadlineReader struct {
	c       net.Conn
	timeout time.Duration
}

// Read reads from the connection after pushing the read deadline forward.
func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.timeout > 0 {
		_ = d.c.SetReadDeadline(time.Now().Add(d.timeout))
	}
	return d.c.Read(p)
}

func newLink(n *Node, c net.Conn) *link {
	l := &link{
		n:          n,
		c:          c,
		log:        n.log.With("remote", c.RemoteAddr().String()),
		sessions:   make(map[uint32]*Session),
		rheld:      make(map[*Session]struct{}),
		wakeCh:     make(chan struct{}, 1),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	l.dr.c = c
	// Until the handshake is done, only Hello (at most 9+65535 bytes) and
	// Auth (49) are read: an unauthenticated peer cannot make the node
	// allocate a full frame buffer (DefaultMaxBody) with a 10-byte header.
	l.rd = wire.NewReader(&l.dr, handshakeMaxBody)
	return l
}

// handshakeMaxBody is the largest frame body read before the handshake is
// done: a Hello's (fixed fields and a node id of at most wire.MaxString).
const handshakeMaxBody = 9 + wire.MaxString

// protoError is a fatal protocol violation by the gateway: it is answered
// with an Error frame and the link is closed.
type protoError struct {
	code uint16
	text string
}

// Error implements error.
func (e *protoError) Error() string { return fmt.Sprintf("protocol error %d: %s", e.code, e.text) }

func protoErr(format string, args ...any) error {
	return &protoError{wire.CodeProtocol, fmt.Sprintf(format, args...)}
}

// errPeerError: the gateway sent an Error frame; the link closes.
var errPeerError = errors.New("gateway sent Error")

// errBadHello: the handshake failed on a bad first frame (answered with an
// Error frame and counted).
var errBadHello = errors.New("bad Hello")

// serve runs the link on its reader goroutine.
func (l *link) serve() {
	defer l.n.wg.Done()
	if err := l.handshake(); err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			l.n.reject(rejectHelloTimeout, remoteAddr(l.c))
			l.log.Debug("link handshake timed out", "err", err)
		case errors.Is(err, errBadHello), errors.Is(err, io.EOF):
			l.log.Debug("link handshake failed", "err", err) // counted (bad Hello) or the peer left
		default:
			l.log.Warn("link handshake failed", "err", err)
		}
		// Released after counting: a link no longer pending has its
		// rejection, if any, in Stats.
		l.handshakeDone()
		l.closeConn()
		l.n.wg.Done() // the writer was counted but never started
		l.n.removeLink(l)
		return
	}
	l.log = l.log.With("gateway", l.peer.NodeID)
	l.log.Info("link up", "peer_max_body", l.peer.MaxBody)
	go l.writeLoop()
	l.teardown(l.readLoop())
}

// handshakeDone releases l's MaxPendingLinks slot once. Reader goroutine.
func (l *link) handshakeDone() {
	if !l.shook {
		l.shook = true
		l.n.handshakeDone(l.source)
	}
}

// handshake reads the gateway's Hello and answers with ours. A bad Hello is
// answered with an Error frame.
func (l *link) handshake() error {
	cfg := &l.n.cfg
	_ = l.c.SetDeadline(time.Now().Add(cfg.HelloTimeout))
	if tc, ok := l.c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				l.n.reject(rejectBadTLS, remoteAddr(l.c))
				return fmt.Errorf("%w: TLS: %w", errBadHello, err)
			}
			return err
		}
	}
	reply := func(code uint16, text string, err error) error {
		l.n.reject(rejectBadHello, remoteAddr(l.c))
		_, _ = l.c.Write(wire.AppendError(nil, code, text))
		return fmt.Errorf("%w: %w", errBadHello, err)
	}
	h, body, err := l.rd.ReadFrame()
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return reply(wire.CodeTooLarge, "frame too large", err)
	case errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrMalformed):
		return reply(wire.CodeProtocol, "expected Hello", err)
	case err != nil:
		return err
	case h.Type != wire.TypeHello || h.Session != 0: // unknown Hello flags are ignored
		return reply(wire.CodeProtocol, "expected Hello", fmt.Errorf("first frame is %v", h.Type))
	}
	// The version comes first so that a Hello of another version, whatever
	// its layout, gets the version error.
	if len(body) >= 2 && binary.BigEndian.Uint16(body) != wire.Version {
		return reply(wire.CodeUnsupportedVersion, "unsupported version",
			fmt.Errorf("%w %d", wire.ErrVersion, binary.BigEndian.Uint16(body)))
	}
	hello, err := wire.ParseHello(body)
	if err == nil {
		err = hello.Check(wire.RoleGateway)
	}
	if err != nil {
		return reply(wire.CodeProtocol, "bad Hello: "+err.Error(), err)
	}
	hello.Flags = h.Flags // carried in the header
	l.peer = hello
	l.maxOut = int(min(hello.MaxBody, math.MaxInt32)) // fits int everywhere
	l.frag = min(cfg.FragmentSize, l.maxOut)
	out := wire.AppendHello(nil, wire.Hello{
		Version: wire.Version,
		Role:    wire.RoleBackend,
		MaxBody: wire.DefaultMaxBody,
		NodeID:  cfg.ID,
		Flags:   wire.FlagCloseAck | wire.FlagMigrate, // handle answers every gateway Close; migrate.go
	})
	if len(cfg.ClusterSecret) > 0 {
		if err := l.authenticate(hello.NodeID, out); err != nil {
			return err
		}
	} else {
		// The handshake slot is free before the gateway sees our Hello.
		l.handshakeDone()
		if _, err := l.c.Write(out); err != nil {
			return err
		}
	}
	_ = l.c.SetDeadline(time.Time{})
	l.rd.SetMaxBody(wire.DefaultMaxBody)
	l.dr.timeout = cfg.LinkTimeout
	l.wmu.Lock()
	l.up = true
	l.wmu.Unlock()
	return nil
}

// authenticate runs the link authentication (wire/auth.go) after the
// gateway's Hello: the gateway's challenge, our Hello (hello) with our
// nonce and proof, then the gateway's proof. Nothing else is accepted
// before it; a failure is answered with an Error and counted.
func (l *link) authenticate(gatewayID string, hello []byte) error {
	cfg := &l.n.cfg
	fail := func(text string, err error) error {
		l.n.reject(rejectBadAuth, remoteAddr(l.c))
		_, _ = l.c.Write(wire.AppendError(nil, wire.CodeProtocol, text))
		return fmt.Errorf("%w: %w", errBadHello, err)
	}
	next := func(step uint8) (wire.Auth, error) {
		h, body, err := l.rd.ReadFrame()
		if err != nil {
			return wire.Auth{}, err
		}
		if h.Type != wire.TypeAuth || h.Session != 0 {
			return wire.Auth{}, fmt.Errorf("%w: got %v, want Auth step %d", wire.ErrAuth, h.Type, step)
		}
		a, err := wire.ParseAuth(body)
		if err == nil && a.Step != step {
			err = fmt.Errorf("%w: Auth step %d, want %d", wire.ErrAuth, a.Step, step)
		}
		return a, err
	}
	ch, err := next(wire.AuthChallenge)
	if err != nil {
		if errors.Is(err, wire.ErrAuth) || errors.Is(err, wire.ErrMalformed) {
			return fail("cluster authentication required", err)
		}
		return err
	}
	nb := wire.NewNonce()
	resp := wire.Auth{Step: wire.AuthResponse, Nonce: nb,
		MAC: wire.LinkMAC(cfg.ClusterSecret, wire.RoleBackend, gatewayID, cfg.ID, ch.Nonce, nb)}
	if _, err := l.c.Write(wire.AppendAuth(hello, resp)); err != nil {
		return err
	}
	conf, err := next(wire.AuthConfirm)
	if err != nil {
		if errors.Is(err, wire.ErrAuth) || errors.Is(err, wire.ErrMalformed) {
			return fail("cluster authentication failed", err)
		}
		return err
	}
	if !wire.CheckMAC(conf.MAC, wire.LinkMAC(cfg.ClusterSecret, wire.RoleGateway, gatewayID, cfg.ID, ch.Nonce, nb)) {
		return fail("cluster authentication failed", wire.ErrAuth)
	}
	l.handshakeDone()
	return nil
}

// readLoop reads and handles frames until the link fails. A protocol
// violation is answered with an Error frame before returning.
func (l *link) readLoop() error {
	for {
		h, body, err := l.rd.ReadFrame()
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrTooLarge):
				err = &protoError{wire.CodeTooLarge, "frame too large"}
			case errors.Is(err, wire.ErrUnknownType), errors.Is(err, wire.ErrMalformed):
				err = &protoError{wire.CodeProtocol, err.Error()}
			}
		} else {
			err = l.handle(h, body)
		}
		if err != nil {
			var pe *protoError
			if errors.As(err, &pe) {
				l.fail(pe.code, pe.text)
			}
			return err
		}
	}
}

// handle processes one frame from the gateway. body aliases the reader's
// buffer and is only valid during the call.
func (l *link) handle(h wire.Header, body []byte) error {
	switch h.Type {
	case wire.TypeMessage:
		return l.handleMessage(h, body)
	case wire.TypeOpen:
		return l.handleOpen(h, body)
	case wire.TypeClose:
		if h.Session == 0 || h.Flags != 0 {
			return protoErr("bad Close header")
		}
		code, reason, err := wire.ParseClose(body)
		if err != nil {
			return protoErr("bad Close body")
		}
		if s := l.lookup(h.Session); s != nil {
			// FlagCloseAck: answer with a Close queued after every frame
			// already queued for s (endRemote appends it unless we sent
			// our own Close first).
			ack := code
			if !validCloseCode(ack) {
				ack = closeNormal // 1005, 1006, ...: not sendable on the WebSocket wire
			}
			l.endRemote(s, code, strings.ToValidUTF8(string(reason), "\uFFFD"), ack, "")
		}
		return nil
	case wire.TypePing, wire.TypePong:
		if h.Session != 0 || h.Flags != 0 {
			return protoErr("bad %v header", h.Type)
		}
		data, err := wire.ParsePing(body)
		if err != nil {
			return protoErr("bad %v body", h.Type)
		}
		if h.Type == wire.TypePing {
			l.wmu.Lock()
			if !l.dead {
				l.wbuf = wire.AppendPong(l.wbuf, data)
				l.wake()
			}
			l.wmu.Unlock()
		} else if sent := int64(binary.BigEndian.Uint64(data[:])); sent > 0 {
			l.log.Debug("pong", "rtt", time.Duration(time.Now().UnixNano()-sent))
		}
		return nil
	case wire.TypePush:
		if h.Flags != 0 {
			return protoErr("bad Push flags")
		}
		key, payload, err := wire.ParsePush(body)
		if err != nil {
			return protoErr("bad Push body")
		}
		n := max(0, min(l.n.h.OnPush(string(key), payload), 1<<32-1))
		var flags uint8
		if n == 0 && l.n.isMoving(string(key)) {
			flags = wire.FlagMoving // a session of key is between nodes: the gateway tries again
		}
		l.wmu.Lock()
		if !l.dead {
			l.wbuf = wire.AppendPushResultFlags(l.wbuf, h.Session, flags, uint32(n))
			l.wake()
		}
		l.wmu.Unlock()
		return nil
	case wire.TypeHandover, wire.TypeState:
		if !l.migrates() {
			return protoErr("%v frame on a link without migration (FlagMigrate)", h.Type)
		}
		if h.Type == wire.TypeHandover {
			return l.handleHandover(h)
		}
		return l.handleState(h, body)
	case wire.TypeError:
		code, text, _ := wire.ParseError(body)
		lvl := slog.LevelWarn
		if code == wire.CodeGoingAway {
			lvl = slog.LevelInfo
		}
		l.log.Log(context.Background(), lvl, "gateway closed the link with an Error frame", "code", code, "text", string(text))
		return errPeerError
	default: // Hello again, or a backend->gateway type
		return protoErr("unexpected %v frame from the gateway", h.Type)
	}
}

func (l *link) lookup(id uint32) *Session {
	l.smu.Lock()
	s := l.sessions[id]
	l.smu.Unlock()
	return s
}

func (l *link) handleOpen(h wire.Header, body []byte) error {
	if h.Session == 0 {
		return protoErr("Open with session 0")
	}
	if h.Flags&^(wire.FlagKeyless|wire.FlagResume) != 0 || h.Flags&wire.FlagResume != 0 && !l.migrates() {
		return protoErr("bad Open flags %#x", h.Flags)
	}
	o, err := wire.ParseOpen(body)
	if err != nil {
		return protoErr("bad Open body")
	}
	if l.lookup(h.Session) != nil {
		return protoErr("Open for session %d, which is open", h.Session)
	}
	if l.n.isDraining() {
		l.wmu.Lock()
		if !l.dead {
			l.wbuf = wire.AppendClose(l.wbuf, h.Session, closeGoingAway, []byte("going away"))
			l.wake()
		}
		l.wmu.Unlock()
		return nil
	}
	s := &Session{l: l, id: h.Session, keyless: h.Flags&wire.FlagKeyless != 0}
	s.setStrings(o.Key, o.RemoteAddr, o.Target)
	if len(o.Claims) > 0 {
		s.claims = append([]byte(nil), o.Claims...) // o aliases the read buffer
	}
	if h.Flags&wire.FlagResume != 0 {
		l.handleResume(s)
		return nil
	}
	l.smu.Lock()
	l.sessions[s.id] = s
	l.smu.Unlock()
	l.n.addSession(s)
	if s.begin() {
		l.n.h.OnOpen(s)
		l.finish(s)
	}
	return nil
}

// handleMessage reassembles fragments. A message that arrives whole is
// handed to OnMessage straight from the reader's buffer; a fragmented one
// is collected in s.rbuf.
func (l *link) handleMessage(h wire.Header, body []byte) error {
	if h.Session == 0 {
		return protoErr("Message with session 0")
	}
	if h.Flags&^wire.MessageFlags != 0 {
		return protoErr("bad Message flags %#x", h.Flags)
	}
	s := l.lookup(h.Session)
	if s == nil {
		return nil // closed by us, frames were in flight
	}
	if s.arriving {
		return protoErr("Message for session %d before its State", h.Session)
	}
	bin := h.Flags&wire.FlagBinary != 0
	more := h.Flags&wire.FlagMore != 0
	limit := l.n.cfg.MaxMessage
	if h.Flags&wire.FlagContinuation == 0 {
		if s.inMsg {
			return protoErr("session %d: new message before the previous one ended", s.id)
		}
		if len(body) > limit {
			l.endRemote(s, closeTooBig, "message too big", closeTooBig, "message too big")
			return nil
		}
		if !more {
			l.n.stats.countIn(len(body))
			if s.begin() {
				l.n.h.OnMessage(s, bin, body)
				l.finish(s)
			}
			return nil
		}
		s.rbuf = s.rbuf[:0]
		if !l.growRbuf(s, len(body)) {
			l.shed(s)
			return nil
		}
		s.inMsg, s.rbin = true, bin
		s.rbuf = append(s.rbuf, body...)
		return nil
	}
	if !s.inMsg {
		return protoErr("session %d: continuation without a first fragment", s.id)
	}
	if bin != s.rbin {
		return protoErr("session %d: FlagBinary changed within a message", s.id)
	}
	if len(body) > limit-len(s.rbuf) {
		l.endRemote(s, closeTooBig, "message too big", closeTooBig, "message too big")
		return nil
	}
	if !l.growRbuf(s, len(body)) {
		l.shed(s)
		return nil
	}
	s.rbuf = append(s.rbuf, body...)
	if more {
		return nil
	}
	s.inMsg = false
	l.n.stats.countIn(len(s.rbuf))
	if s.begin() {
		l.n.h.OnMessage(s, bin, s.rbuf)
		l.finish(s)
	}
	if cap(s.rbuf) > releaseRbuf {
		l.setRbuf(s, nil)
	} else {
		s.rbuf = s.rbuf[:0] // kept for the next message, still counted
	}
	return nil
}

// setRbuf replaces s.rbuf with b and keeps the link's reassembly budget
// accounts. Reader goroutine only.
func (l *link) setRbuf(s *Session, b []byte) {
	l.rbytes += cap(b) - cap(s.rbuf)
	s.rbuf = b
	if cap(b) == 0 {
		delete(l.rheld, s)
	} else {
		l.rheld[s] = struct{}{}
	}
}

// growRbuf makes room for extra more bytes in s.rbuf within the link's
// reassembly budget, reclaiming the buffers of other sessions that are
// ended or between messages if needed. It returns false if even an exact
// fit would take the link over MaxLinkReassembly. Reader goroutine only.
func (l *link) growRbuf(s *Session, extra int) bool {
	need := len(s.rbuf) + extra
	if need <= cap(s.rbuf) {
		return true
	}
	size := max(need, min(2*cap(s.rbuf), l.n.cfg.MaxMessage)) // amortized growth
	room := l.n.cfg.MaxLinkReassembly - (l.rbytes - cap(s.rbuf))
	if size > room {
		l.reclaimRbufs(s)
		room = l.n.cfg.MaxLinkReassembly - (l.rbytes - cap(s.rbuf))
		if need > room {
			return false
		}
		size = min(size, room) // all the room left, to copy less often
	}
	b := make([]byte, len(s.rbuf), size)
	copy(b, s.rbuf)
	l.setRbuf(s, b)
	return true
}

// reclaimRbufs releases the reassembly buffers of the link's sessions,
// other than keep, that are not in the middle of a message or have ended
// (a session the service closed outside its handlers ends without the
// reader noticing). Reader goroutine only; it runs only when the budget is
// short, so its cost (one pass over the holders) is paid rarely.
func (l *link) reclaimRbufs(keep *Session) {
	for s := range l.rheld {
		if s == keep {
			continue
		}
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if ended || !s.inMsg {
			s.inMsg = false
			l.setRbuf(s, nil)
		}
	}
}

// shed closes s because its message does not fit the link's reassembly
// budget: 1013 (try again later), since the message itself is allowed.
func (l *link) shed(s *Session) {
	l.n.stats.shed.Add(1)
	if l.n.stats.shedLog.allow() {
		l.log.Warn("session closed: link reassembly buffers full (logged at most every 10s)",
			"session", s.id, "limit", l.n.cfg.MaxLinkReassembly, "reassembly_bytes", l.rbytes)
	}
	l.endRemote(s, closeTryAgain, reassemblyReason, closeTryAgain, reassemblyReason)
}

// wake tells the writer there is output. Called with wmu held.
func (l *link) wake() {
	select {
	case l.wakeCh <- struct{}{}:
	default:
	}
}

// hasRoom reports whether need more bytes may be queued. Called with wmu
// held. An empty buffer takes a message of any size.
func (l *link) hasRoom(need int) bool {
	return len(l.wbuf) == 0 || len(l.wbuf)+need <= l.n.cfg.MaxLinkBuffer
}

// sendMessage queues data for s as Message fragments, all under one hold
// of wmu so that no other frame of s comes between them.
func (l *link) sendMessage(s *Session, bin bool, data []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if s.outClosed || l.dead {
		return ErrSessionClosed
	}
	frags := max(1, (len(data)+l.frag-1)/l.frag)
	if !l.hasRoom(len(data) + frags*wire.HeaderSize) {
		return ErrBufferFull
	}
	l.wbuf = appendMessage(l.wbuf, s.id, bin, data, l.frag)
	l.wake()
	l.n.stats.countOut(1, len(data))
	return nil
}

// appendMessage appends data as Message frames of at most frag body bytes.
func appendMessage(dst []byte, id uint32, bin bool, data []byte, frag int) []byte {
	var flags uint8
	if bin {
		flags = wire.FlagBinary
	}
	if len(data) <= frag {
		return wire.AppendFrame(dst, wire.TypeMessage, flags, id, data)
	}
	frags := (len(data) + frag - 1) / frag
	dst = slices.Grow(dst, len(data)+frags*wire.HeaderSize)
	for f := flags; ; f = flags | wire.FlagContinuation {
		if len(data) <= frag {
			return wire.AppendFrame(dst, wire.TypeMessage, f, id, data)
		}
		dst = wire.AppendFrame(dst, wire.TypeMessage, f|wire.FlagMore, id, data[:frag])
		data = data[frag:]
	}
}

// sendKey delivers a message to the key's sessions on l (count of them):
// one SendKey frame, or per-session messages when it does not fit one
// frame. Returns the sessions reached. Called with Node.mu read-locked.
func (l *link) sendKey(key string, bin bool, data []byte, count int) int {
	if 2+len(key)+len(data) > l.maxOut {
		reached := 0
		for s := range l.n.keySessions(key) {
			if s.l == l && l.sendMessage(s, bin, data) == nil {
				reached++
			}
		}
		return reached
	}
	var flags uint8
	if bin {
		flags = wire.FlagBinary
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.dead || !l.hasRoom(wire.HeaderSize+2+len(key)+len(data)) {
		return 0
	}
	l.wbuf = wire.AppendHeader(l.wbuf, wire.TypeSendKey, flags, 0, 2+len(key)+len(data))
	l.wbuf = binary.BigEndian.AppendUint16(l.wbuf, uint16(len(key)))
	l.wbuf = append(l.wbuf, key...)
	l.wbuf = append(l.wbuf, data...)
	l.wake()
	l.n.stats.countOut(count, len(data))
	return count
}

// broadcast delivers a message to every session on l: one Broadcast frame,
// or per-session messages when it does not fit one frame. Returns the
// sessions reached. Called with Node.mu read-locked.
func (l *link) broadcast(bin bool, data []byte) int {
	l.smu.Lock()
	defer l.smu.Unlock()
	count := len(l.sessions)
	for _, s := range l.sessions {
		if s.arriving {
			count-- // not here yet (migrate.go): its old node still reaches it
		}
	}
	if count == 0 {
		return 0
	}
	if len(data) > l.maxOut {
		reached := 0
		for _, s := range l.sessions {
			if !s.arriving && l.sendMessage(s, bin, data) == nil {
				reached++
			}
		}
		return reached
	}
	var flags uint8
	if bin {
		flags = wire.FlagBinary
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.dead || !l.hasRoom(wire.HeaderSize+len(data)) {
		return 0
	}
	l.wbuf = wire.AppendFrame(l.wbuf, wire.TypeBroadcast, flags, 0, data)
	l.wake()
	l.n.stats.countOut(count, len(data))
	return count
}

// fail queues an Error frame; the writer flushes it and closes the link.
func (l *link) fail(code uint16, text string) {
	l.log.Warn("closing link: protocol error", "code", code, "text", text)
	l.wmu.Lock()
	if !l.closing && !l.dead {
		l.closing = true
		l.wbuf = wire.AppendError(l.wbuf, code, text)
		l.wake()
	}
	l.wmu.Unlock()
}

// closeGraceful (Shutdown, node drained) sends Error(CodeGoingAway) and
// closes the link once it is flushed.
func (l *link) closeGraceful() {
	l.wmu.Lock()
	if l.localCode == 0 {
		l.localCode, l.localCause = closeGoingAway, "node shutting down"
	}
	up := l.up
	if up && !l.closing && !l.dead {
		l.closing = true
		l.wbuf = wire.AppendError(l.wbuf, wire.CodeGoingAway, "node shutting down")
		l.wake()
	}
	l.wmu.Unlock()
	if !up {
		l.closeConn() // still in handshake
	}
}

// closeHard (Close) closes the connection at once.
func (l *link) closeHard() {
	l.wmu.Lock()
	if l.localCode == 0 {
		l.localCode, l.localCause = closeGoingAway, "node shutting down"
	}
	l.wmu.Unlock()
	l.closeConn()
}

// closeConn closes the connection and stops the writer. Idempotent.
func (l *link) closeConn() {
	l.stopOnce.Do(func() {
		close(l.stop)
		_ = l.c.Close()
	})
}

// writeLoop is the link's writer goroutine: it flushes everything queued
// in one write per wake-up and sends a Ping every PingInterval on a fixed
// schedule, whatever else it writes (docs/protocol.md, "Keepalive": the
// gateway must hear this side once per interval even when only the gateway
// sends). It closes the connection when the link is closing or dead and
// everything queued is written.
func (l *link) writeLoop() {
	defer l.n.wg.Done()
	defer close(l.writerDone)
	cfg := &l.n.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-l.wakeCh:
		case <-ping.C:
			var data [wire.PingSize]byte
			binary.BigEndian.PutUint64(data[:], uint64(time.Now().UnixNano()))
			l.wmu.Lock()
			l.wbuf = wire.AppendPing(l.wbuf, data)
			l.wmu.Unlock()
		case <-l.stop:
			return
		}
		l.wmu.Lock()
		out := l.wbuf
		l.wbuf = l.spare[:0]
		final := l.closing || l.dead
		l.wmu.Unlock()
		if len(out) > 0 {
			timeout := cfg.LinkTimeout
			if final {
				timeout = min(timeout, finalFlushTimeout)
			}
			_ = l.c.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := l.c.Write(out); err != nil {
				l.log.Debug("link write failed", "err", err)
				l.closeConn()
				return
			}
		}
		if cap(out) > keepBuf {
			out = nil
		}
		l.spare = out[:0]
		if final {
			l.closeConn()
			return
		}
	}
}

// teardown runs on the reader goroutine after readLoop returns: it stops
// the writer (after it flushed a queued Error frame), closes the
// connection and ends every session of the link.
func (l *link) teardown(err error) {
	l.wmu.Lock()
	graceful := l.closing
	l.dead = true
	code, reason := l.localCode, l.localCause
	l.wake()
	l.wmu.Unlock()
	if graceful {
		// Let the writer flush the Error frame, but not for long.
		t := time.NewTimer(finalFlushTimeout)
		select {
		case <-l.writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	l.closeConn()
	<-l.writerDone
	l.n.removeLink(l)

	// A clean close (the gateway closed the link, or this node did) is
	// routine: a gateway shutting down closes one link per event loop per
	// node, and each would be a line. Debug only; trouble stays visible.
	switch {
	case code != 0:
		l.log.Debug("link closed by the node")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		l.log.Debug("link closed by the gateway")
	case errors.Is(err, errPeerError):
		l.log.Info("link closed after an error from the gateway", "err", err)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			l.n.stats.silent.Add(1)
			l.log.Warn("link silent, dropped", "gateway", l.peer.NodeID, "timeout", l.n.cfg.LinkTimeout)
		} else {
			l.log.Warn("link lost", "err", err)
		}
	}
	if code == 0 {
		code, reason = closeAbnormal, "link lost"
	}

	l.smu.Lock()
	sessions := make([]*Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.smu.Unlock()
	for _, s := range sessions {
		l.endRemote(s, code, reason, 0, "")
	}
}
