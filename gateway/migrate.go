package gateway

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wire"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Migration (--rebalance migrate; docs/protocol.md 4.10): a client whose
// owner changes keeps its WebSocket, and its session moves over the links.
//
//	gateway -> new node   Open(id, FlagResume)   the session is registered there (pushes reach it)
//	new node -> gateway   Ready(id)
//	gateway -> old node   Handover(id)
//	old node -> gateway   State(id, state)       after its last reply; the session ended there
//	gateway -> new node   State(id, state)       the handler resumes it; the client's held input follows
//
// Meanwhile the client's input is not read (gnet keeps it, bounded by
// maxHeld), so nothing it sends overtakes the handover, and replies from
// the old node and pushes from both nodes still reach it. The new node is
// asked first so that the session always has a node a push reaches. When
// the old node's link dies (a crash), its sessions become orphans: they
// wait for a ring without that node and resume on their new owner with
// FlagLost. A migration that cannot proceed closes the client as the
// disconnect mode does (1012, or 1011 when its node is gone).
//
// Invariant: everything here runs on the session's loop.

// Migration phases.
const (
	mgLink   uint8 = iota // the new node's link is not up: its Hello tells whether it can migrate
	mgReady               // resume Open sent; waiting for the new node's Ready
	mgState               // Handover sent; waiting for the old node's State
	mgOrphan              // the old node's link died; waiting for a ring with another owner
	mgPark                // the new node's link died after the Handover: waiting for the old node's State, to take it elsewhere
)

// maxHeld bounds the client input held while its session migrates; a
// client that sends more meanwhile is closed with 1013.
const maxHeld = 1 << 20

// migration is one session's move, in loop.migrations while it lasts.
type migration struct {
	from     *link // the old node's link; nil once it is gone (the state is lost)
	to       *link // the new node's link; nil for an orphan
	phase    uint8
	started  int64      // Gateway.elapsed when the client's input was first held
	base     *ring.Ring // the ring the new node was chosen on (bounded loads: a later change is checked against it)
	kept     []byte     // mgPark: the state the old node handed over, for the next new node
	held     int        // the client's input held, as last seen (counted in Gateway.held)
	keptOK   bool       // kept holds a state (else the session resumes with FlagLost)
	deadline int64      // Gateway.elapsed: the current wait ends here
}

// migrates reports whether k's backend speaks migration.
func (k *link) migrates() bool { return k.hello && k.migrate }

var errHeldTooMuch = &wsframe.Error{Code: wsframe.CloseTryAgainLater, Reason: "too much input while the session moves"}

// migrateTo starts moving s to m. It reports false when s cannot migrate
// now (a plain upstream's client, a node that does not speak migration, a
// message half relayed); the caller then closes s (or tries later).
func (l *loop) migrateTo(s *session, m *ring.Member) bool {
	from := s.link
	if from == nil || !from.migrates() || m == nil || m.ID == from.node {
		return false
	}
	to := l.moveTarget(m)
	if to == nil {
		return false
	}
	s.state = stMigrating
	mg := &migration{from: from, started: l.g.elapsed(), deadline: l.g.deadline(l.g.cfg.MigrateTimeout)}
	l.migrations[s] = mg
	l.aim(s, mg, to)
	l.g.migrating.Add(1)
	return true
}

// moveTarget is the link a session can move to on m; nil when there is
// none (no node, a plain upstream, a node marked down on this loop, or one
// whose Hello said it does not speak migration).
func (l *loop) moveTarget(m *ring.Member) *link {
	if m == nil || membership.IsPlainAddr(m.Addr) || l.isDown(m.ID) {
		return nil
	}
	if to := l.linkTo(m); !to.hello || to.migrate {
		return to
	}
	return nil
}

// aim points mg at to and asks it for s: now, or once its link says Hello.
func (l *loop) aim(s *session, mg *migration, to *link) {
	mg.to, mg.base = to, l.g.ring.Load()
	to.sessions++ // keeps a retiring link open for s
	if to.hello {
		l.sendResume(s, mg)
	} else {
		mg.phase = mgLink
	}
}

// sendResume sends the resume Open: the session's original Open, flagged.
func (l *loop) sendResume(s *session, mg *migration) {
	flags := wire.FlagResume
	if s.keyless {
		flags |= wire.FlagKeyless
	}
	mg.to.writeFrame(wire.TypeOpen, flags, s.id, []byte(l.opens[s]))
	mg.phase = mgReady
	mg.deadline = l.g.deadline(l.g.cfg.MigrateTimeout)
}

// linkHello moves on the migrations that waited for k's Hello.
func (l *loop) linkHello(k *link) {
	for s, mg := range l.migrations {
		if mg.to == k && mg.phase == mgLink {
			if k.migrate {
				l.sendResume(s, mg)
			} else {
				l.failMigration(s, mg)
			}
		}
	}
}

// migrationReady handles the new node's Ready for session id.
func (l *loop) migrationReady(k *link, id uint32) {
	s := l.sessions[id]
	mg := l.migrations[s]
	if mg == nil || mg.to != k || mg.phase != mgReady {
		return // the migration ended meanwhile
	}
	if mg.from == nil {
		l.resume(s, mg, mg.kept, !mg.keptOK)
		return
	}
	mg.from.writeFrame(wire.TypeHandover, 0, s.id, nil)
	mg.phase = mgState
	mg.deadline = l.g.deadline(l.g.cfg.MigrateTimeout)
}

// migrationState handles the old node's State for session id.
func (l *loop) migrationState(k *link, h wire.Header, state []byte) error {
	if len(state) > wire.MaxState || h.Flags&^wire.FlagLost != 0 {
		return errors.New("bad State frame from backend")
	}
	s := l.sessions[h.Session]
	mg := l.migrations[s]
	if mg == nil || mg.from != k || mg.phase != mgState && mg.phase != mgPark {
		return nil // the migration ended meanwhile (timed out: resumed without it)
	}
	if mg.phase == mgPark {
		// Its new node died meanwhile: the state waits here for another.
		mg.kept, mg.keptOK = append([]byte(nil), state...), h.Flags&wire.FlagLost == 0
		l.unpark(s, mg)
		return nil
	}
	l.resume(s, mg, state, h.Flags&wire.FlagLost != 0)
	return nil
}

// unpark turns a parked migration, whose old node has answered (or will
// not), into an orphan that takes the next owner the ring gives it.
func (l *loop) unpark(s *session, mg *migration) {
	mg.from = nil
	l.leaveLink(s)
	mg.phase, mg.deadline = mgOrphan, l.orphanDeadline()
	l.adopt(s, mg)
}

// resume completes a migration: the state to the new node, s moved onto
// its link, and the client's held input read again.
func (l *loop) resume(s *session, mg *migration, state []byte, lost bool) {
	var flags uint8
	result := "ok"
	if lost {
		flags, state, result = wire.FlagLost, nil, "lost"
	}
	to := mg.to
	to.writeFrame(wire.TypeState, flags, s.id, state)
	l.forget(s, mg) // before leaveLink: a retiring link's close looks at the migrations
	if mg.from != nil {
		l.leaveLink(s)
	}
	s.link = to
	to.clients.Add(1) // to.sessions counted s since the migration began
	l.g.presence.note(l, s, to.node, true)
	s.state = stOpen
	l.g.metrics.migrated(result, time.Duration(l.g.elapsed()-mg.started))
	if r := l.g.ring.Load(); r != mg.base && l.changedSince(s, mg.base, r) {
		l.requeue(s, mg.base) // the ring changed again meanwhile
	}
	_ = s.conn.Wake(nil) // its held input: OnTraffic runs again
}

// forget ends s's migration record and gives back the input it held.
func (l *loop) forget(s *session, mg *migration) {
	delete(l.migrations, s)
	if mg.held != 0 {
		l.g.heldInput.Add(-int64(mg.held))
		mg.held = 0
	}
}

// leaveLink takes s off its link (the old node's) without telling the
// node, which already knows (it handed s over, or it is gone).
func (l *loop) leaveLink(s *session) {
	k := s.link
	s.link = nil
	k.sessions--
	k.clients.Add(-1)
	l.g.presence.note(l, s, k.node, false)
	k.maybeRetire()
}

// abortMigration ends s's migration without moving it: the new node
// forgets the arriving session, s is open again on its old link (or on
// none, for an orphan) and its caller closes it or lets it be.
func (l *loop) abortMigration(s *session) {
	mg := l.migrations[s]
	if mg == nil {
		return
	}
	l.forget(s, mg)
	s.state = stOpen
	if to := mg.to; to != nil {
		if mg.phase >= mgReady && mg.phase != mgOrphan {
			to.write(wire.AppendClose(l.out[:0], s.id, wsframe.CloseGoingAway, nil))
		}
		to.sessions--
		to.maybeRetire()
	}
}

// failMigration gives up on moving s: it is closed as in the disconnect
// mode, 1012 (it reconnects to its new owner), or 1011 when its node is
// gone.
func (l *loop) failMigration(s *session, mg *migration) {
	orphan := mg.from == nil
	l.abortMigration(s)
	l.g.metrics.migrated("failed", 0)
	if orphan {
		l.closeSession(s, wsframe.CloseInternalError, "backend link lost", true)
		return
	}
	l.closeSession(s, wsframe.CloseServiceRestart, "rebalance", false)
}

// holdInput is onTraffic for a migrating client: its input stays in gnet's
// buffer until the session resumes (resume wakes the connection).
//
// Bounds: maxHeld per client, and with an outbound budget
// (--max-outbound-memory) a quarter of it for all the gateway's migrating
// clients; the client over either is closed with 1013.
func (l *loop) holdInput(s *session, c gnet.Conn) gnet.Action {
	n := c.InboundBuffered()
	total := int64(0)
	if mg := l.migrations[s]; mg != nil {
		total = l.g.heldInput.Add(int64(n - mg.held))
		mg.held = n
	}
	if budget := l.g.cfg.MaxOutboundMemory / 4; n <= maxHeld && (budget <= 0 || total <= budget) {
		return gnet.None
	}
	l.abortMigration(s)
	l.g.metrics.migrated("failed", 0)
	return l.fail(s, errHeldTooMuch)
}

// orphan keeps s, whose link k died, for a ring without k's node: it
// resumes there without its state. Only sessions of a link that was up.
func (l *loop) orphan(s *session, k *link) {
	l.leaveLink(s)
	mg := &migration{phase: mgOrphan, started: l.g.elapsed(), deadline: l.orphanDeadline()}
	s.state = stMigrating
	l.migrations[s] = mg
	l.adopt(s, mg)
}

// orphanDeadline is how long an orphan waits for a new owner: the ring
// loses its node when the control link fails too (at once for a crash,
// within 3 keepalive intervals for a hung node).
func (l *loop) orphanDeadline() int64 {
	return l.g.deadline(l.g.cfg.MigrateTimeout + wire.DeadIntervals*l.g.cfg.KeepAlive)
}

// owner is the node s would be placed on now: keyless sessions round
// robin, as at the upgrade.
func (l *loop) owner(s *session) *ring.Member {
	if s.keyless {
		return l.g.nextKeyless(l.g.ring.Load())
	}
	return l.g.ownerNow(s.key)
}

// adopt starts an orphan's resume on its owner under the current ring.
// The owner may be its old node again once that answers (a link that
// died while its node stayed: after LinkRetry, a new link is tried); it
// waits while the owner is marked down on this loop.
func (l *loop) adopt(s *session, mg *migration) {
	if to := l.moveTarget(l.owner(s)); to != nil {
		l.aim(s, mg, to)
	}
}

// adoptOrphans runs after a ring change: orphans whose key has another
// owner now move there.
func (l *loop) adoptOrphans() {
	for s, mg := range l.migrations {
		if mg.phase == mgOrphan && mg.to == nil {
			l.adopt(s, mg)
		}
	}
}

// linkLost settles the migrations that used k, whose link died. Moving to
// k: a session not yet handed over stays on its old node (and moves when
// k's node answers again or the ring changes); one handed over waits for
// its state and takes it to the next owner; an orphan waits again. Moving
// from k: the state is lost.
func (l *loop) linkLost(k *link) {
	for s, mg := range l.migrations {
		switch {
		case mg.to == k:
			mg.to = nil
			k.sessions--
			switch {
			case mg.phase == mgState:
				mg.phase = mgPark
				mg.deadline = l.g.deadline(l.g.cfg.MigrateTimeout)
			case mg.from == nil:
				mg.phase = mgOrphan
			default:
				l.forget(s, mg)
				s.state = stOpen
				l.g.metrics.migrated("failed", 0)
				l.requeue(s, mg.base)
				_ = s.conn.Wake(nil) // its held input goes to its old node
			}
		case mg.from == k:
			mg.from = nil
			l.leaveLink(s)
			switch mg.phase {
			case mgState:
				l.resume(s, mg, nil, true)
			case mgPark:
				mg.phase = mgOrphan
				l.adopt(s, mg)
			}
		}
	}
}

// sweepMigrations ends the migrations whose wait is over: an old node that
// did not answer the Handover in time is taken as gone (resume without
// state, and it is told to forget the session); any other wait fails.
// Orphans still without a node try again (their node may be back).
func (l *loop) sweepMigrations(now int64) {
	for s, mg := range l.migrations {
		if mg.deadline > now {
			if mg.phase == mgOrphan && mg.to == nil {
				l.adopt(s, mg)
			}
			continue
		}
		if mg.phase == mgState || mg.phase == mgPark {
			from := mg.from
			l.g.log.Warn("old node did not hand the session over in time: it resumes without its state",
				"node", from.node, "key", s.key)
			from.write(wire.AppendClose(l.out[:0], s.id, wsframe.CloseServiceRestart, []byte("session migrated")))
			if mg.phase == mgPark {
				l.unpark(s, mg)
			} else {
				l.resume(s, mg, nil, true)
			}
			continue
		}
		l.failMigration(s, mg)
	}
}

// isDown reports whether this loop holds off dialling node id (a dial or
// a link failed lately).
func (l *loop) isDown(id string) bool {
	_, down := l.down[id]
	return down
}

// changedSince reports whether s, placed on base, must move under r.
func (l *loop) changedSince(s *session, base, r *ring.Ring) bool {
	if l.g.cfg.BalanceFactor != 0 {
		return l.displaced(s, base, r)
	}
	return l.moved(s, r)
}

// requeue lists s as a victim of the current ring (after its migration
// ended on a ring that has changed since).
func (l *loop) requeue(s *session, base *ring.Ring) {
	l.victims = append(l.victims, s)
	if l.g.cfg.BalanceFactor != 0 {
		l.bases = append(l.bases, base)
	}
	l.pending.Store(int64(len(l.victims)))
	select {
	case l.g.kick <- struct{}{}:
	default:
	}
}
