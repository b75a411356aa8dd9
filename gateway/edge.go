package gateway

import (
	"context"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"time"

	"github.com/wsgate/wsgate/internal/wsframe"
)

// Per-client edge limits: the frame rate, server pings and the idle
// timeout, and the gateway-wide budget of bytes queued toward clients.
// Everything here runs on the session's loop; the per-message cost is a
// few arithmetic operations on fields of the session (no map, no lock, no
// allocation).

// pingFrame is the server's ping to a client: FIN, opcode 9, no payload,
// unmasked (RFC 6455 5.5.2). It is the same two bytes for every client, so
// it is "framed" once, here.
var pingFrame = []byte{0x89, 0x00}

// coarse clock readings: the janitor stores unix nanos in g.clock every
// tick (at most 250 ms apart).
// Both are milliseconds since the gateway started, in a uint32: durations
// are computed by uint32 subtraction, which is right across the 49-day wrap
// for any gap shorter than that (the idle timeout closes silent clients
// long before).
// The janitor keeps the milliseconds in g.ms, so the per-frame read is one
// atomic load.
func (g *Gateway) nowMs() uint32 { return g.ms.Load() }

// deadline is a session deadline d from now: nanoseconds since the gateway
// started, on the monotonic clock (a wall-clock step must not fire every
// handshake or close timeout at once, or hold them).
func (g *Gateway) deadline(d time.Duration) int64 { return g.elapsed() + int64(d) }

// elapsed is the time since the gateway started, in nanoseconds: the clock
// of deadline, read now (not the janitor's coarse clock).
func (g *Gateway) elapsed() int64 { return int64(time.Since(g.started)) }

// tickClock advances the coarse clocks (janitor). The milliseconds come
// from the monotonic clock (now.Sub(start)): a step of the wall clock (NTP,
// a resumed VM) must not make every client look idle, or fresh.
func (g *Gateway) tickClock(now time.Time) {
	g.clock.Store(now.UnixNano())
	since := now.Sub(g.started)
	g.mono.Store(int64(since))
	g.ms.Store(uint32(since / time.Millisecond))
}

// allowFrame takes a token from s's frame-rate bucket (rate MaxFrameRate
// per second, burst twice that). It is called once per client data frame
// with the coarse time now (nowMs); the refill runs only when the coarse
// clock moved, so most frames cost a compare and a decrement.
func (l *loop) allowFrame(s *session, now uint32) bool {
	r := l.g.cfg.MaxFrameRate
	if r <= 0 {
		return true
	}
	if now != s.rateAt {
		// uint32 subtraction: correct across the 49-day wrap of the ms clock.
		s.tokens = min(s.tokens+float32(now-s.rateAt)*float32(r)/1000, float32(2*r))
		s.rateAt = now
	}
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// startLimits initialises s's limit state when it opens: a full frame-rate
// bucket, "heard now", and a place in the loop's walk.
func (l *loop) startLimits(s *session) {
	s.tokens = float32(2 * max(l.g.cfg.MaxFrameRate, 0))
	s.rateAt = l.g.nowMs()
	s.seen = s.rateAt
	s.slot = int32(len(l.walk))
	l.walk = append(l.walk, s)
}

// stopLimits takes s out of the loop's walk and backlog list.
func (l *loop) stopLimits(s *session) {
	if i := int(s.slot); i >= 0 && i < len(l.walk) && l.walk[i] == s {
		last := len(l.walk) - 1
		l.walk[i] = l.walk[last]
		l.walk[i].slot = int32(i)
		l.walk[last] = nil
		l.walk = l.walk[:last]
	}
	s.slot = -1
	// s stays in l.backlogged until the next budget pass drops it (closed).
}

// walkPeriod is how long the loop takes to visit every session once for
// pings and the idle timeout: the ping interval, or a quarter of the idle
// timeout when pings are off; 0 when both are off.
func (g *Gateway) walkPeriod() time.Duration {
	switch {
	case g.cfg.PingInterval > 0:
		return g.cfg.PingInterval
	case g.cfg.IdleTimeout > 0:
		return g.cfg.IdleTimeout / 4
	case g.auth != nil:
		return DefaultPingInterval // token expiry is checked on the walk
	}
	return 0
}

// walkSessions visits the next slice of the loop's sessions: each is
// visited once per walkPeriod, spread evenly over the janitor's ticks, so
// pings to a million clients go out as a steady trickle, not a burst. A
// session silent for IdleTimeout is closed; one silent for half the ping
// interval gets a ping.
func (l *loop) walkSessions(tick time.Duration) {
	period := l.g.walkPeriod()
	if period <= 0 || len(l.walk) == 0 {
		return
	}
	// len/period sessions per unit of time; fractions carry over, so a
	// loop with few sessions visits each once per period, not every tick.
	l.walkCredit += float64(len(l.walk)) * float64(tick) / float64(period)
	n := min(int(l.walkCredit), len(l.walk))
	l.walkCredit -= float64(int(l.walkCredit))
	now := l.g.nowMs()
	nowUnix := uint32(l.g.clock.Load() / int64(time.Second))
	idleMs := uint32(max(l.g.cfg.IdleTimeout, 0) / time.Millisecond)
	pingMs := uint32(max(l.g.cfg.PingInterval, 0) / time.Millisecond / 2)
	for range n {
		if l.cursor >= len(l.walk) {
			l.cursor = 0
		}
		s := l.walk[l.cursor]
		l.cursor++
		if s.state != stOpen {
			continue
		}
		silent := now - s.seen
		switch {
		case s.exp != 0 && nowUnix >= s.exp:
			l.g.metrics.reject("token_expired")
			l.closeSession(s, wsframe.ClosePolicyViolation, "token expired", false)
		case l.g.cfg.IdleTimeout > 0 && silent >= idleMs:
			if unread(s.conn) > 0 {
				// Input waits unread in its socket: the loop is behind
				// (starved cores, a broadcast to every client), not the
				// client, and its next read marks it seen. On 2 cores,
				// after broadcasts to a million put the loops minutes
				// behind, idle closes took 250,000 clients (run N in
				// docs/BENCHMARKS.md).
				continue
			}
			l.idleClose(s)
		case l.g.cfg.PingInterval > 0 && silent >= pingMs && !s.awaiting101():
			_, _ = s.conn.Write(pingFrame)
		}
	}
}

// idleClose closes a client nothing was heard from for the idle timeout:
// with 1001 "idle timeout" when its socket takes the close frame at once,
// else (nothing drains: the peer is dead) by dropping the connection.
func (l *loop) idleClose(s *session) {
	l.g.metrics.reject("idle_timeout")
	if s.conn.OutboundBuffered() == 0 {
		l.closeSession(s, wsframe.CloseGoingAway, "idle timeout", false)
		return
	}
	l.drop(s, wsframe.CloseGoingAway, "idle timeout")
}

// drop tells the backend that s closed and closes the connection without
// a close handshake.
func (l *loop) drop(s *session, code uint16, reason string) {
	l.detach(s, code, []byte(reason))
	s.state = stClosed
	_ = s.conn.Close()
}

// noteBacklog records that s has bytes queued (after a write to it) for
// the outbound budget, and enforces the budget when this loop's share of
// the queued bytes may be over it.
func (l *loop) noteBacklog(s *session, queued, wrote int) {
	if !s.backlogged {
		s.backlogged = true
		l.backlogged = append(l.backlogged, s)
	}
	budget := l.g.queueBudget()
	if budget <= 0 {
		return
	}
	l.outEstimate += int64(min(queued, wrote))
	if l.outEstimate+l.g.outboundOthers(l) > budget {
		l.enforceBudget()
	}
}

// queueBudget is the most bytes that may be queued toward clients: three
// quarters of --max-outbound-memory. The last quarter is the garbage
// collector's headroom (tuneMemoryLimit): buffers of closed slow consumers
// and written messages are garbage until a collection, so the memory the
// backlogs cost is more than the bytes queued at any moment.
func (g *Gateway) queueBudget() int64 {
	return g.cfg.MaxOutboundMemory - g.cfg.MaxOutboundMemory/4
}

// outboundTotal is the sum of the loops' last measured backlogs: the bytes
// queued toward clients, gateway-wide.
func (g *Gateway) outboundTotal() int64 {
	var sum int64
	for _, l := range g.loopList() {
		sum += l.outbound.Load()
	}
	return sum
}

// outboundOthers is the sum of the other loops' last measured backlogs.
func (g *Gateway) outboundOthers(self *loop) int64 { return g.outboundTotal() - self.outbound.Load() }

// measureBacklog sums the bytes queued to this loop's clients and forgets
// the clients whose backlog drained or that are gone.
func (l *loop) measureBacklog() int64 {
	var sum int64
	keep := l.backlogged[:0]
	for _, s := range l.backlogged {
		if l.sessions[s.id] != s { // gone: its conn may be reused, do not touch it
			s.backlogged = false
			continue
		}
		n := s.conn.OutboundBuffered()
		if n == 0 {
			s.backlogged = false
			continue
		}
		sum += int64(n)
		keep = append(keep, s)
	}
	clear(l.backlogged[len(keep):])
	l.backlogged = keep
	l.outEstimate = sum
	l.outbound.Store(sum)
	return sum
}

// enforceBudget measures the queued bytes and, while the gateway is over
// --max-outbound-memory, closes this loop's clients with the largest
// backlogs (1008 "slow consumer"; their share of the excess is in
// proportion to this loop's share of the queued bytes). A closed client's
// bytes stay queued behind its close frame for a short grace, then the
// connection is dropped.
func (l *loop) enforceBudget() {
	budget := l.g.queueBudget()
	mine := l.measureBacklog()
	total := mine + l.g.outboundOthers(l)
	if budget <= 0 || total <= budget || mine == 0 {
		return
	}
	excess := (total - budget) * mine / total
	victims := slices.Clone(l.backlogged)
	slices.SortFunc(victims, func(a, b *session) int { return b.conn.OutboundBuffered() - a.conn.OutboundBuffered() })
	var freed int64
	for _, s := range victims {
		if freed >= excess {
			break
		}
		if s.state != stOpen {
			continue // already closing: its bytes go with it
		}
		freed += int64(s.conn.OutboundBuffered())
		l.g.metrics.reject("slow_consumer")
		l.closeSlow(s, "slow consumer")
	}
}

// closeSlow closes a client that does not read: a 1008 close frame after
// its backlog, and a short grace (at most a second) before the connection
// is dropped with whatever is still queued.
func (l *loop) closeSlow(s *session, reason string) {
	l.closeSession(s, wsframe.ClosePolicyViolation, reason, false)
	if s.state == stClosing {
		s.deadline = min(s.deadline, l.g.deadline(slowGrace))
		s.slow = true // onClose asks for its buffers' memory back
	}
}

// slowGrace is how long a slow consumer closed for its backlog keeps its
// connection to take the close frame.
const slowGrace = time.Second

// releaseMemory asks for the memory of a slow consumer's buffers back: it
// is called (on the loop, must not block) when such a connection has
// closed; memoryReleaser does the work.
func (g *Gateway) releaseMemory() {
	select {
	case g.releaseReq <- struct{}{}:
	default: // a release is pending already
	}
}

// memoryReleaser returns freed buffer memory to the OS soon after
// slow-consumer closes, instead of at the next GC cycle the heap's growth
// would trigger (which, after a shrink, may be far away) or the runtime's
// background scavenger (tens of seconds). Two collections: the first moves
// pooled buffers to sync.Pool's victim cache, the second (inside
// FreeOSMemory) frees them and returns the pages. Requests that arrive
// meanwhile are served by one more pass, at most once per releaseEvery.
func (g *Gateway) memoryReleaser(ctx context.Context) {
	defer g.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.releaseReq:
		}
		time.Sleep(100 * time.Millisecond) // gather the closes of one enforcement pass
		runtime.GC()
		debug.FreeOSMemory()
		select {
		case <-ctx.Done():
			return
		case <-time.After(releaseEvery):
		}
	}
}

// tuneMemoryLimit keeps the Go runtime's soft memory limit at the live
// heap that is not client backlog plus --max-outbound-memory, so that
// garbage left by a push flood (buffers of closed slow consumers, messages
// already written) is collected before the heap grows past the budget:
// with the default GOGC the heap may otherwise reach twice the live data
// before a collection. Only when the operator set no
// GOMEMLIMIT; the janitor calls it every second. Off the loops.
func (g *Gateway) tuneMemoryLimit() {
	if !g.ownsMemLimit || g.cfg.MaxOutboundMemory <= 0 {
		return
	}
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(sample)
	if sample[0].Value.Kind() != rtmetrics.KindUint64 {
		return
	}
	live := int64(sample[0].Value.Uint64())
	debug.SetMemoryLimit(max(live-g.outboundTotal(), 0) + g.cfg.MaxOutboundMemory)
}

// releaseEvery bounds how often releaseMemory forces a collection.
const releaseEvery = 2 * time.Second
