package backend

import (
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/wsgate/wsgate/internal/wire"
)

// Session is one client WebSocket connection relayed by a gateway link.
// Session ids are assigned by the gateway and unique per link only. All
// methods are safe for concurrent use.
//
// Every idle client costs a Session on its node, so the fields are ordered
// to fill the words they share: the struct stays in the 128-byte size
// class (TestSessionSize). Fields guarded by different locks may share a
// word; each is its own memory location.
type Session struct {
	l       *link
	id      uint32
	keyless bool

	// arriving: the session moves here (Open with wire.FlagResume) and its
	// State has not come; the handler has not heard of it. Written by the
	// reader goroutine under l.smu (Broadcast reads it there).
	arriving bool

	// Reassembly state, owned by the link's reader goroutine.
	rbin  bool   // the message in progress is binary
	inMsg bool   // a first fragment arrived and the last did not yet
	rbuf  []byte // fragments of the message in progress

	// strs holds the client's key, address and target in one string (one
	// allocation and one header instead of three): the key is
	// strs[:keyLen], the address the next addrLen bytes, the target the
	// rest. Set once, before the session is shared.
	strs   string
	claims []byte // verified JWT claims from the gateway (Open with wire.FlagClaims), or nil

	// nextKey: the next session of the same key hash on this node
	// (Node.keys), guarded by Node.mu.
	nextKey *Session

	// mu guards the handler-dispatch state below (not outClosed).
	mu        sync.Mutex
	ended     bool // OnClose is delivered or owed; no other handler call may start
	inHandler bool // the reader goroutine is inside a handler call for this session
	pending   bool // Session.Close happened during a handler call: OnClose owed after it

	// outClosed (guarded by l.wmu): a Close frame for this session was
	// queued or the session ended; no more frames may be queued for it.
	outClosed bool

	pCode   uint16 // pending OnClose code
	keyLen  uint16 // of strs; the wire caps each string at 0xFFFF bytes
	addrLen uint16
	pReason string // pending OnClose reason
}

// setStrings sets the session's key, client address and target, copied
// (they may alias a read buffer) into one allocation.
func (s *Session) setStrings(key, addr, target []byte) {
	var b strings.Builder
	b.Grow(len(key) + len(addr) + len(target))
	b.Write(key)
	b.Write(addr)
	b.Write(target)
	s.strs, s.keyLen, s.addrLen = b.String(), uint16(len(key)), uint16(len(addr))
}

// ID returns the session id the gateway assigned (unique per link).
func (s *Session) ID() uint32 { return s.id }

// Key returns the routing key (user id) the client connected with; for a
// keyless session it is the gateway's routing key, usually "".
func (s *Session) Key() string { return s.strs[:s.keyLen] }

// Keyless reports whether the client connected without a key. Keyless
// sessions are not reached by Node.SendToKey or pushes.
func (s *Session) Keyless() bool { return s.keyless }

// RemoteAddr returns the client's address as the gateway saw it.
func (s *Session) RemoteAddr() string { return s.strs[s.keyLen : s.keyLen+s.addrLen] }

// Target returns the client's request path and query, e.g. "/ws/u1?x=1".
func (s *Session) Target() string { return s.strs[s.keyLen+s.addrLen:] }

// Claims returns the client's verified JWT claims (the token's payload,
// JSON, as the gateway verified it), or nil when the gateway does not
// authenticate clients or the client is anonymous. The gateway routes by
// one claim (sub by default), so Key() equals it for authenticated clients.
// The claims are as trustworthy as the link they came over: with a cluster
// secret (Config.ClusterSecret) only a gateway can have sent them.
func (s *Session) Claims() []byte { return s.claims }

// Node returns the node the session belongs to.
func (s *Session) Node() *Node { return s.l.n }

// Send queues a message to the client, split into Message fragments of at
// most Config.FragmentSize bytes; data is copied before Send returns. Safe
// from any goroutine; messages queued by one goroutine arrive in order.
// Errors: ErrSessionClosed after the session ended or was closed,
// ErrBufferFull when the link is backed up.
func (s *Session) Send(binary bool, data []byte) error {
	return s.l.sendMessage(s, binary, data)
}

// Close closes the session: the gateway sends the client a close frame
// with code and reason, and OnClose(code, reason) follows (after the
// current handler call if one of this session's handlers is running). No
// frame is sent for the session afterwards. Errors: ErrCloseCode,
// ErrCloseReason, ErrSessionClosed if it was already closed.
func (s *Session) Close(code uint16, reason string) error {
	if !validCloseCode(code) {
		return ErrCloseCode
	}
	if len(reason) > wire.MaxCloseReason || !utf8.ValidString(reason) {
		return ErrCloseReason
	}
	l := s.l
	l.wmu.Lock()
	if s.outClosed || l.dead {
		l.wmu.Unlock()
		return ErrSessionClosed
	}
	s.outClosed = true
	l.wbuf = wire.AppendClose(l.wbuf, s.id, code, []byte(reason))
	l.wake()
	l.wmu.Unlock()
	l.endLocal(s, code, reason)
	return nil
}

// validCloseCode reports whether code may be sent in a WebSocket close
// frame (RFC 6455 7.4).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// begin marks the start of a handler call for s on the reader goroutine.
// It returns false if s has ended (the call must be skipped).
func (s *Session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.inHandler = true
	return true
}

// finish marks the end of a handler call begun by begin and delivers an
// OnClose owed by a Session.Close made meanwhile.
func (l *link) finish(s *Session) {
	s.mu.Lock()
	s.inHandler = false
	pending, code, reason := s.pending, s.pCode, s.pReason
	s.pending = false
	s.mu.Unlock()
	if pending {
		l.setRbuf(s, nil)
		s.inMsg = false
		l.remove(s)
		l.n.h.OnClose(s, code, reason)
	}
}

// endLocal ends s after the service closed it (any goroutine). OnClose
// runs after the running handler call of s if there is one (on the
// reader), else on a new goroutine.
func (l *link) endLocal(s *Session, code uint16, reason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if s.inHandler {
		s.pending, s.pCode, s.pReason = true, code, reason
		s.mu.Unlock()
		return
	}
	// Counted under s.mu: the reader's teardown takes s.mu after this, so
	// its wg.Done cannot have happened yet.
	l.n.wg.Add(1)
	s.mu.Unlock()
	l.remove(s)
	go func() {
		defer l.n.wg.Done()
		l.n.h.OnClose(s, code, reason)
	}()
}

// endRemote ends s on the reader goroutine (gateway Close, message too big,
// link teardown) and calls OnClose(code, reason). A non-zero sendCode
// queues a Close frame (sendCode, sendReason) for s first, after every
// frame already queued for it: it tells the gateway to close the client, or
// acknowledges the gateway's Close (FlagCloseAck). No Close is queued if
// one was already (the service closed s) or the link is dead.
func (l *link) endRemote(s *Session, code uint16, reason string, sendCode uint16, sendReason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	if s.arriving {
		// The handler never heard of it: it ends without a word.
		l.smu.Lock()
		s.arriving = false
		l.smu.Unlock()
		l.wmu.Lock()
		s.outClosed = true
		l.wmu.Unlock()
		l.remove(s) // counted, not in the key's list (unindex finds nothing)
		return
	}
	l.wmu.Lock()
	if sendCode != 0 && !s.outClosed && !l.dead {
		l.wbuf = wire.AppendClose(l.wbuf, s.id, sendCode, []byte(sendReason))
		l.wake()
	}
	s.outClosed = true
	l.wmu.Unlock()
	l.setRbuf(s, nil)
	s.inMsg = false
	l.remove(s)
	l.n.h.OnClose(s, code, reason)
}

// remove takes s out of its link's table and the node's index.
func (l *link) remove(s *Session) {
	l.unlist(s)
	l.n.removeSession(s)
}

// unlist takes s out of its link's table.
func (l *link) unlist(s *Session) {
	l.smu.Lock()
	if l.sessions[s.id] == s {
		delete(l.sessions, s.id)
	}
	l.smu.Unlock()
}
