package gateway

import (
	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/wire"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Session states.
const (
	stHandshake uint8 = iota // waiting for a complete upgrade request
	stOpen                   // upgraded; frames flow both ways
	stClosing                // we sent a close frame and wait for the client's
	stClosed                 // done; the conn is closing
	// stClientClosed: the client sent a close frame; the backend was told
	// and its replies still in flight are delivered until it acknowledges
	// (wire.FlagCloseAck) or CloseTimeout passes; then the gateway answers
	// the client's close.
	stClientClosed
	// stRejected: refused by a connection limit; its answer is written and
	// the connection lingers until the client closes or rejectLinger passes.
	stRejected
	// stMigrating: the session moves to another node (migrate.go); the
	// client's input is held, output from its nodes still reaches it.
	stMigrating
)

// maxChunk caps one relayed piece of a large client frame, so a big message
// streams to the backend in wire fragments instead of being buffered whole.
const maxChunk = 64 << 10

// chunk is the largest piece of a client frame relayed at once: maxChunk,
// or less when s's backend accepts smaller frame bodies.
func (s *session) chunk() int {
	if s.link != nil {
		return s.link.chunk
	}
	return maxChunk // closing: the rest is discarded
}

// session is one client connection. It is owned by its loop's goroutine.
//
// Kept small on purpose: an idle client costs this struct, gnet's conn and
// two map entries, and no buffer (gnet's inbound buffer is empty while idle).
type session struct {
	conn gnet.Conn
	loop *loop
	link *link     // the backend link; nil until routed and after detach
	up   *upstream // or, routed to a plain upstream (upstream.go), its connection; nil after detach
	key  string
	id   uint32

	state   uint8
	keyless bool

	// Reader state of the client frame in progress.
	op      wsframe.OpCode // data message in progress (text/binary), 0 if none
	fin     bool           // the current frame ends the message
	relayed bool           // a fragment of the current message went to the backend
	maskPos uint8
	mask    [4]byte
	utf8    wsframe.UTF8

	// Edge limits (edge.go). The small fields sit together so that the
	// struct stays in the 128-byte size class (an idle client costs it).
	backlogged bool    // in loop.backlogged
	lingers    bool    // stRejected: counted in Gateway.lingering
	slow       bool    // closed as a slow consumer: its close releases memory
	closeCode  uint16  // stClientClosed: the code to echo to the client
	seen       uint32  // coarse milliseconds (since the gateway started) of the last input
	rateAt     uint32  // coarse milliseconds of the last frame-rate refill; in stHandshake, graceMark once graced (no room for a flag)
	tokens     float32 // frame-rate bucket
	slot       int32   // index in loop.walk; -1 when not there
	exp        uint32  // unix seconds when the client's token expires; 0 = never

	// Both at most MaxMessage (at most MaxMessageLimit), so 32 bits hold
	// them and the struct keeps its size class.
	remaining uint32 // payload bytes of the current frame still to read
	msgLen    uint32 // bytes of the current message so far

	deadline         int64 // nanoseconds since the gateway started (Gateway.deadline); meaningful while in loop.timed
	prevKey, nextKey *session
}

// graceMark in rateAt marks a handshake given a second HandshakeTimeout
// (loop.sweep): the field is unused until the upgrade (startLimits), and
// the struct has no byte left in its 128-byte size class for a flag.
const graceMark = 1

// graced reports whether s, in its handshake, was given a second timeout.
func (s *session) graced() bool { return s.state == stHandshake && s.rateAt == graceMark }

// deliverable reports whether backend output for s still goes to the
// client: while open, and while the client's close waits for the backend.
func (s *session) deliverable() bool {
	return s.state == stOpen || s.state == stClientClosed || s.state == stMigrating
}

// onTraffic processes every complete piece of input from the client.
func (l *loop) onTraffic(s *session, c gnet.Conn) gnet.Action {
	if s.state == stRejected {
		_, _ = c.Discard(c.InboundBuffered()) // a refused client's request goes unread
		return gnet.None
	}
	if s.state == stHandshake {
		if act, done := l.handshakeTraffic(s, c); !done {
			return act
		}
	}
	if s.state == stMigrating {
		return l.holdInput(s, c)
	}
	now := l.g.nowMs()
	s.seen = now
	if s.up != nil {
		return l.passTraffic(s, c, now)
	}
	for s.state == stOpen || s.state == stClosing || s.state == stClientClosed {
		if s.remaining > 0 {
			n := c.InboundBuffered()
			if n == 0 {
				return gnet.None
			}
			take := min(n, int(s.remaining), s.chunk())
			p, _ := c.Peek(take)
			s.maskPos = uint8(wsframe.MaskBytes(p, s.mask, int(s.maskPos)))
			s.remaining -= uint32(take)
			if act := l.relayChunk(s, p, s.remaining == 0 && s.fin); act != gnet.None {
				return act
			}
			_, _ = c.Discard(take)
			continue
		}
		n := c.InboundBuffered()
		if n < 2 {
			return gnet.None
		}
		p, _ := c.Peek(min(n, wsframe.MaxHeaderLen))
		var h wsframe.Header // decoded in place: returning it by value costs more than the parse
		hn, err := h.Parse(p)
		if err != nil {
			return l.fail(s, err)
		}
		if hn == 0 {
			return gnet.None
		}
		// RFC 6455 5.1: "The server MUST close the connection upon receiving a
		// frame that is not masked ... with a status code of 1002."
		if !h.Masked {
			return l.fail(s, wsframe.ErrUnmaskedFrame)
		}
		if h.Op.IsControl() {
			need := hn + int(h.Length)
			if n < need {
				return gnet.None
			}
			p, _ = c.Peek(need)
			payload := p[hn:]
			wsframe.MaskBytes(payload, h.Mask, 0)
			if act := l.control(s, h.Op, payload); act != gnet.None {
				return act
			}
			_, _ = c.Discard(need)
			continue
		}
		// RFC 6455 5.4: a fragmented message is one frame with FIN clear and
		// a data opcode, then zero or more continuation frames, the last with
		// FIN set; data frames of another message must not be interleaved.
		switch h.Op {
		case wsframe.OpContinuation:
			if s.op == 0 {
				return l.fail(s, wsframe.ErrUnexpectedContinuation)
			}
		default:
			if s.op != 0 {
				return l.fail(s, wsframe.ErrExpectedContinuation)
			}
			s.op, s.msgLen, s.relayed = h.Op, 0, false
			s.utf8.Reset()
		}
		if !l.allowFrame(s, now) {
			l.g.metrics.reject("frame_rate")
			return l.fail(s, errRateLimit)
		}
		// Compare before adding: a 64-bit frame length could wrap the sum.
		if h.Length > int64(l.g.cfg.MaxMessage)-int64(s.msgLen) {
			return l.fail(s, wsframe.ErrTooBig)
		}
		s.msgLen += uint32(h.Length)
		s.fin, s.mask, s.maskPos, s.remaining = h.Fin, h.Mask, 0, uint32(h.Length)
		_, _ = c.Discard(hn)
		if h.Length == 0 && h.Fin {
			if act := l.relayChunk(s, nil, true); act != gnet.None {
				return act
			}
		}
	}
	if s.state == stClosed {
		return gnet.Close
	}
	return gnet.None
}

// relayChunk validates one unmasked piece of a data message and relays it to
// the backend as a wire Message fragment. last marks the end of the message.
func (l *loop) relayChunk(s *session, p []byte, last bool) gnet.Action {
	op := s.op
	if last {
		s.op = 0
	}
	if s.state != stOpen {
		return gnet.None // closing: read and drop until the client's close frame
	}
	// RFC 6455 8.1: text must be UTF-8; a fragment may end inside a code
	// point, so the check is streaming and completes at the final fragment.
	if op == wsframe.OpText && (!s.utf8.Feed(p) || last && !s.utf8.Complete()) {
		return l.fail(s, wsframe.ErrInvalidUTF8)
	}
	var flags uint8
	if op == wsframe.OpBinary {
		flags |= wire.FlagBinary
	}
	if s.relayed {
		flags |= wire.FlagContinuation
	}
	if !last {
		flags |= wire.FlagMore
	}
	s.relayed = true
	l.stats.in(len(p), last)
	if last {
		if l.probeCnt++; l.probeCnt%probeEvery == 0 && l.probe == nil {
			l.probe, l.probeAt = s, l.g.elapsed()
		}
	}
	if s.link.backlog() > l.g.cfg.MaxLinkBacklog {
		// The backend does not keep up: shed this sender rather than
		// buffer without bound.
		return l.fail(s, errBackendOverloaded)
	}
	s.link.writeFrame(wire.TypeMessage, flags, s.id, p)
	return gnet.None
}

// control handles a complete, unmasked control frame from the client.
func (l *loop) control(s *session, op wsframe.OpCode, payload []byte) gnet.Action {
	switch op {
	case wsframe.OpPing:
		// RFC 6455 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST
		// send a Pong frame in response ... with identical Application data."
		if s.state == stOpen {
			l.writeClient(s, true, wsframe.OpPong, payload)
		}
	case wsframe.OpPong:
		// Unsolicited pongs are allowed and ignored (5.5.3).
	case wsframe.OpClose:
		code, reason, err := wsframe.ParseClosePayload(payload)
		if err != nil {
			return l.fail(s, err)
		}
		if s.state == stClosing {
			// The client answered our close: the handshake is complete.
			s.state = stClosed
			return gnet.Close
		}
		if s.state == stClientClosed {
			return gnet.None // a second close while the first is answered: ignored
		}
		// RFC 6455 5.5.1: "If an endpoint receives a Close frame and did not
		// previously send a Close frame, the endpoint MUST send a Close frame
		// in response ... typically echoing the status code it received."
		echo := code
		if code == wsframe.CloseNoStatus {
			echo = 0
		}
		if k := s.link; k != nil && k.closeAck {
			// As a transparent proxy would: the backend learns of the close
			// first, and the replies it already sent reach the client before
			// the gateway's close frame (finishClientClose).
			k.write(wire.AppendClose(l.out[:0], s.id, code, reason))
			s.state, s.closeCode = stClientClosed, echo
			s.deadline = l.g.deadline(l.g.cfg.CloseTimeout)
			l.timed[s] = struct{}{}
			return gnet.None
		}
		_, _ = s.conn.Write(wsframe.AppendClose(l.out[:0], echo, ""))
		l.detach(s, code, reason)
		s.state = stClosed
		return gnet.Close
	}
	return gnet.None
}

// finishClientClose answers the close of a client in stClientClosed once
// the backend acknowledged it (or did not in time, or its link is gone).
func (l *loop) finishClientClose(s *session) {
	if s.state != stClientClosed {
		return
	}
	delete(l.timed, s)
	if s.awaiting101() { // it closed before its 101 came: it never was a WebSocket
		l.refuseUpgrade(s.up, errUpstreamUnavailable)
		return
	}
	_, _ = s.conn.Write(wsframe.AppendClose(l.out[:0], s.closeCode, ""))
	l.unlink(s) // the backend was told already
	s.state = stClosed
	_ = s.conn.Close()
}

// fail closes s for a protocol error: a close frame with the error's code,
// the backend told, the connection closed once the frame is flushed.
func (l *loop) fail(s *session, err error) gnet.Action {
	code, reason := uint16(wsframe.CloseProtocolError), err.Error()
	if e, ok := err.(*wsframe.Error); ok {
		code, reason = e.Code, e.Reason
	}
	if s.awaiting101() {
		l.refuseUpgrade(s.up, &wsframe.Error{Code: code, Reason: reason})
		return gnet.None
	}
	l.g.metrics.protocolClose(code)
	if s.state == stOpen {
		_, _ = s.conn.Write(wsframe.AppendClose(l.out[:0], code, reason))
	}
	l.detach(s, code, []byte(reason))
	s.state = stClosed
	return gnet.Close
}

// closeSession starts a server-side close of s with code and reason. With
// wait, the connection stays until the client answers or CloseTimeout passes;
// without, it closes as soon as the close frame is flushed.
// The backend is told unless it asked for the close itself (fromBackend).
func (l *loop) closeSession(s *session, code uint16, reason string, fromBackend bool) {
	if s.state == stMigrating {
		// Its service closed it before the handover, or it is slow, or the
		// gateway stops: the move ends here, on the old node.
		l.abortMigration(s)
	}
	if s.awaiting101() {
		l.refuseUpgrade(s.up, &wsframe.Error{Code: code, Reason: reason}) // not a WebSocket yet: an HTTP answer
		return
	}
	if s.state != stOpen {
		return
	}
	_, _ = s.conn.Write(wsframe.AppendClose(l.out[:0], code, reason))
	l.g.metrics.closeSent(code)
	if s.state != stOpen {
		return // the write failed: gnet closed the conn, and OnClose ran inside Write
	}
	if fromBackend {
		l.unlink(s)
	} else {
		l.detach(s, code, []byte(reason))
	}
	s.state = stClosing
	s.deadline = l.g.deadline(l.g.cfg.CloseTimeout)
	l.timed[s] = struct{}{}
}

// detach tells the backend (or plain upstream) that s closed (code,
// reason) and unlinks it.
func (l *loop) detach(s *session, code uint16, reason []byte) {
	if s.state == stOpen {
		if s.link != nil {
			s.link.write(wire.AppendClose(l.out[:0], s.id, code, reason))
		} else if s.up != nil {
			s.up.sendClose(code, reason, s.remaining > 0)
		}
	}
	l.unlink(s)
}

// node is the id of the node s is routed to, "" when detached.
func (s *session) node() string {
	switch {
	case s.link != nil:
		return s.link.node
	case s.up != nil:
		return s.up.node
	}
	return ""
}

// unlink removes s from its link (or plain upstream, whose connection
// closes) and from routing; s stays in l.sessions (for the close
// handshake) until its conn closes.
func (l *loop) unlink(s *session) {
	node := s.node()
	k, u := s.link, s.up
	switch {
	case u != nil:
		s.up = nil
		u.close()
		u.clients.Add(-1)
	case k != nil:
		// s leaves the link before the link may retire: a retiring link
		// closes the sessions still on it, and s (being closed by the
		// caller already) must not get a second close frame.
		s.link = nil
		k.sessions--
		k.clients.Add(-1)
	default:
		l.removeKey(s) // an orphan (migrate.go): off its link already, still listed by key
		return
	}
	l.g.presence.note(l, s, node, false)
	l.removeKey(s)
	if k != nil {
		k.maybeRetire()
	}
}

// onClose forgets s; its connection is gone.
func (l *loop) onClose(s *session) {
	delete(l.timed, s)
	if s.state == stMigrating {
		l.abortMigration(s) // open again on its old node (if any), which detach tells
	}
	delete(l.opens, s)
	if s.id == 0 {
		// Never registered (ids start at 1): still in the handshake, or
		// refused (4xx/5xx, timeout) before it was counted.
		return
	}
	l.stopLimits(s)
	if s.slow {
		l.g.releaseMemory()
	}
	if s.state == stClientClosed {
		l.unlink(s) // the backend knows already
	}
	// An abrupt close: RFC 6455 7.1.5 "the WebSocket Connection Close Code
	// is considered to be 1006".
	l.detach(s, wsframe.CloseAbnormal, nil)
	s.state = stClosed
	delete(l.sessions, s.id)
	l.g.clients.Add(-1)
}
