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

	// Backoff after a failed write (run's goroutine only): flushes are
	// skipped until wait passes; failures doubles it, up to maxRetryWait.
	wait     time.Time
	failures int
}

// maxRetryWait bounds the backoff between presence writes that fail.
const maxRetryWait = 5 * time.Second

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

// flush writes the queued changes. A batch that fails (Redis down, or too
// slow to answer in 3 s) goes back to the head of the queue and is tried
// again after a backoff: the changes are idempotent (set or delete one
// field) and stay in order, so a retry repairs a write that did or did not
// land. A full resync happens only when the store may have lost what was
// written (dirty: the first write, a heartbeat that found this gateway
// unlisted) or the queue outgrew what a resync costs; resyncing on every
// timeout made a slow Redis slower (every gateway rewriting all its
// sessions at once, seen at 700,000 clients in `wsgate bench scale`).
func (w *presenceWriter) flush(ctx context.Context) {
	if time.Now().Before(w.wait) {
		return
	}
	w.mu.Lock()
	batch := w.queue
	w.queue = nil
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w.dirty.Load() {
		w.resync(ctx)
		w.backoff(w.dirty.Load())
		return
	}
	err := w.store.Apply(ctx, w.g.cfg.ID, batch)
	w.backoff(err != nil)
	if err == nil {
		return
	}
	w.mu.Lock()
	w.queue = append(batch, w.queue...)
	over := len(w.queue) > 2*w.g.cfg.MaxConns+1024 // more changes than sessions: a resync is cheaper
	if over {
		w.queue = nil
	}
	w.mu.Unlock()
	if over {
		w.dirty.Store(true)
	}
	w.g.log.Warn("presence write failed; retrying", "err", err, "changes", len(batch), "in", time.Until(w.wait).Round(time.Millisecond), "resync", over)
}

// backoff records a write's outcome: after a failure the next flush waits
// 2^failures × PresenceFlush, at most maxRetryWait.
func (w *presenceWriter) backoff(failed bool) {
	if !failed {
		w.failures, w.wait = 0, time.Time{}
		return
	}
	w.failures++
	d := min(w.g.cfg.PresenceFlush<<min(w.failures, 10), maxRetryWait)
	w.wait = time.Now().Add(d)
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
		// Not a reason to resync: the next beat that succeeds says whether
		// the store lost this gateway (revived).
		g.log.Debug("presence heartbeat failed", "err", err)
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
