package gateway

import (
	"context"
	"iter"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/keyhash"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// loop is the gateway's state for one gnet event loop.
//
// Invariant: every field is owned by the loop's goroutine. Other goroutines
// reach a loop only through exec (gnet's EventLoop.Execute); nothing here is
// locked, and nothing here may block.
type loop struct {
	g   *Gateway
	el  gnet.EventLoop
	idx int // order of creation; names sessions in presence

	sessions  map[uint32]*session // open and closing client sessions by id
	nextID    uint32
	byKey     map[uint64]*session     // by keyHash(key): head of the list of sessions whose keys hash so (session.nextKey); compare keys
	keyHash   func(key string) uint64 // keyhash.Of; tests make keys collide
	links     map[string]*link        // links to backends by node id
	timed     map[*session]struct{}
	down      map[string]time.Time     // node id -> no new dial before this (after a failed dial)
	victims   []*session               // sessions to close for a rebalance, paced
	bases     []*ring.Ring             // with bounded loads: the ring each victim was listed against (bounded.go)
	pending   atomic.Int64             // len(victims), for the pacer (read off the loop)
	dialing   []*upstream              // plain upstreams connecting or upgrading (upstream.go)
	lagLogged time.Time                // last "event loop late" warning (noteLag)
	counters  map[string]*atomic.Int64 // node id -> Gateway.nodeClients(id), cached (nodeCounter)

	// --rebalance migrate (migrate.go): the sessions moving, and each
	// session's Open body (its resume Open repeats it; kept only in that
	// mode, about 100 bytes a client).
	migrations map[*session]*migration
	opens      map[*session]string

	hs handshake // the loop's reusable upgrader state

	stats loopStats

	// Edge limits (edge.go).
	walk        []*session   // open sessions, visited in turn for pings and the idle timeout
	cursor      int          // next index of walk to visit
	walkCredit  float64      // sessions owed a visit (fractions carry over ticks)
	keyScratch  []*session   // SendKey's targets, reused
	backlogged  []*session   // sessions that had bytes queued at their last write
	outEstimate int64        // bytes queued to this loop's clients: last measure plus writes since
	outbound    atomic.Int64 // last measured bytes queued to this loop's clients (read by other loops)

	// Relay round-trip probe: one session at a time, picked every
	// probeEvery client messages; see metrics.relayRoundTrip.
	probe    *session
	probeAt  int64 // Gateway.deadline clock (nanoseconds since start) when probe's message was relayed
	probeCnt uint32

	dirty     []*link       // links with gathered output, written by flushLinks
	flushTask gnet.Runnable // runs flushLinks; made once, so scheduling a flush does not allocate it

	// Scratch buffers, valid only within one callback.
	tlsIn  []byte // a TLS client's decrypted input (tlsTraffic)
	tlsOut []byte // a TLS client's gathered write (tlsConn.Writev)
	out    []byte
	bcast  []byte
	iov    [][]byte
}

func newLoop(g *Gateway, el gnet.EventLoop, idx int) *loop {
	l := &loop{
		g:        g,
		el:       el,
		idx:      idx,
		sessions: make(map[uint32]*session),
		byKey:    make(map[uint64]*session),
		keyHash:  keyhash.Of,
		links:    make(map[string]*link),
		timed:    make(map[*session]struct{}),
		down:     make(map[string]time.Time),
		counters: make(map[string]*atomic.Int64),

		migrations: make(map[*session]*migration),
		opens:      make(map[*session]string),
		out:        make([]byte, 0, 4096),
		iov:        make([][]byte, 0, 2),
	}
	l.hs.init(l)
	l.flushTask = gnet.RunnableFunc(func(context.Context) error { l.flushLinks(); return nil })
	return l
}

// nodeCounter is the gateway's client counter of node id, cached on the
// loop (Gateway.nodeClients takes a lock; counters are never replaced).
func (l *loop) nodeCounter(id string) *atomic.Int64 {
	c := l.counters[id]
	if c == nil {
		c = l.g.nodeClients(id)
		l.counters[id] = c
	}
	return c
}

// exec runs fn on the loop. Safe from any goroutine; fn must not block.
func (l *loop) exec(fn func()) error {
	return l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn()
		return nil
	}))
}

// newSessionID returns an id not in use on this loop. Ids are unique per loop
// and so per link (a link belongs to one loop).
func (l *loop) newSessionID() uint32 {
	for {
		l.nextID++
		if _, taken := l.sessions[l.nextID]; l.nextID != 0 && !taken {
			return l.nextID
		}
	}
}

// keySessions yields key's sessions: those in the list under key's hash
// whose key is key (another key may share the hash). The caller must not
// add or remove sessions of that list while it ranges.
func (l *loop) keySessions(key string) iter.Seq[*session] {
	return func(yield func(*session) bool) {
		for s := l.byKey[l.keyHash(key)]; s != nil; s = s.nextKey {
			if s.key == key && !yield(s) {
				return
			}
		}
	}
}

// addKey links s into its key's list.
func (l *loop) addKey(s *session) {
	h := l.keyHash(s.key)
	if head := l.byKey[h]; head != nil {
		s.nextKey = head
		head.prevKey = s
	}
	l.byKey[h] = s
}

// removeKey unlinks s from its key's list.
func (l *loop) removeKey(s *session) {
	if s.prevKey != nil {
		s.prevKey.nextKey = s.nextKey
	} else if h := l.keyHash(s.key); l.byKey[h] == s {
		if s.nextKey != nil {
			l.byKey[h] = s.nextKey
		} else {
			delete(l.byKey, h)
		}
	}
	if s.nextKey != nil {
		s.nextKey.prevKey = s.prevKey
	}
	s.prevKey, s.nextKey = nil, nil
}

// loopLagWarn is how late a janitor tick may reach a loop before the
// gateway logs that the loop is overloaded or stalled.
const loopLagWarn = time.Second

// noteLag logs, at most once per 10 s, that the janitor's tick of time
// queued reached this loop late: everything on the loop (clients, links,
// their keepalive) waited as long.
func (l *loop) noteLag(queued time.Time) {
	now := time.Now()
	if lag := now.Sub(queued); lag > loopLagWarn && now.Sub(l.lagLogged) > 10*time.Second {
		l.lagLogged = now
		l.g.log.Warn("event loop late: work queued to it waited", "loop", l.idx, "lag", lag.Round(time.Millisecond),
			"sessions", len(l.sessions))
	}
}

// sweep enforces deadlines (handshake, close handshake) and link keepalive.
// Runs on the loop, driven by the gateway's janitor.
func (l *loop) sweep(now time.Time) {
	nowNano := int64(now.Sub(l.g.started)) // the monotonic clock of deadline
	for s := range l.timed {
		if s.deadline <= nowNano {
			delete(l.timed, s)
			switch s.state {
			case stHandshake:
				// A client whose request waits unread in the socket did
				// its part: the loop is behind (CPU starved, a connect
				// storm), not the client. It gets one more timeout, from
				// now. A slow client (slowloris) has nothing unread: the
				// loop read what it sent when it came.
				if !s.graced() && unread(s.conn) > 0 {
					s.rateAt = graceMark // startLimits sets it at the upgrade
					s.deadline = l.g.deadline(l.g.cfg.HandshakeTimeout)
					l.timed[s] = struct{}{}
					l.g.metrics.handshakeGraced.Inc()
					continue
				}
				l.g.metrics.handshakeFailed("timeout")
			case stClientClosed:
				l.finishClientClose(s) // the backend did not acknowledge in time
				continue
			case stRejected:
				_ = s.conn.Close() // its lingering time is up
				continue
			}
			s.state = stClosed
			_ = s.conn.Close()
		}
	}
	for _, k := range l.links {
		k.keepalive(now)
	}
	l.sweepDialing(nowNano)
	if len(l.migrations) > 0 {
		l.sweepMigrations(nowNano)
	}
	if l.probe != nil && (l.probe.state == stClosed || nowNano-l.probeAt > int64(probeExpiry)) {
		l.probe = nil // no reply came (push-only traffic, or the client left): let another start
	}
	l.walkSessions(l.g.tick)
	if l.g.cfg.MaxOutboundMemory > 0 {
		l.enforceBudget()
	} else {
		l.measureBacklog()
	}
	for id, t := range l.down {
		if now.After(t) {
			delete(l.down, id)
		}
	}
}

// sendKey writes frame to every deliverable session of key that match
// accepts, and returns how many it reached.
func (l *loop) sendKey(key string, frame []byte, match func(*session) bool) int {
	// Collect first: a write may close clients of this key (the outbound
	// budget closes the largest backlogs), which unlinks them from the
	// key's list while it is walked.
	targets := l.keyScratch[:0]
	for s := range l.keySessions(key) {
		if match(s) && s.deliverable() {
			targets = append(targets, s)
		}
	}
	n := 0
	for _, s := range targets {
		if s.deliverable() {
			l.writeRaw(s, frame)
			n++
		}
	}
	clear(targets)
	l.keyScratch = targets[:0]
	return n
}

// writeRaw writes a framed message to a client (see writeClient).
func (l *loop) writeRaw(s *session, frame []byte) {
	_, _ = s.conn.Write(frame)
	l.checkBacklog(s, len(frame))
}

// checkBacklog runs after wrote bytes were written to s: it closes a
// client that has fallen too far behind (--max-client-backlog) and keeps
// the gateway-wide outbound budget.
func (l *loop) checkBacklog(s *session, wrote int) {
	q := s.conn.OutboundBuffered()
	switch {
	case q == 0:
	case q > l.g.cfg.MaxClientBacklog:
		l.g.metrics.slowClient()
		l.g.metrics.reject("client_backlog")
		l.closeSlow(s, "slow client")
	default:
		l.noteBacklog(s, q, wrote)
	}
}

// writeClient writes a server frame (header then payload) to a client and
// closes the client if it has fallen too far behind.
func (l *loop) writeClient(s *session, fin bool, op wsframe.OpCode, payload []byte) {
	hdr := wsframe.AppendHeader(l.out[:0], fin, op, len(payload))
	if len(payload) == 0 {
		_, _ = s.conn.Write(hdr)
	} else {
		l.iov = append(l.iov[:0], hdr, payload)
		_, _ = s.conn.Writev(l.iov)
		l.iov[1] = nil
	}
	l.checkBacklog(s, len(hdr)+len(payload))
}
