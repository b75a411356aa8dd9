package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
)

// Routing: member sets from the membership source become rings; a ring
// change starts a rebalance, which the pacer carries out at RebalanceRate.

// watch applies each member set from the membership source.
func (g *Gateway) watch(sets <-chan []membership.Node, first chan struct{}) {
	defer g.wg.Done()
	once := sync.OnceFunc(func() { close(first) })
	for set := range sets {
		if err := g.apply(set); err != nil {
			g.log.Error("member set rejected; keeping the current ring", "err", err)
			continue
		}
		once()
	}
}

// apply takes a new member set from the membership source.
func (g *Gateway) apply(set []membership.Node) error {
	for _, n := range set {
		if err := n.Validate(); err != nil {
			return err
		}
	}
	g.members.Store(&set)
	g.syncControls(set)
	return g.rebuild()
}

// setDown marks c's node down locally (its control link died and could not
// be re-dialled) or up again (c's handshake completed). A down node stays a
// member but leaves this gateway's ring until its link is back. A control
// that is no longer the node's current one (the node left or moved, and
// its stop is under way) changes nothing.
func (g *Gateway) setDown(c *control, down bool) {
	id := c.node.ID
	g.nodesMu.Lock()
	if g.controls[id] != c {
		g.nodesMu.Unlock()
		return
	}
	changed := g.down[id] != down
	if down {
		g.down[id] = true
	} else {
		delete(g.down, id)
	}
	g.nodesMu.Unlock()
	if !down {
		// The node answers again: forget the loops' failed data-link
		// dials, so its clients are not refused for the rest of LinkRetry.
		for _, l := range g.loopList() {
			_ = l.exec(func() { delete(l.down, id) })
		}
	}
	if changed {
		g.log.Warn("backend marked locally "+map[bool]string{true: "down", false: "up"}[down], "node", id)
		if down {
			g.console.event("down", "node %s is unreachable (control link lost): off this gateway's ring until it answers", id)
		} else {
			g.console.event("up", "node %s answers again", id)
		}
		if err := g.rebuild(); err != nil {
			g.log.Error("ring rebuild failed", "err", err)
		}
	}
}

// rebuild builds the ring from the members not marked down, swaps it in and
// starts the rebalance. Serialized by ringMu.
func (g *Gateway) rebuild() error {
	g.ringMu.Lock()
	defer g.ringMu.Unlock()
	var members []ring.Member
	plain := false
	g.nodesMu.Lock()
	for _, n := range g.memberSet() {
		if !g.down[n.ID] {
			members = append(members, ring.Member{ID: n.ID, Addr: n.Addr, Weight: n.Weight})
			plain = plain || n.Plain()
		}
	}
	g.nodesMu.Unlock()
	if plain || len(*g.targets.Load()) > 0 {
		g.resolveTargets(members, false) // before the ring that routes to them
	}
	g.hasPlain.Store(plain)
	var opts []ring.Option
	if g.cfg.VirtualNodes > 0 {
		opts = append(opts, ring.WithVirtualNodes(g.cfg.VirtualNodes))
	}
	r, err := ring.New(members, opts...)
	if err != nil {
		return err
	}
	prev := g.ring.Load() // ringMu: no other writer
	if prev != nil && prev.Version() == r.Version() {
		return nil
	}
	g.metrics.ringSwapped(r)
	g.storeLoads(r)
	g.ring.Store(r)
	g.log.Info("ring updated", "members", r.Len(), "version", fmt.Sprintf("%016x", r.Version()))
	g.ringChanged(r.Version(), memberIDs(prev), memberIDs(r), prev != nil)
	if prev != nil {
		for _, l := range g.loopList() {
			l.pending.Store(1) // unknown until the scan runs; keeps the pacer going
			_ = l.exec(func() { l.scan(prev, r) })
		}
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// memberSet is the last member set from the membership source.
func (g *Gateway) memberSet() []membership.Node {
	if p := g.members.Load(); p != nil {
		return *p
	}
	return nil
}

// pace has the loops close moved sessions at RebalanceRate per second.
func (g *Gateway) pace(ctx context.Context) {
	defer g.wg.Done()
	tick := time.NewTicker(paceTick)
	tick.Stop()
	active := false
	for {
		select {
		case <-ctx.Done():
			tick.Stop()
			return
		case <-g.kick:
			if !active {
				active = true
				tick.Reset(paceTick)
			}
		case <-tick.C:
			loops := g.loopList()
			if len(loops) == 0 { // no client has ever connected: nothing to move
				active = false
				tick.Stop()
				g.rebalanceDone()
				continue
			}
			perTick := int64(max(1, g.cfg.RebalanceRate*int(paceTick)/int(time.Second)))
			// Share the tick's budget in proportion to each loop's victims,
			// so the whole gateway closes RebalanceRate per second even
			// when the moved clients sit unevenly on the loops.
			left := int64(0)
			pending := make([]int64, len(loops))
			for i, l := range loops {
				pending[i] = l.pending.Load()
				left += pending[i]
			}
			for i, l := range loops {
				if pending[i] > 0 {
					budget := int(max(1, (perTick*pending[i]+left-1)/left))
					_ = l.exec(func() { l.closeVictims(budget) })
				}
			}
			if left == 0 {
				active = false
				tick.Stop()
				g.rebalanceDone()
			}
		}
	}
}
