package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wire"
)

// control is the gateway's out-of-band link to one backend: a plain
// blocking connection with its own goroutine, off the event loops. It tells
// whether the node is healthy and carries admin requests (push).
type control struct {
	g    *Gateway
	node membership.Node

	healthy atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex // guards conn writes and waiters
	conn    net.Conn
	nextReq uint32
	waiters map[uint32]chan pushResult
}

// pushResult is a backend's PushResult: sessions reached, and whether a
// session of the key is between nodes (wire.FlagMoving).
type pushResult struct {
	n      uint32
	moving bool
}

// errNotConnected is returned by push while the control link is down.
var errNotConnected = errors.New("gateway: backend control link is down")

// syncControls starts a control link per member and stops those of nodes
// that left (or moved).
func (g *Gateway) syncControls(set []membership.Node) {
	g.nodesMu.Lock()
	defer g.nodesMu.Unlock()
	want := make(map[string]membership.Node, len(set))
	for _, n := range set {
		if !n.Plain() { // a plain upstream has no control link: its clients have their own connections
			want[n.ID] = n
		}
	}
	for id, c := range g.controls {
		if n, ok := want[id]; !ok || n.Addr != c.node.Addr {
			go c.stop() // stop waits for run, which may be in setDown (nodesMu)
			delete(g.controls, id)
			delete(g.down, id)
		}
	}
	for id, n := range want {
		if g.controls[id] == nil {
			c := &control{g: g, node: n, done: make(chan struct{}), waiters: make(map[uint32]chan pushResult)}
			c.ctx, c.cancel = context.WithCancel(context.Background())
			g.controls[id] = c
			go c.run()
		}
	}
}

func (g *Gateway) control(id string) *control {
	g.nodesMu.Lock()
	defer g.nodesMu.Unlock()
	return g.controls[id]
}

// stop ends the control link and waits for its goroutine. It must not be
// called with nodesMu held: the goroutine may be waiting for it in setDown.
func (c *control) stop() {
	c.cancel() // closes the socket (see session)
	<-c.done
	c.g.metrics.forgetNode(c.node.ID) // a node that left is no alert
}

// run keeps the control link up, redialling with backoff until stopped.
// A link that dies and whose immediate redial fails marks the node down
// locally; the next successful handshake marks it up again.
func (c *control) run() {
	defer close(c.done)
	// The first redial after a loss is immediate; then 100 ms doubling to
	// 5 s, each wait randomized ±50% so that gateways that lost a node
	// together do not redial it in step.
	b := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 5 * time.Second}
	b.Reset()
	wait := time.Duration(0)
	for c.ctx.Err() == nil {
		wasUp, err := c.session()
		c.healthy.Store(false)
		c.g.metrics.linkUp(c.node.ID, false)
		if c.ctx.Err() != nil {
			return
		}
		if wasUp {
			wait = 0
			b.Reset()
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				c.g.metrics.linkSilent(c.node.ID) // heard nothing for 3 keepalive intervals
			}
		} else {
			c.g.setDown(c, true)
		}
		c.g.log.Warn("backend control link down", "node", c.node.ID, "addr", c.node.Addr, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = b.NextBackOff()
	}
}

// dial connects to the backend: plain TCP, or mutual TLS with
// --link-tls-* (a failed TLS handshake counts as a link authentication
// failure).
func (c *control) dial() (net.Conn, error) {
	const timeout = 5 * time.Second
	if lt := c.g.linkTLS; lt != nil {
		_, tc, err := lt.dial(c.ctx, c.node.Addr, timeout)
		if tlsErr := (*linkTLSError)(nil); errors.As(err, &tlsErr) {
			c.g.metrics.linkAuthFailed(c.node.ID)
		}
		if err != nil {
			return nil, err
		}
		return tc, nil
	}
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(c.ctx, "tcp", c.node.Addr)
}

// session dials, exchanges Hello, then reads until the link fails. up
// reports whether the handshake completed.
func (c *control) session() (up bool, err error) {
	conn, err := c.dial()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	// stop may come at any point of the session, even before c.conn is
	// set: cancelling the context closes the socket, which ends any read.
	defer context.AfterFunc(c.ctx, func() { _ = conn.Close() })()
	keep := c.g.cfg.KeepAlive
	// The Hello must come within 5 s, or within the link's silence bound
	// when that is shorter: a backend that is stopped (SIGSTOP) or hung
	// still has its socket accepted by the kernel, and waiting longer than
	// a silent link would be waited for keeps it on the ring for nothing.
	_ = conn.SetDeadline(time.Now().Add(min(5*time.Second, wire.DeadIntervals*keep)))
	hello := wire.AppendHello(nil, wire.Hello{Version: wire.Version, Role: wire.RoleGateway,
		MaxBody: wire.DefaultMaxBody, NodeID: c.g.cfg.ID})
	secret := c.g.cfg.ClusterSecret
	nonce := wire.NewNonce()
	if len(secret) > 0 {
		hello = wire.AppendAuth(hello, wire.Auth{Step: wire.AuthChallenge, Nonce: nonce})
	}
	if _, err := conn.Write(hello); err != nil {
		return false, err
	}
	r := wire.NewReader(conn, wire.DefaultMaxBody)
	h, body, err := r.ReadFrame()
	if err != nil {
		return false, err
	}
	if h.Type != wire.TypeHello {
		return false, fmt.Errorf("expected hello, got frame type %d", h.Type)
	}
	bh, err := wire.ParseHello(body)
	if err != nil {
		return false, err
	}
	if bh.NodeID != c.node.ID || bh.Role != wire.RoleBackend {
		return false, fmt.Errorf("backend at %s says it is node %q (role %d), membership says %q", c.node.Addr, bh.NodeID, bh.Role, c.node.ID)
	}
	if len(secret) > 0 {
		if err := c.authenticate(conn, r, secret, nonce); err != nil {
			c.g.metrics.linkAuthFailed(c.node.ID)
			return false, err
		}
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.conn = nil
		for id, w := range c.waiters {
			close(w)
			delete(c.waiters, id)
		}
		c.mu.Unlock()
	}()
	c.healthy.Store(true)
	c.g.metrics.linkUp(c.node.ID, true)
	c.g.setDown(c, false)

	stopPing := make(chan struct{})
	defer close(stopPing)
	go func() {
		t := time.NewTicker(keep)
		defer t.Stop()
		for {
			select {
			case <-stopPing:
				return
			case <-t.C:
				_ = c.send(wire.AppendFrame(nil, wire.TypePing, 0, 0, make([]byte, 8)))
			}
		}
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(3 * keep))
		h, body, err := r.ReadFrame()
		if err != nil {
			return true, err
		}
		switch h.Type {
		case wire.TypePushResult:
			n, err := wire.ParsePushResult(body)
			if err != nil {
				return true, err
			}
			c.mu.Lock()
			if w := c.waiters[h.Session]; w != nil {
				w <- pushResult{n, h.Flags&wire.FlagMoving != 0}
				delete(c.waiters, h.Session)
			}
			c.mu.Unlock()
		case wire.TypePing:
			_ = c.send(wire.AppendFrame(nil, wire.TypePong, 0, 0, body))
		case wire.TypeError:
			code, text, _ := wire.ParseError(body)
			return true, fmt.Errorf("backend error %d: %s", code, text)
		}
	}
}

// authenticate checks the backend's proof (its Auth after its Hello) and
// sends ours (wire/auth.go), on the control link's own goroutine.
func (c *control) authenticate(conn net.Conn, r *wire.Reader, secret []byte, nonce [wire.NonceSize]byte) error {
	h, body, err := r.ReadFrame()
	if err != nil {
		return err
	}
	if h.Type != wire.TypeAuth {
		return fmt.Errorf("backend %s did not authenticate (sent %v): is its --cluster-secret-file set?", c.node.ID, h.Type)
	}
	confirm, err := wire.GatewayConfirm(secret, c.g.cfg.ID, c.node.ID, nonce, body)
	if err != nil {
		_, _ = conn.Write(wire.AppendError(nil, wire.CodeProtocol, "cluster authentication failed"))
		return fmt.Errorf("backend %s at %s failed cluster authentication: %w", c.node.ID, c.node.Addr, err)
	}
	_, err = conn.Write(wire.AppendAuth(nil, confirm))
	return err
}

func (c *control) send(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return errNotConnected
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.conn.Write(frame)
	return err
}

// push asks the backend to deliver data to every session of key and
// returns how many it reached.
func (c *control) push(ctx context.Context, key string, data []byte) (pushResult, error) {
	c.mu.Lock()
	if c.conn == nil {
		c.mu.Unlock()
		return pushResult{}, errNotConnected
	}
	c.nextReq++
	id := c.nextReq
	w := make(chan pushResult, 1)
	c.waiters[id] = w
	c.mu.Unlock()
	if err := c.send(wire.AppendPush(nil, id, []byte(key), data)); err != nil {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
		return pushResult{}, err
	}
	select {
	case r, ok := <-w:
		if !ok {
			return pushResult{}, errNotConnected
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
		return pushResult{}, ctx.Err()
	}
}
