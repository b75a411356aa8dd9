package gateway

import (
	"net"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// The gnet callbacks: the engine hands every connection event to the
// loop state that owns it (a client session, its TLS, or a backend link).

// loopList returns the loops seen so far. Safe from any goroutine.
func (g *Gateway) loopList() []*loop { return *g.loopArr.Load() }

// loopOf returns the gateway state of el, creating it on first use.
func (g *Gateway) loopOf(el gnet.EventLoop) *loop {
	g.loopsMu.Lock()
	defer g.loopsMu.Unlock()
	l := g.loops[el]
	if l == nil {
		l = newLoop(g, el, len(g.loops))
		g.loops[el] = l
		arr := append(append([]*loop(nil), g.loopList()...), l)
		g.loopArr.Store(&arr)
	}
	return l
}

// OnBoot records the engine and the listener's real address. gnet calls
// it before it creates the event loops (see OnTick).
func (g *Gateway) OnBoot(eng gnet.Engine) gnet.Action {
	g.eng = eng
	g.addr = g.cfg.Listen
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if in, ok := sa.(*unix.SockaddrInet4); ok {
				g.addr = net.JoinHostPort(net.IP(in.Addr[:]).String(), strconv.Itoa(in.Port))
			} else if in6, ok := sa.(*unix.SockaddrInet6); ok {
				g.addr = net.JoinHostPort(net.IP(in6.Addr[:]).String(), strconv.Itoa(in6.Port))
			}
		}
		_ = unix.Close(fd)
	}
	return gnet.None
}

// OnTick runs once the event loops are registered (gnet starts its ticker
// after them): Start returns only then, so links can be dialled on the
// loops. The ticker is not needed after that.
func (g *Gateway) OnTick() (time.Duration, gnet.Action) {
	g.loopsUpOnce.Do(func() { close(g.loopsUp) })
	return 24 * time.Hour, gnet.None
}

// OnOpen starts a client session in the handshake state, or completes a
// link dialled by linkTo (its context is the *link).
func (g *Gateway) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	l := g.loopOf(c.EventLoop())
	switch x := c.Context().(type) {
	case *link:
		return l.linkOpened(x, c), gnet.None
	case *upstream:
		l.upstreamOpened(x, c)
		return nil, gnet.None
	}
	if g.draining.Load() {
		return nil, gnet.Close
	}
	s := &session{conn: c, loop: l, state: stHandshake,
		deadline: g.deadline(g.cfg.HandshakeTimeout)}
	c.SetContext(s)
	if resp, why := g.admit(c); resp != nil {
		if g.tls != nil {
			// No HTTP answer can be sent before a TLS handshake, and a
			// handshake is what a refused client must not cost: close.
			s.state = stRejected
			g.metrics.reject(why)
			return nil, gnet.Close
		}
		return nil, l.reject(s, c, resp, why)
	}
	if g.tls != nil {
		c.SetContext(g.tls.wrap(c, s))
	}
	l.timed[s] = struct{}{}
	return nil, gnet.None
}

// OnTraffic dispatches input to the session or link that owns c.
func (g *Gateway) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		return x.loop.onTraffic(x, c)
	case *tlsConn:
		return x.loop.tlsTraffic(x, c)
	case *link:
		return x.loop.linkTraffic(x, c)
	case *upstream:
		return x.s.loop.upTraffic(x, c)
	}
	return gnet.Close
}

// OnClose forgets the session or link of c.
func (g *Gateway) OnClose(c gnet.Conn, err error) gnet.Action {
	ctx := c.Context()
	if t, ok := ctx.(*tlsConn); ok {
		if ctx = t.s; t.k != nil {
			ctx = t.k
		}
	}
	switch x := ctx.(type) {
	case *session:
		if x.state == stRejected {
			if x.lingers {
				g.lingering.Add(-1)
			}
			delete(x.loop.timed, x)
			return gnet.None
		}
		x.loop.onClose(x)
		g.released(c)
	case *link:
		x.loop.linkClosed(x, err)
	case *upstream:
		x.s.loop.upstreamClosed(x)
	}
	return gnet.None
}

// released gives back the admission of a client connection that closes.
func (g *Gateway) released(c gnet.Conn) {
	g.held.Add(-1)
	if g.limits.on() {
		g.limits.release(peerIP(c.RemoteAddr()))
	}
}
