package gateway

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/internal/presence"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Presence stores where users are connected: Redis in a cluster, memory in
// dev mode or with a static backend list. Every method is called off the
// event loops.
type Presence interface {
	Apply(ctx context.Context, gateway string, changes []presence.Change) error
	Where(ctx context.Context, user string) ([]presence.Location, error)
	GatewayAlive(ctx context.Context, gateway string, ttl time.Duration, counts map[string]int) (revived bool, err error)
	ResetGateway(ctx context.Context, gateway string) error
	ReapGateways(ctx context.Context) ([]string, error)
	Online(ctx context.Context) (map[string]int, error)
}

// presenceWriter batches the loops' session opens and closes and writes them
// in one pipeline per PresenceFlush, off the loops. After a failed write it
// rewrites this gateway's whole presence once the store answers again.
type presenceWriter struct {
	g     *Gateway
	store Presence

	mu    sync.Mutex // guards queue; held only to append or swap
	queue []presence.Change
	dirty atomic.Bool
}

// note queues a presence change; called on a loop, never blocks for I/O.
func (w *presenceWriter) note(l *loop, s *session, node string, add bool) {
	if s.keyless || w.store == nil {
		return
	}
	c := presence.Change{Add: add, User: s.key, Session: l.sessionName(s), Node: node}
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
}

// sessionName is s's id in presence: unique on this gateway.
func (l *loop) sessionName(s *session) string {
	return strconv.Itoa(l.idx) + "." + strconv.FormatUint(uint64(s.id), 10)
}

func (w *presenceWriter) run(ctx context.Context) {
	if w.store == nil {
		return // localPresence: the loops' tables are the presence
	}
	g := w.g
	flush := time.NewTicker(g.cfg.PresenceFlush)
	alive := time.NewTicker(g.cfg.PresenceTTL / 3)
	defer flush.Stop()
	defer alive.Stop()
	w.dirty.Store(true) // start from a clean slate: drop a previous instance's entries
	w.beat(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			w.flush(ctx)
		case <-alive.C:
			w.beat(ctx)
		}
	}
}

func (w *presenceWriter) flush(ctx context.Context) {
	w.mu.Lock()
	batch := w.queue
	w.queue = nil
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w.dirty.Load() {
		w.resync(ctx)
		return
	}
	if err := w.store.Apply(ctx, w.g.cfg.ID, batch); err != nil {
		w.g.log.Warn("presence write failed; will resync when the store is back", "err", err)
		w.dirty.Store(true)
	}
}

// resync replaces this gateway's presence with the loops' current sessions.
// It first refreshes the gateway's own TTL, so that no other gateway's
// reaper takes it for dead and wipes what it is about to write.
func (w *presenceWriter) resync(ctx context.Context) {
	g := w.g
	if _, err := w.store.GatewayAlive(ctx, g.cfg.ID, g.cfg.PresenceTTL, g.nodeCounts()); err != nil {
		return // still down; try again next flush
	}
	if err := w.store.ResetGateway(ctx, g.cfg.ID); err != nil {
		return
	}
	var all []presence.Change
	for _, l := range g.loopList() {
		ch := make(chan []presence.Change, 1)
		prefix := strconv.Itoa(l.idx) + "."
		if l.exec(func() {
			// On l's goroutine, so l queues nothing meanwhile: the changes
			// l queued so far are in this scan; later ones stay queued.
			w.mu.Lock()
			w.queue = slices.DeleteFunc(w.queue, func(c presence.Change) bool { return strings.HasPrefix(c.Session, prefix) })
			w.mu.Unlock()
			var out []presence.Change
			for _, s := range l.sessions {
				if node := s.node(); s.state == stOpen && node != "" && !s.keyless {
					out = append(out, presence.Change{Add: true, User: s.key, Session: l.sessionName(s), Node: node})
				}
			}
			ch <- out
		}) != nil {
			return
		}
		select {
		case part := <-ch:
			all = append(all, part...)
		case <-ctx.Done():
			return
		}
	}
	if err := w.store.Apply(ctx, g.cfg.ID, all); err != nil {
		return
	}
	w.dirty.Store(false)
	g.log.Info("presence resynced", "sessions", len(all))
}

// beat refreshes this gateway's TTL and counts, and reaps dead gateways.
func (w *presenceWriter) beat(ctx context.Context) {
	g := w.g
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	revived, err := w.store.GatewayAlive(ctx, g.cfg.ID, g.cfg.PresenceTTL, g.nodeCounts())
	if err != nil {
		g.log.Debug("presence heartbeat failed", "err", err)
		w.dirty.Store(true)
		return
	}
	if revived {
		// Not listed before: first beat, reaped, or Redis lost its data
		// (a restart shorter than a write failure would reveal).
		w.dirty.Store(true)
	}
	if dead, err := w.store.ReapGateways(ctx); err == nil && len(dead) > 0 {
		g.log.Info("removed presence of dead gateways", "gateways", dead)
	}
}

// nodeCounts is this gateway's clients per node (nodes with clients only).
func (g *Gateway) nodeCounts() map[string]int {
	counts := map[string]int{}
	g.nodesMu.Lock()
	defer g.nodesMu.Unlock()
	for id, c := range g.perNode {
		if n := int(c.Load()); n > 0 {
			counts[id] = n
		}
	}
	return counts
}

// Broadcast sends msg as one text frame to every open client of this
// gateway: framed once, the same bytes written to each. It returns once
// every loop has been asked to write.
func (g *Gateway) deliverBroadcast(msg []byte) {
	frame := wsframe.AppendFrame(nil, true, wsframe.OpText, msg)
	for _, l := range g.loopList() {
		_ = l.exec(func() {
			n := 0
			for _, s := range l.sessions {
				if s.state == stOpen && s.between() {
					l.writeRaw(s, frame)
					n++
				}
			}
			g.bcasts.Add(int64(n))
		})
	}
}

// Broadcast delivers msg to every client of the cluster (through Fanout),
// or of this gateway when there is no Fanout.
func (g *Gateway) Broadcast(ctx context.Context, msg []byte) error {
	if g.cfg.Fanout == nil {
		g.deliverBroadcast(msg)
		return nil
	}
	return g.cfg.Fanout.Publish(ctx, msg)
}
