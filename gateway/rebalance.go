package gateway

import (
	"time"

	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Rebalance: after a ring swap every loop scans its own sessions and lists
// those whose owner changed (scan); the pacer then has each loop close a few
// of them per tick (closeVictims), RebalanceRate per second in all, so the
// reconnecting clients do not stampede their new owner. A victim is checked
// again against the ring current at its turn: a client whose owner changed
// back meanwhile stays.

const paceTick = 10 * time.Millisecond

// moved reports whether s must leave its backend under r.
func (l *loop) moved(s *session, r *ring.Ring) bool {
	node := s.node()
	switch {
	case node == "":
		return false
	case s.gone(r):
		return true
	case s.keyless:
		return r.Member(node) == nil
	}
	m := r.LookupString(s.key)
	return m == nil || m.ID != node
}

// gone reports whether s's node left r or moved: a retired link, or a plain
// upstream r has no more or has at another address.
func (s *session) gone(r *ring.Ring) bool {
	if s.link != nil {
		return s.link.retired
	}
	m := r.Member(s.up.node)
	return m == nil || m.Addr != s.up.addr
}

// scan lists the loop's sessions that the change from prev to r moves and
// retires links to nodes r no longer has (or has at another address). With
// bounded loads scanBounded lists them.
func (l *loop) scan(prev, r *ring.Ring) {
	for id, k := range l.links {
		if m := r.Member(id); m == nil || m.Addr != k.addr {
			k.retired = true
			delete(l.links, id)
			k.maybeRetire()
		}
	}
	if len(l.migrations) > 0 {
		l.adoptOrphans()
	}
	if l.g.cfg.BalanceFactor != 0 {
		l.scanBounded(prev, r)
		return
	}
	l.victims = l.victims[:0]
	for _, s := range l.sessions {
		if s.state == stOpen && l.moved(s, r) {
			l.victims = append(l.victims, s)
		}
	}
	l.pending.Store(int64(len(l.victims)))
}

// closeVictims closes up to budget moved sessions and reports how many remain.
func (l *loop) closeVictims(budget int) {
	r := l.g.ring.Load()
	bounded := l.g.cfg.BalanceFactor != 0
	var later []*session // migrate: mid-message, for a later tick
	var laterBase []*ring.Ring
	for budget > 0 && len(l.victims) > 0 {
		last := len(l.victims) - 1
		s, moved := l.victims[last], false
		var base *ring.Ring
		if bounded {
			base = l.bases[last]
			moved = s.state == stOpen && l.displaced(s, base, r)
			l.bases[last] = nil
			l.bases = l.bases[:last]
		} else {
			moved = s.state == stOpen && l.moved(s, r)
		}
		l.victims[last] = nil
		l.victims = l.victims[:last]
		if !moved {
			continue
		}
		if l.g.cfg.Rebalance == RebalanceMigrate && s.link != nil {
			if s.op != 0 || s.remaining > 0 {
				// A message is half relayed to the old node: after it. It
				// costs no budget and goes to the far end of the list, so
				// that clients in mid-message never hold up the others.
				later, laterBase = append(later, s), append(laterBase, base)
				continue
			}
			m := l.owner(s)
			if m != nil && m.ID == s.link.node {
				continue // bounded loads: a node came ahead of it but is full; it stays
			}
			if m != nil && l.isDown(m.ID) {
				// Its new node failed a dial or a move just now: it stays
				// where it is served and tries again after LinkRetry.
				later, laterBase = append(later, s), append(laterBase, base)
				continue
			}
			budget--
			if l.migrateTo(s, m) {
				continue
			}
		} else {
			budget--
		}
		l.closeSession(s, wsframe.CloseServiceRestart, "rebalance", false)
		l.g.metrics.rebalanceClose()
		l.g.rebalanced.Add(1)
	}
	if len(later) > 0 {
		l.victims = append(later, l.victims...)
		if bounded {
			l.bases = append(laterBase, l.bases...)
		}
	}
	l.pending.Store(int64(len(l.victims)))
}
