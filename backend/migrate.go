package backend

import (
	"time"

	"github.com/wsgate/wsgate/internal/wire"
)

// Migrator is an optional interface of a Handler: a handler that
// implements it keeps its sessions' state when the gateway moves them to
// another node without closing the client (wsgate gateway --rebalance
// migrate; docs/protocol.md 4.10). A handler without it still has its
// sessions migrated: the new node gets OnOpen, with no state.
type Migrator interface {
	// Export returns s's state for its new node: at most wire.MaxState
	// (64 KiB) bytes, nil for none. It runs on the link's reader goroutine
	// after s's last OnMessage on this node, and OnClose(s, 1012, "session
	// migrated") follows; nothing sent to s after Export reaches the client
	// (Send fails with ErrSessionClosed). A larger state is dropped (and
	// logged): the new node then resumes s with lost set.
	Export(s *Session) []byte
	// Resume runs on the session's new node in place of OnOpen, with the
	// state Export returned on the old one (a copy the handler may keep).
	// lost: the old node was gone (crashed) or could not export, and state
	// is nil; the session starts fresh.
	Resume(s *Session, state []byte, lost bool)
}

// CloseMigrated is the code of the OnClose a node's handler gets for a
// session it handed over to another node; the reason is "session migrated".
const CloseMigrated = 1012

// migrates reports whether the gateway of l speaks migration (FlagMigrate
// in its Hello; ours always has it).
func (l *link) migrates() bool { return l.peer.Flags&wire.FlagMigrate != 0 }

// handleResume registers a session that moves here from another node (an
// Open with wire.FlagResume) and answers Ready. The handler hears of it
// only when its State arrives (handleState); until then it is in the
// link's table only (SendToKey does not reach it: its old node may still
// be delivering), and a push to its key that reaches nobody is answered
// "moving" so that the gateway tries it again. Reader goroutine.
func (l *link) handleResume(s *Session) {
	l.smu.Lock()
	s.arriving = true
	l.sessions[s.id] = s
	l.smu.Unlock()
	n := l.n
	n.mu.Lock()
	n.sessions++ // a draining node waits for it too
	n.markMoving(s)
	n.mu.Unlock()
	l.queue(wire.AppendFrame(nil, wire.TypeReady, 0, s.id, nil))
}

// movingFor is how long a key counts as moving after one of its sessions
// began to arrive here or was handed over from here: pushes to it that
// reach nobody meanwhile are answered with wire.FlagMoving.
const movingFor = 10 * time.Second

// markMoving marks s's key as moving (for movingFor). Called with n.mu held.
func (n *Node) markMoving(s *Session) {
	if s.keyless {
		return
	}
	now := time.Now()
	n.moving[s.Key()] = now.Add(movingFor)
	if len(n.moving) > 64 && now.Sub(n.movingSwept) > time.Second {
		n.movingSwept = now
		for k, until := range n.moving {
			if now.After(until) {
				delete(n.moving, k)
			}
		}
	}
}

// isMoving reports whether key had a session arrive here or leave from
// here in the last movingFor.
func (n *Node) isMoving(key string) bool {
	n.mu.RLock()
	until, ok := n.moving[key]
	n.mu.RUnlock()
	return ok && time.Now().Before(until)
}

// handleState completes a resumed session: the handler's Resume (or
// OnOpen) with the state its old node exported. Reader goroutine.
func (l *link) handleState(h wire.Header, body []byte) error {
	if h.Session == 0 || h.Flags&^wire.FlagLost != 0 {
		return protoErr("bad State header")
	}
	if len(body) > wire.MaxState {
		return protoErr("State of %d bytes, over %d", len(body), wire.MaxState)
	}
	s := l.lookup(h.Session)
	if s == nil {
		return nil // the client left meanwhile (the gateway's Close came first)
	}
	if !s.arriving {
		return protoErr("State for session %d, which is not resuming", h.Session)
	}
	l.n.mu.Lock()
	l.smu.Lock()
	s.arriving = false
	l.smu.Unlock()
	l.n.index(s) // counted since its Open (handleResume)
	l.n.mu.Unlock()
	lost := h.Flags&wire.FlagLost != 0
	if !s.begin() {
		return nil
	}
	if m, ok := l.n.h.(Migrator); ok {
		var state []byte
		if !lost {
			state = append([]byte{}, body...) // body aliases the read buffer
		}
		m.Resume(s, state, lost)
	} else {
		l.n.h.OnOpen(s)
	}
	l.finish(s)
	return nil
}

// handleHandover hands s over to the gateway: the handler's Export, a
// State frame queued after every frame already queued for s, then s ends
// here (OnClose CloseMigrated). Reader goroutine.
func (l *link) handleHandover(h wire.Header) error {
	if h.Session == 0 || h.Flags != 0 {
		return protoErr("bad Handover header")
	}
	s := l.lookup(h.Session)
	if s == nil {
		return nil // ended meanwhile: our Close is on its way
	}
	if s.arriving || s.inMsg {
		return protoErr("Handover of session %d while it resumes or a message is in progress", h.Session)
	}
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return nil // the service closed it: its Close is on its way
	}
	s.ended = true
	s.mu.Unlock()
	var state []byte
	var flags uint8
	if m, ok := l.n.h.(Migrator); ok {
		state = m.Export(s)
		if len(state) > wire.MaxState {
			l.log.Error("session state over the limit, not handed over: the new node starts it fresh",
				"session", s.id, "key", s.Key(), "bytes", len(state), "limit", wire.MaxState)
			state, flags = nil, wire.FlagLost
		}
	}
	// One step under Node.mu (which SendToKey and Broadcast hold while they
	// queue): the session leaves the key's list, its key is marked moving
	// and its State is queued. A push either counts it and queues its
	// SendKey before the State (the gateway delivers it), or finds it gone
	// and answers Moving; a draining node's last frames follow the State.
	n := l.n
	n.mu.Lock()
	n.markMoving(s)
	n.unindex(s)
	n.sessions--
	l.unlist(s)
	l.wmu.Lock()
	if !s.outClosed && !l.dead {
		l.wbuf = wire.AppendFrame(l.wbuf, wire.TypeState, flags, s.id, state)
		l.wake()
	}
	s.outClosed = true
	l.wmu.Unlock()
	n.checkDrained()
	n.mu.Unlock()
	l.setRbuf(s, nil)
	n.h.OnClose(s, CloseMigrated, "session migrated")
	return nil
}

// queue appends a whole frame to the link's output unless the link is dead.
func (l *link) queue(frame []byte) {
	l.wmu.Lock()
	if !l.dead {
		l.wbuf = append(l.wbuf, frame...)
		l.wake()
	}
	l.wmu.Unlock()
}
