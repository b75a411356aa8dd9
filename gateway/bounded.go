package gateway

import (
	"sync/atomic"

	"github.com/wsgate/wsgate/internal/ring"
)

// Bounded loads (Config.BalanceFactor; docs/operations.md, "Bounded
// loads"): a keyed client goes to the first backend on its key's ring walk
// that holds fewer than ring.Capacity of this gateway's clients. The load
// view is this gateway's own per-node counters (the atomics links share),
// so the choice needs no lock, no allocation and no network on the event
// loop; each gateway bounds its own clients, as each HAProxy process does
// with hash-balance-factor.
//
// A place is reserved when the walk picks a node (compare-and-swap on the
// node's counter, so the loops' concurrent upgrades cannot overfill it);
// the upgrade then either counts the client (the reservation is its count)
// or gives the place back.

// loadView is a ring with this gateway's client counter of each member, in
// the ring's member order. It is immutable; rebuild replaces it with the
// ring.
type loadView struct {
	r      *ring.Ring
	counts []*atomic.Int64
}

// storeLoads publishes r's load view. Called by rebuild, before r itself.
func (g *Gateway) storeLoads(r *ring.Ring) {
	if g.cfg.BalanceFactor == 0 {
		return
	}
	v := &loadView{r: r, counts: make([]*atomic.Int64, r.Len())}
	for i := range v.counts {
		v.counts[i] = g.nodeClients(r.MemberAt(i).ID)
	}
	g.loads.Store(v)
}

// routeBounded picks key's node under bounded loads and reserves a place on
// it. res is the reserved counter, nil when every node was full (the key's
// ring owner is returned then, unreserved) or bounded loads are off (nil
// view). It does not allocate.
func (g *Gateway) routeBounded(key []byte) (m *ring.Member, res *atomic.Int64) {
	v := g.loads.Load()
	if v == nil {
		return g.ring.Load().Lookup(key), nil
	}
	total := g.clients.Load() + g.reserved.Load() + 1
	m, _ = v.r.LookupBounded(key, func(i int) bool {
		c, limit := v.counts[i], v.r.Capacity(i, g.cfg.BalanceFactor, total)
		for {
			n := c.Load()
			if n >= limit {
				return false
			}
			if c.CompareAndSwap(n, n+1) {
				res = c
				return true
			}
		}
	})
	if res != nil {
		g.reserved.Add(1)
	}
	return m, res
}

// release gives back a place routeBounded reserved for an upgrade that
// did not complete.
func (g *Gateway) release(res *atomic.Int64) {
	if res != nil {
		res.Add(-1)
		g.reserved.Add(-1)
	}
}

// nextKeyless is the node for a keyless client: round robin over r's
// members; nil on an empty ring.
func (g *Gateway) nextKeyless(r *ring.Ring) *ring.Member {
	if r.Len() == 0 {
		return nil
	}
	return r.MemberAt(int(g.rr.Add(1) % uint64(r.Len())))
}

// ownerNow is the node a new client of key would get now: the ring owner,
// or with bounded loads the first node on the key's walk with room. Nil on
// an empty ring.
func (g *Gateway) ownerNow(key string) *ring.Member {
	v := g.loads.Load()
	if g.cfg.BalanceFactor == 0 || v == nil {
		return g.ring.Load().LookupString(key)
	}
	total := g.clients.Load() + g.reserved.Load() + 1
	m, _ := v.r.LookupBoundedString(key, func(i int) bool {
		return v.counts[i].Load() < v.r.Capacity(i, g.cfg.BalanceFactor, total)
	})
	return m
}

// displaced reports whether s, placed under bounded loads, must leave its
// node when the ring changes from base to r (ring.Displaced: its node left,
// or a node new to its key's walk comes before it; not for loads).
func (l *loop) displaced(s *session, base, r *ring.Ring) bool {
	node := s.node()
	switch {
	case node == "":
		return false
	case s.gone(r):
		return true
	case s.keyless:
		return r.Member(node) == nil
	}
	return ring.Displaced(base, r, s.key, node)
}

// scanBounded lists the sessions the change from prev to r displaces, after
// the victims of earlier changes still waiting (each victim is checked at
// its turn against the ring it was listed under: a client whose change was
// undone meanwhile stays).
//
// A client placed between r's publication and this scan was routed on r
// and is checked as if placed on prev: it moves only if it was passed on
// to a node behind a full one that r brought in.
func (l *loop) scanBounded(prev, r *ring.Ring) {
	var listed map[*session]bool
	keep := 0
	for i, s := range l.victims {
		if s.state == stOpen {
			l.victims[keep], l.bases[keep] = s, l.bases[i]
			keep++
		}
	}
	clear(l.victims[keep:])
	clear(l.bases[keep:])
	l.victims, l.bases = l.victims[:keep], l.bases[:keep]
	if keep > 0 {
		listed = make(map[*session]bool, keep)
		for _, s := range l.victims {
			listed[s] = true
		}
	}
	for _, s := range l.sessions {
		if s.state == stOpen && !listed[s] && l.displaced(s, prev, r) {
			l.victims = append(l.victims, s)
			l.bases = append(l.bases, prev)
		}
	}
	l.pending.Store(int64(len(l.victims)))
}
