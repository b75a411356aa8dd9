package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wire"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// link is one TCP connection from a loop to a backend, carrying the wire
// protocol for every session of that loop routed to that backend. Links are
// gnet conns registered on their loop (EventLoop.Register), so a session's
// frames go client -> loop -> link and back without a lock or goroutine hop.
//
// Invariant: owned by its loop's goroutine, like the sessions it carries.
type link struct {
	loop *loop
	node string
	addr string
	conn gnet.Conn // nil while dialling (and in the TLS handshake) and after close
	// tlsHandshaken is the TLS state after the dialling goroutine's
	// handshake, handed to the loop with the socket (written before
	// Enroll, read in OnOpen after it).
	tlsHandshaken *tls.Conn

	pending  []byte // frames written while dialling, flushed on open
	sessions int    // sessions routed to this link
	retired  bool   // the node left the ring or moved: no new sessions; closes when empty
	closed   bool
	hello    bool // the backend's Hello arrived
	closeAck bool // the backend's Hello has wire.FlagCloseAck: it answers our Close for a session
	migrate  bool // the backend's Hello has wire.FlagMigrate: sessions can move to and from it (migrate.go)

	// Link authentication (wire/auth.go), with a cluster secret: session
	// frames wait in held until the backend has proved it holds the secret.
	authWait bool
	held     []byte
	nonce    [wire.NonceSize]byte // ours (the gateway's)
	// chunk is the largest Message body sent on k: the protocol's minimum
	// until the backend's Hello tells its MaxBody, then min(maxChunk, it).
	chunk int

	clients  *atomic.Int64 // the gateway's client count of this node (shared by the loops' links)
	created  time.Time
	lastRecv time.Time
	pinged   time.Time

	// Frames written while the link is open are gathered here and written
	// once per loop cycle by flushLinks: one system call per link per
	// cycle instead of one per relayed message.
	wbuf   []byte
	queued bool // k is in loop.dirty
}

// linkTo returns the loop's link to m, dialling a new one if needed.
func (l *loop) linkTo(m *ring.Member) *link {
	if k := l.links[m.ID]; k != nil {
		return k
	}
	k := &link{loop: l, node: m.ID, addr: m.Addr, created: time.Now(), lastRecv: time.Now(), chunk: wire.MinMaxBody,
		clients: l.nodeCounter(m.ID)}
	l.links[m.ID] = k
	hello := wire.Hello{Version: wire.Version, Role: wire.RoleGateway, MaxBody: wire.DefaultMaxBody, NodeID: l.g.cfg.ID}
	if l.g.auth != nil {
		hello.Flags = wire.FlagClaims // Opens carry the verified claims
	}
	if l.g.cfg.Rebalance == RebalanceMigrate {
		hello.Flags |= wire.FlagMigrate
	}
	k.pending = wire.AppendHello(k.pending, hello)
	if secret := l.g.cfg.ClusterSecret; len(secret) > 0 {
		k.authWait, k.nonce = true, wire.NewNonce()
		k.pending = wire.AppendAuth(k.pending, wire.Auth{Step: wire.AuthChallenge, Nonce: k.nonce})
	}
	g := l.g
	// Dialling (and resolving) blocks, so it runs off the loop; gnet then
	// registers the socket on this loop and calls OnOpen there.
	go func() {
		err := func() error {
			if g.linkTLS != nil {
				raw, tc, err := g.linkTLS.dial(context.Background(), k.addr, linkDialTimeout)
				if err != nil {
					return err
				}
				k.tlsHandshaken = tc
				ch, err := l.el.Enroll(gnet.NewContext(context.Background(), k), raw) // gnet dups the socket and closes raw
				if err != nil {
					_ = raw.Close()
					return err
				}
				return (<-ch).Err
			}
			addr, err := net.ResolveTCPAddr("tcp", k.addr)
			if err != nil {
				return err
			}
			ch, err := l.el.Register(gnet.NewContext(context.Background(), k), addr)
			if err != nil {
				return err
			}
			return (<-ch).Err
		}()
		if err != nil {
			if tlsErr := (*linkTLSError)(nil); errors.As(err, &tlsErr) {
				g.metrics.linkAuthFailed(k.node)
			}
			g.log.Warn("link dial failed", "node", k.node, "addr", k.addr, "err", err)
			_ = l.exec(func() { l.linkFailed(k, wsframe.CloseTryAgainLater, "backend unavailable") })
		}
	}()
	return k
}

// write sends a whole wire frame, or queues it while the link is dialling.
func (k *link) write(frame []byte) {
	switch {
	case k.authWait && !k.closed:
		k.held = append(k.held, frame...)
	case k.conn != nil:
		k.queue(frame, nil)
	case !k.closed:
		k.pending = append(k.pending, frame...)
	}
}

// backlog is the number of bytes queued to the backend and not yet sent.
func (k *link) backlog() int {
	if k.conn != nil {
		return k.conn.OutboundBuffered() + len(k.wbuf) + len(k.held)
	}
	return len(k.pending) + len(k.held)
}

// writeFrame sends a frame with header fields and body without copying the
// body when the link is open.
func (k *link) writeFrame(t wire.Type, flags uint8, sid uint32, body []byte) {
	l := k.loop
	hdr := wire.AppendHeader(l.out[:0], t, flags, sid, len(body))
	if k.authWait {
		if !k.closed {
			k.held = append(append(k.held, hdr...), body...)
		}
		return
	}
	if k.conn == nil {
		if !k.closed {
			k.pending = append(append(k.pending, hdr...), body...)
		}
		return
	}
	k.queue(hdr, body)
}

// queue appends a frame (a, then b) to the link's gathered output and makes
// sure the loop writes it after the events of this cycle: the flush is an
// EventLoop.Execute task, which gnet runs once the current batch of events
// is handled.
func (k *link) queue(a, b []byte) {
	k.wbuf = append(append(k.wbuf, a...), b...)
	if k.queued {
		return
	}
	k.queued = true
	l := k.loop
	l.dirty = append(l.dirty, k)
	if len(l.dirty) > 1 {
		return // a flush is already scheduled
	}
	if l.el == nil || l.el.Execute(context.Background(), l.flushTask) != nil {
		l.flushLinks() // no event loop (tests drive callbacks) or it stopped: write now
	}
}

// flushLinks writes every link's gathered output. It runs on the loop.
func (l *loop) flushLinks() {
	for i, k := range l.dirty {
		k.queued = false
		k.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
}

// flush writes k's gathered output now (gnet keeps what the socket does not
// take, and sends it before a close).
func (k *link) flush() {
	if k.conn != nil && len(k.wbuf) > 0 {
		_, _ = k.conn.Write(k.wbuf)
	}
	k.wbuf = k.wbuf[:0]
	if cap(k.wbuf) > maxGathered {
		k.wbuf = nil
	}
}

// maxGathered is the largest gathered-output buffer a link keeps between
// cycles; a larger one (a burst of big messages) is dropped after use.
const maxGathered = 256 << 10

// opened runs on the loop when the dialled socket is registered.
func (l *loop) linkOpened(k *link, c gnet.Conn) []byte {
	if k.closed || k.retired && k.sessions == 0 {
		k.closed = true
		_ = c.Close()
		return nil
	}
	if k.tlsHandshaken != nil {
		l.linkTLSOpened(k, c)
		return nil
	}
	k.conn = c
	k.lastRecv = time.Now()
	out := k.pending
	k.pending = nil
	l.g.log.Debug("link open", "node", k.node, "addr", k.addr)
	return out
}

// linkFailed closes every session of k and forgets k; the node gets no new
// dial from this loop for LinkRetry.
func (l *loop) linkFailed(k *link, code uint16, reason string) {
	if k.closed {
		return
	}
	k.closed = true
	k.pending = nil
	if l.links[k.node] == k {
		delete(l.links, k.node)
	}
	if !k.retired {
		l.down[k.node] = time.Now().Add(l.g.cfg.LinkRetry)
	}
	if len(l.migrations) > 0 {
		l.linkLost(k)
	}
	keep := k.migrates() && l.g.cfg.Rebalance == RebalanceMigrate && !l.g.draining.Load()
	orphans := 0
	for _, s := range l.sessions {
		if s.link == k {
			if keep && s.state == stOpen && s.op == 0 && s.remaining == 0 {
				l.orphan(s, k) // it resumes, without state, on the node that takes its key
				orphans++
				continue
			}
			l.finishClientClose(s)
			l.closeSession(s, code, reason, true)
		}
	}
	if orphans > 0 {
		l.g.log.Warn("backend link lost with sessions on it: they resume, without their state, on the nodes that take their keys",
			"node", k.node, "sessions", orphans)
	}
	if k.conn != nil {
		k.flush()
		_ = k.conn.Close()
		k.conn = nil
	}
}

// maybeRetire closes a retired link once its last session is gone.
func (k *link) maybeRetire() {
	if k.retired && k.sessions == 0 {
		k.loop.linkFailed(k, wsframe.CloseServiceRestart, "rebalance")
	}
}

// linkDialTimeout bounds a link's dial and the backend's Hello: gnet dials
// without a deadline, and a blackholed backend would hold its clients for
// the system's connect timeout (minutes).
const linkDialTimeout = 5 * time.Second

// keepalive applies the link liveness rule (docs/protocol.md, "Keepalive")
// and closes a link that does not come up in time. The rule holds whatever
// the direction of the data: each side sends a Ping once per interval on a
// fixed schedule, whatever else it sends, and answers every Ping; a side
// that has heard nothing at all for 3 intervals closes the link. (Pinging
// only an idle-looking link fails under one-way traffic: a backend that
// only pushes hears nothing from a gateway that only receives.)
func (k *link) keepalive(now time.Time) {
	if k.closed {
		return
	}
	if (!k.hello || k.authWait) && now.Sub(k.created) > linkDialTimeout {
		k.loop.g.log.Warn("link not up in time, closing", "node", k.node, "addr", k.addr)
		k.loop.linkFailed(k, wsframe.CloseTryAgainLater, "backend unavailable")
		return
	}
	if k.conn == nil {
		return
	}
	every := k.loop.g.cfg.KeepAlive
	if silent := now.Sub(k.lastRecv); silent > wire.DeadIntervals*every {
		if n := unread(k.conn); n > 0 {
			// Bytes from the backend wait in the socket: it is not
			// silent, this loop is behind in reading it (overloaded or
			// starved of CPU). Not a reason to drop its clients.
			k.loop.g.log.Warn("link unread for long: the event loop is behind, not the backend", "node", k.node,
				"addr", k.addr, "unread", silent.Round(time.Millisecond), "bytes_waiting", n)
			k.lastRecv = now
			return
		}
		k.loop.g.log.Warn("link silent, closing", "node", k.node, "addr", k.addr,
			"silent", silent.Round(time.Millisecond), "keepalive", every)
		k.loop.g.metrics.linkSilent(k.node)
		k.loop.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
		return
	}
	if now.Sub(k.pinged) >= every {
		k.pinged = now
		var b [wire.PingSize]byte
		binary.BigEndian.PutUint64(b[:], uint64(now.UnixNano()))
		k.writeFrame(wire.TypePing, 0, 0, b[:])
	}
}

// linkTraffic handles every complete wire frame from the backend.
func (l *loop) linkTraffic(k *link, c gnet.Conn) gnet.Action {
	// The real time, not the janitor's coarse clock: under CPU load the
	// janitor runs late, its clock lags, and a link would look silent for
	// longer than it was (dropped early). One clock read per read event.
	k.lastRecv = time.Now()
	for {
		n := c.InboundBuffered()
		if n < wire.HeaderSize {
			return gnet.None
		}
		p, _ := c.Peek(wire.HeaderSize)
		h, err := wire.ParseHeader(p, wire.DefaultMaxBody)
		if err != nil {
			l.g.log.Error("bad frame from backend, closing link", "node", k.node, "err", err)
			_, _ = c.Write(wire.AppendError(l.out[:0], wire.CodeProtocol, err.Error()))
			l.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
			return gnet.None
		}
		total := wire.HeaderSize + h.BodyLen
		if n < total {
			return gnet.None
		}
		p, _ = c.Peek(total)
		if err := l.linkFrame(k, h, p[wire.HeaderSize:]); err != nil {
			if be := (*backendError)(nil); errors.As(err, &be) && be.code == wire.CodeGoingAway {
				l.g.log.Info("backend closing the link: it shuts down", "node", k.node, "reason", be.text)
				l.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
				return gnet.None
			}
			l.g.log.Error("backend protocol error, closing link", "node", k.node, "err", err)
			k.queue(wire.AppendError(l.out[:0], wire.CodeProtocol, err.Error()), nil) // flushed by linkFailed
			l.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
			return gnet.None
		}
		if k.closed {
			return gnet.None
		}
		_, _ = c.Discard(total)
	}
}

// linkAuth checks the backend's proof that it holds the cluster secret
// (its Auth answer to our challenge), then confirms ours and releases the
// session frames held meanwhile. Anything wrong closes the link before a
// session frame was sent.
func (l *loop) linkAuth(k *link, body []byte) error {
	secret := l.g.cfg.ClusterSecret
	if !k.authWait || !k.hello || len(secret) == 0 {
		return errors.New("unexpected Auth frame from backend")
	}
	confirm, err := wire.GatewayConfirm(secret, l.g.cfg.ID, k.node, k.nonce, body)
	if err != nil {
		l.g.metrics.linkAuthFailed(k.node)
		return fmt.Errorf("backend %s at %s failed cluster authentication: %w", k.node, k.addr, err)
	}
	k.authWait = false
	k.queue(wire.AppendAuth(l.out[:0], confirm), nil)
	if len(k.held) > 0 {
		k.queue(k.held, nil)
	}
	k.held = nil
	return nil
}

// linkFrame acts on one frame from the backend. An error closes the link.
func (l *loop) linkFrame(k *link, h wire.Header, body []byte) error {
	// Until the backend has proved the cluster secret, only its Hello, its
	// Auth and an Error may come; nothing else reaches a client.
	if k.authWait && h.Type != wire.TypeHello && h.Type != wire.TypeAuth && h.Type != wire.TypeError {
		return fmt.Errorf("backend sent %v before authenticating", h.Type)
	}
	switch h.Type {
	case wire.TypeMessage:
		s := l.sessions[h.Session]
		if s == nil || s.link != k || !s.deliverable() {
			return nil // closed meanwhile
		}
		op := wsframe.OpText
		switch {
		case h.Flags&wire.FlagContinuation != 0:
			op = wsframe.OpContinuation
		case h.Flags&wire.FlagBinary != 0:
			op = wsframe.OpBinary
		}
		l.stats.out(len(body), h.Flags&wire.FlagMore == 0)
		if s == l.probe {
			l.probe = nil
			l.g.metrics.relayed(time.Duration(l.g.elapsed() - l.probeAt))
		}
		l.writeClient(s, h.Flags&wire.FlagMore == 0, op, body)
	case wire.TypeClose:
		s := l.sessions[h.Session]
		if s == nil {
			return nil
		}
		if s.link != k {
			if mg := l.migrations[s]; mg != nil && mg.to == k {
				l.failMigration(s, mg) // the new node refused it (draining)
			}
			return nil
		}
		code, reason, err := wire.ParseClose(body)
		if err != nil {
			return err
		}
		if s.state == stClientClosed {
			l.finishClientClose(s) // the acknowledgment: every reply before it is delivered
			return nil
		}
		if !wsframe.ValidCloseCode(code) {
			code = wsframe.CloseNormal
		}
		l.closeSession(s, code, string(reason), true)
	case wire.TypeSendKey:
		key, payload, err := wire.ParseSendKey(body)
		if err != nil {
			return err
		}
		l.sendKey(string(key), l.frameOnce(h.Flags, payload), func(s *session) bool { return s.link == k })
	case wire.TypeBroadcast:
		frame := l.frameOnce(h.Flags, body)
		for _, s := range l.sessions {
			// A migrating session still takes its old node's broadcasts
			// (its new node counts it only once it has landed).
			if s.link == k && (s.state == stOpen || s.state == stMigrating) {
				l.writeRaw(s, frame)
			}
		}
	case wire.TypeReady:
		if !k.migrate {
			return errors.New("unexpected Ready frame from backend")
		}
		l.migrationReady(k, h.Session)
	case wire.TypeState:
		if !k.migrate {
			return errors.New("unexpected State frame from backend")
		}
		return l.migrationState(k, h, body)
	case wire.TypePing:
		k.writeFrame(wire.TypePong, 0, 0, body)
	case wire.TypePong:
		if len(body) == wire.PingSize { // our Ping's send time, echoed
			rtt := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(body)))
			if rtt >= 0 && rtt < time.Minute { // a wall-clock step is not a round trip
				l.g.metrics.linkPong(rtt)
			}
		}
	case wire.TypeHello:
		hello, err := wire.ParseHello(body)
		if err != nil {
			return err
		}
		if hello.Role != wire.RoleBackend || hello.Version != wire.Version {
			return fmt.Errorf("backend hello: role %d version %d, want role %d version %d",
				hello.Role, hello.Version, wire.RoleBackend, wire.Version)
		}
		if hello.NodeID != k.node {
			return fmt.Errorf("backend at %s says it is node %q, membership says %q", k.addr, hello.NodeID, k.node)
		}
		if k.hello {
			return errors.New("backend sent a second hello")
		}
		k.hello = true
		k.closeAck = h.Flags&wire.FlagCloseAck != 0
		k.migrate = h.Flags&wire.FlagMigrate != 0 && l.g.cfg.Rebalance == RebalanceMigrate
		k.chunk = int(min(uint32(maxChunk), hello.MaxBody))
		l.linkHello(k)
	case wire.TypeAuth:
		return l.linkAuth(k, body)
	case wire.TypeError:
		code, text, _ := wire.ParseError(body)
		return &backendError{code: code, text: string(text)}
	default:
		return fmt.Errorf("unexpected %v frame from backend", h.Type)
	}
	return nil
}

// frameOnce frames a payload for many clients: header and payload in one
// loop buffer, written as is to each (a broadcast is framed once).
func (l *loop) frameOnce(flags uint8, payload []byte) []byte {
	op := wsframe.OpText
	if flags&wire.FlagBinary != 0 {
		op = wsframe.OpBinary
	}
	l.bcast = append(wsframe.AppendHeader(l.bcast[:0], true, op, len(payload)), payload...)
	return l.bcast
}

// linkClosed runs when a link's socket is gone.
func (l *loop) linkClosed(k *link, err error) {
	k.conn = nil
	if !k.closed {
		if !l.g.draining.Load() {
			l.g.log.Warn("link lost", "node", k.node, "addr", k.addr, "err", err)
		}
		l.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
	}
}

// unread is how many bytes wait in c's socket receive queue (SIOCINQ),
// 0 when unknown.
func unread(c gnet.Conn) int {
	n, err := unix.IoctlGetInt(c.Fd(), unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}

// backendError is an Error frame a backend sent: it is closing the link.
type backendError struct {
	code uint16
	text string
}

func (e *backendError) Error() string {
	return fmt.Sprintf("backend sent error %d: %s", e.code, e.text)
}
