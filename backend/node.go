// Package backend is the SDK a service runs behind the wsgate gateway.
//
// A Node listens for links from gateways (docs/protocol.md). Over each link
// the gateway multiplexes many client WebSocket sessions; the Node turns the
// link's frames into calls on the service's Handler and gives the service
// Session.Send/Close, Node.SendToKey and Node.Broadcast to talk back.
//
// Goroutines: one accept goroutine per Node; per link one reader goroutine
// (handshake, frame decoding, fragment reassembly and every Handler call
// for that link's sessions) and one writer goroutine (flushes the link's
// output buffer and sends keepalive Pings). Handler methods therefore run
// on the link's reader goroutine and should not block for long: a blocked
// handler stalls every session of its link (the writer keeps the link alive
// meanwhile). The one exception is OnClose after a Session.Close made
// outside that session's own handler calls: it runs on a goroutine of its
// own.
//
// Writes from any goroutine are coalesced: a Send appends its frames to the
// link's output buffer under a mutex and wakes the writer, which swaps the
// buffer for a spare one and writes everything pending in one syscall.
package backend

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/internal/keyhash"
)

// Handler is implemented by the service. Calls for one session are
// serialized (OnOpen, then OnMessage..., then exactly one OnClose) but
// different sessions and links may run concurrently. Handler methods must
// not call Node.Shutdown or Node.Close (they wait for handler calls to end).
type Handler interface {
	// OnOpen is called when a client session opens.
	OnOpen(s *Session)
	// OnMessage is called for each whole (reassembled) client message.
	// data is valid only during the call; copy it to keep it.
	OnMessage(s *Session, binary bool, data []byte)
	// OnClose is called once when the session ends: the client left (the
	// gateway's code and reason), the service closed it (its own code and
	// reason), a message was too big (1009), a fragmented message did not
	// fit the link's reassembly budget (1013, "link reassembly limit"; see
	// Config.MaxLinkReassembly), the link was lost (1006, "link lost") or
	// the node closed (1001, "node shutting down").
	OnClose(s *Session, code uint16, reason string)
	// OnPush handles an admin push to a key (a wire Push) and returns how
	// many sessions it delivered to. data is valid only during the call.
	OnPush(key string, data []byte) int
}

// Errors returned by Node and Session methods.
var (
	// ErrSessionClosed: the session has ended or was closed by the service.
	ErrSessionClosed = errors.New("backend: session closed")
	// ErrBufferFull: the link's output buffer is over Config.MaxLinkBuffer
	// (the gateway is not reading fast enough); the message was dropped.
	ErrBufferFull = errors.New("backend: link output buffer full")
	// ErrNodeClosed: Start after Close or Shutdown.
	ErrNodeClosed = errors.New("backend: node closed")
	// ErrStarted: Start called twice.
	ErrStarted = errors.New("backend: node already started")
	// ErrCloseCode: a close code that must not be sent in a WebSocket close
	// frame (valid: 1000-1003, 1007-1014, 3000-4999).
	ErrCloseCode = errors.New("backend: invalid close code")
	// ErrCloseReason: a close reason over 123 bytes or not valid UTF-8.
	ErrCloseReason = errors.New("backend: close reason over 123 bytes or not UTF-8")
)

// WebSocket close codes the SDK reports in OnClose or sends.
const (
	closeNormal    = 1000
	closeGoingAway = 1001
	closeAbnormal  = 1006
	closeTooBig    = 1009
	closeTryAgain  = 1013

	// reassemblyReason is the close reason of a session closed by
	// Config.MaxLinkReassembly.
	reassemblyReason = "link reassembly limit"
)

// Node accepts links from gateways and dispatches their sessions to a
// Handler. Create it with NewNode; all methods are safe for concurrent use.
type Node struct {
	cfg Config
	h   Handler
	log *slog.Logger

	// mu guards the fields below. Lock order: Node.mu, then link.smu, then
	// link.wmu, then Session.mu; a goroutine holding a later lock never
	// takes an earlier one.
	mu        sync.RWMutex
	ln        net.Listener
	started   bool
	closed    bool
	draining  bool
	drained   chan struct{}      // closed (by checkDrained) once draining && sessions == 0
	isDrained bool               // drained is closed
	links     map[*link]struct{} // every accepted link, including in handshake
	pending   int                // links still in the Hello handshake
	pendingBy map[string]int     // the same, by source address
	// keys: each key's sessions on this node, by keyHash(key), a list
	// through Session.nextKey that holds the sessions of every key with
	// that hash: walkers compare keys (a key has few sessions; a list costs
	// a pointer in the session, which stays in its size class, where a
	// slice cost a slice header in the map and an allocation per key).
	keys     map[uint64]*Session
	keyHash  func(key string) uint64 // keyhash.Of; tests make keys collide
	sessions int
	// moving: keys with a session that arrived or left by migration
	// lately, until when (migrate.go); swept now and then.
	moving      map[string]time.Time
	movingSwept time.Time

	stats counters // lock-free; read by Stats

	lnOnce     sync.Once
	acceptStop chan struct{} // closed (closeListener) when the listener is closed

	// wg counts the accept goroutine, every link's reader and writer
	// goroutines and every OnClose goroutine started by Session.Close.
	// Add is only called by a goroutine already counted, or (Session.Close)
	// under Session.mu before the link's reader can finish, so it never
	// races with Wait at zero.
	wg sync.WaitGroup
}

// NewNode validates cfg (errors name the offending field) and returns a
// Node that dispatches to h. Call Start to listen.
func NewNode(cfg Config, h Handler) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if h == nil {
		err = errors.Join(err, errors.New("backend: Handler is nil"))
	}
	if err != nil {
		return nil, err
	}
	return &Node{
		cfg:        cfg,
		h:          h,
		log:        cfg.Logger.With("node", cfg.ID),
		drained:    make(chan struct{}),
		acceptStop: make(chan struct{}),
		links:      make(map[*link]struct{}),
		pendingBy:  make(map[string]int),
		keys:       make(map[uint64]*Session),
		keyHash:    keyhash.Of,
		moving:     make(map[string]time.Time),
	}, nil
}

// Start listens on Config.Listen and accepts links in the background. It
// returns once the listener is up.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed || n.draining:
		return ErrNodeClosed
	case n.started:
		return ErrStarted
	}
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return err
	}
	n.ln, n.started = ln, true
	n.wg.Add(1)
	go n.acceptLoop(ln)
	n.log.Info("backend listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the actual listen address (host:port) after Start, "" before.
func (n *Node) Addr() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// ID returns the node id (Config.ID).
func (n *Node) ID() string { return n.cfg.ID }

// SessionCount returns the number of sessions currently open on this node,
// across all links.
func (n *Node) SessionCount() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.sessions
}

// Stats are a node's counters since it started.
type Stats struct {
	Sessions              int           // open sessions, over all links
	Links                 int           // gateway links, including those in handshake
	MessagesIn, BytesIn   uint64        // whole client messages handed to OnMessage, and their payload bytes
	MessagesOut, BytesOut uint64        // messages queued to clients (a key send or broadcast counts once per session)
	LinksSilent           uint64        // links dropped because nothing was heard on them for Config.LinkTimeout
	LinksPending          int           // links still in the Hello handshake (included in Links)
	LinksRejected         LinksRejected // connections closed before they became links, by reason
	// SessionsReassemblyShed counts sessions closed with 1013 because a
	// fragment would have taken their link over Config.MaxLinkReassembly.
	SessionsReassemblyShed uint64
}

// LinksRejected counts connections the node closed before they became
// links, by reason (the Prometheus label in ByReason is in parentheses).
type LinksRejected struct {
	MaxLinks     uint64 // (max_links) accepted while Config.MaxLinks links were held; closed at once
	MaxPending   uint64 // (max_pending) accepted while Config.MaxPendingLinks were in the handshake; closed at once
	HelloTimeout uint64 // (hello_timeout) no complete Hello within Config.HelloTimeout
	FDExhausted  uint64 // (fd_exhausted) accepted and closed on the reserve descriptor while the process was out of descriptors
	BadHello     uint64 // (bad_hello) the first frame was not an acceptable gateway Hello (answered with an Error frame)
	BadAuth      uint64 // (bad_auth) the peer did not prove it holds Config.ClusterSecret (answered with an Error frame)
	BadTLS       uint64 // (bad_tls) the TLS handshake failed (Config.TLS: no or an untrusted client certificate, not TLS)
}

// ByReason returns the counters keyed by reason label: "max_links",
// "max_pending", "hello_timeout", "fd_exhausted", "bad_hello" and
// "bad_auth", "bad_tls" (always all seven).
func (r LinksRejected) ByReason() map[string]uint64 {
	return map[string]uint64{
		rejectReasons[rejectMaxLinks]:     r.MaxLinks,
		rejectReasons[rejectMaxPending]:   r.MaxPending,
		rejectReasons[rejectHelloTimeout]: r.HelloTimeout,
		rejectReasons[rejectFDExhausted]:  r.FDExhausted,
		rejectReasons[rejectBadHello]:     r.BadHello,
		rejectReasons[rejectBadAuth]:      r.BadAuth,
		rejectReasons[rejectBadTLS]:       r.BadTLS,
	}
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.RLock()
	st := Stats{Sessions: n.sessions, Links: len(n.links), LinksPending: n.pending}
	n.mu.RUnlock()
	rj := &n.stats.rejected
	st.LinksRejected = LinksRejected{
		MaxLinks:     rj[rejectMaxLinks].Load(),
		MaxPending:   rj[rejectMaxPending].Load(),
		HelloTimeout: rj[rejectHelloTimeout].Load(),
		FDExhausted:  rj[rejectFDExhausted].Load(),
		BadHello:     rj[rejectBadHello].Load(),
		BadAuth:      rj[rejectBadAuth].Load(),
		BadTLS:       rj[rejectBadTLS].Load(),
	}
	st.SessionsReassemblyShed = n.stats.shed.Load()
	st.MessagesIn, st.BytesIn = n.stats.msgsIn.Load(), n.stats.bytesIn.Load()
	st.MessagesOut, st.BytesOut = n.stats.msgsOut.Load(), n.stats.bytesOut.Load()
	st.LinksSilent = n.stats.silent.Load()
	return st
}

// counters are the node's message counters, updated by link goroutines
// with atomic adds (no lock on the message path).
type counters struct {
	msgsIn, bytesIn, msgsOut, bytesOut atomic.Uint64
	silent                             atomic.Uint64 // links dropped by the silence rule
	rejected                           [numRejectReasons]atomic.Uint64
	rejectLog                          [numRejectReasons]logEvery
	shed                               atomic.Uint64 // sessions closed by MaxLinkReassembly
	shedLog                            logEvery
}

func (c *counters) countIn(size int) {
	c.msgsIn.Add(1)
	c.bytesIn.Add(uint64(size))
}

// countOut counts one message of size bytes sent to n sessions.
func (c *counters) countOut(n, size int) {
	c.msgsOut.Add(uint64(n))
	c.bytesOut.Add(uint64(n * size))
}

// SendToKey sends a message to every session of key on this node: one
// SendKey frame per link that has such sessions (per-session Message frames
// instead when the message does not fit one frame of the gateway's
// MaxBody). It returns the number of sessions reached. Keyless sessions
// belong to no key.
func (n *Node) SendToKey(key string, binary bool, data []byte) int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	// Group the key's sessions by link; a key has few sessions on few links.
	var lbuf [8]*link
	var cbuf [8]int
	links, counts := lbuf[:0], cbuf[:0]
next:
	for s := range n.keySessions(key) {
		for i, l := range links {
			if l == s.l {
				counts[i]++
				continue next
			}
		}
		links, counts = append(links, s.l), append(counts, 1)
	}
	total := 0
	for i, l := range links {
		total += l.sendKey(key, binary, data, counts[i])
	}
	return total
}

// Broadcast sends a message to every session on this node: one Broadcast
// frame per link with sessions (per-session Message frames instead when the
// message does not fit one frame of the gateway's MaxBody). It returns the
// number of sessions reached.
func (n *Node) Broadcast(binary bool, data []byte) int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	total := 0
	for l := range n.links {
		total += l.broadcast(binary, data)
	}
	return total
}

// Shutdown drains the node: it stops accepting links, answers new Opens
// with Close 1001, and waits until every session is gone (the gateway moves
// them) or ctx ends; then it closes the links (an Error frame with
// wire.CodeGoingAway when drained) and waits for the Node's goroutines. It
// returns ctx.Err() if ctx ended first (the remaining sessions then get
// OnClose 1001). Calling it again, or after Close, is harmless.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if !n.draining {
		n.draining = true
		n.checkDrained()
		n.log.Info("backend draining", "sessions", n.sessions)
	}
	n.mu.Unlock()
	n.closeListener()

	select {
	case <-n.drained:
	case <-ctx.Done():
		_ = n.Close()
		return ctx.Err()
	}
	n.mu.RLock()
	for l := range n.links {
		l.closeGraceful()
	}
	n.mu.RUnlock()
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		_ = n.Close()
		return nil
	case <-ctx.Done():
		_ = n.Close()
		return ctx.Err()
	}
}

// Close closes the listener and every link at once; sessions get OnClose
// 1001 "node shutting down". It waits for the Node's goroutines (and so
// for running handler calls) to end. Idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	first := !n.closed
	n.closed = true
	n.draining = true
	n.checkDrained()
	if first {
		for l := range n.links {
			l.closeHard()
		}
	}
	n.mu.Unlock()
	n.closeListener()
	n.wg.Wait()
	return nil
}

// closeListener closes the listener (if Start made one) and wakes the
// accept loop from a backoff. Idempotent; called after draining is set, so
// Start can no longer create a listener.
func (n *Node) closeListener() {
	n.lnOnce.Do(func() {
		n.mu.RLock()
		ln := n.ln
		n.mu.RUnlock()
		if ln != nil {
			_ = ln.Close()
		}
		close(n.acceptStop)
	})
}

// removeLink forgets l (its reader is ending).
func (n *Node) removeLink(l *link) {
	n.mu.Lock()
	delete(n.links, l)
	n.mu.Unlock()
}

// isDraining reports whether Shutdown or Close has begun.
func (n *Node) isDraining() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.draining
}

// addSession counts s and indexes it by key (keyless sessions are not).
func (n *Node) addSession(s *Session) {
	n.mu.Lock()
	n.sessions++
	n.index(s)
	n.mu.Unlock()
}

// index adds s to its key's list (keyless sessions have none). Called with
// n.mu held.
func (n *Node) index(s *Session) {
	if s.keyless {
		return
	}
	h := n.keyHash(s.Key())
	head := n.keys[h]
	for x := head; x != nil; x = x.nextKey {
		if x == s { // indexed already: linking it again would make a cycle
			return
		}
	}
	s.nextKey = head
	n.keys[h] = s
}

// keySessions yields key's sessions on n: those in the list under key's
// hash whose key is key (another key may share the hash). Called with
// n.mu held.
func (n *Node) keySessions(key string) iter.Seq[*Session] {
	return func(yield func(*Session) bool) {
		for s := n.keys[n.keyHash(key)]; s != nil; s = s.nextKey {
			if s.Key() == key && !yield(s) {
				return
			}
		}
	}
}

// checkDrained closes n.drained once the node is draining and has no
// sessions. Called with n.mu held.
func (n *Node) checkDrained() {
	if n.draining && n.sessions == 0 && !n.isDrained {
		n.isDrained = true
		close(n.drained)
	}
}

// removeSession undoes addSession; the last session of a draining node
// releases Shutdown.
func (n *Node) removeSession(s *Session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sessions--
	n.checkDrained()
	n.unindex(s)
}

// unindex takes s out of its key's list. Called with n.mu held.
func (n *Node) unindex(s *Session) {
	if s.keyless {
		return
	}
	h := n.keyHash(s.Key())
	head := n.keys[h]
	if head == s {
		if s.nextKey == nil {
			delete(n.keys, h)
		} else {
			n.keys[h] = s.nextKey
		}
		s.nextKey = nil
		return
	}
	for x := head; x != nil; x = x.nextKey {
		if x.nextKey == s {
			x.nextKey = s.nextKey
			s.nextKey = nil
			return
		}
	}
}
