// Package gateway is wsgate's edge: a gnet engine that upgrades WebSocket
// clients itself, routes each by key on the consistent-hash ring, and relays
// frames over pooled links to the owning backend.
//
// Threading model: each gnet event loop owns its sessions and links (see
// loop); the ring is read lock-free from an atomic pointer; membership,
// pacing, the janitor, control links and the admin API run on their own
// goroutines and reach a loop only through EventLoop.Execute.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Gateway is a running wsgate gateway.
type Gateway struct {
	gnet.BuiltinEventEngine

	cfg     Config
	log     *slog.Logger
	ring    ring.Handle
	metrics *metrics

	// The engine and its loops (engine.go, loop.go), the clocks (edge.go).
	eng         gnet.Engine
	addr        string        // actual client listener address
	loopsUp     chan struct{} // closed by the first OnTick: the event loops run
	loopsUpOnce sync.Once
	runDone     chan error
	draining    atomic.Bool
	clock       atomic.Int64  // coarse unix nanos, updated by the janitor
	ms          atomic.Uint32 // coarse milliseconds since started (edge.go), updated by the janitor
	mono        atomic.Int64  // coarse nanoseconds since started, updated by the janitor
	started     time.Time     // New's time, with its monotonic reading: the origin of ms
	tick        time.Duration // the janitor's period

	releaseReq   chan struct{} // memoryReleaser's requests (cap 1)
	ownsMemLimit bool          // no GOMEMLIMIT was set: tuneMemoryLimit manages the runtime's soft limit

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	loopArr atomic.Pointer[[]*loop]

	// Admission at the edge (accept.go, limits.go, edge.go, auth.go,
	// origin.go, tls.go).
	limits     *limiter
	origins    *originPolicy
	auth       *verifier    // nil: clients are not authenticated
	tls        *edgeTLS     // nil: the client listener is plain TCP
	linkTLS    *linkTLS     // nil: links are plain TCP
	held       atomic.Int64 // client sockets admitted and not yet closed (handshaking, open, closing)
	lingering  atomic.Int64 // refused connections waiting for their client to read the answer
	starvedAt  atomic.Int64 // unix nanos of the last accept that failed for want of descriptors
	engineDown atomic.Bool  // the event loops stopped while not shutting down
	fatalCh    chan error   // gets the error that makes the gateway unhealthy for good (cap 1)

	// Routing, links and rebalance (routing.go, rebalance.go, control.go,
	// link.go).
	clients    atomic.Int64 // open sessions, all loops
	rebalanced atomic.Int64 // rebalance closes since start
	migrating  atomic.Int64 // migrations started since start (--rebalance migrate)
	heldInput  atomic.Int64 // bytes of client input held by migrations under way (migrate.go)
	rr         atomic.Uint64
	hasPlain   atomic.Bool                          // a plain upstream is on the ring: handshakes keep the headers to forward (upstream.go)
	targets    atomic.Pointer[map[string]*upTarget] // plain upstreams' resolved addresses by URL (upstream.go)
	targetsMu  sync.Mutex                           // serializes the writers of targets
	nodesMu    sync.Mutex
	perNode    map[string]*atomic.Int64
	controls   map[string]*control
	down       map[string]bool // nodes whose control link is down (nodesMu)
	plainDown  sync.Map        // plain upstreams whose last connect failed: node id -> true (upstream.go)
	members    atomic.Pointer[[]membership.Node]
	ringMu     sync.Mutex               // serializes rebuild
	loads      atomic.Pointer[loadView] // the ring with its members' counters, for bounded loads (bounded.go)
	reserved   atomic.Int64             // bounded-load places taken by upgrades not yet counted in clients

	// Presence, broadcasts and operations (presence.go, admin.go,
	// console.go, metrics.go).
	presence *presenceWriter
	console  *console     // the operations console's history and event log
	bcasts   atomic.Int64 // broadcast deliveries (client writes)

	kick   chan struct{} // wakes the pacer
	admin  *adminServer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and returns a gateway ready to Start.
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	origins, err := newOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		return nil, &ConfigError{err.Error()}
	}
	auth, err := newVerifier(cfg.Auth)
	if err != nil {
		return nil, &ConfigError{err.Error()}
	}
	var edge *edgeTLS
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if edge, err = newEdgeTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, &ConfigError{err.Error()}
		}
	}
	var lt *linkTLS
	if cfg.LinkTLSCert != "" || cfg.LinkTLSKey != "" || cfg.LinkTLSCA != "" {
		if lt, err = newLinkTLS(cfg.LinkTLSCert, cfg.LinkTLSKey, cfg.LinkTLSCA); err != nil {
			return nil, &ConfigError{err.Error()}
		}
	}
	g := &Gateway{
		tls:        edge,
		linkTLS:    lt,
		cfg:        cfg,
		log:        cfg.Logger.With("component", "gateway"),
		loopsUp:    make(chan struct{}),
		runDone:    make(chan error, 1),
		loops:      make(map[gnet.EventLoop]*loop),
		perNode:    make(map[string]*atomic.Int64),
		controls:   make(map[string]*control),
		down:       make(map[string]bool),
		kick:       make(chan struct{}, 1),
		fatalCh:    make(chan error, 1),
		releaseReq: make(chan struct{}, 1),
		limits:     newLimiter(cfg.MaxConnsPerIP, cfg.HandshakeRatePerIP),
		origins:    origins,
		auth:       auth,
	}
	g.loopArr.Store(&[]*loop{})
	g.targets.Store(&map[string]*upTarget{})
	g.started = time.Now()
	g.tickClock(g.started)
	g.tick = janitorTick(&g.cfg)
	g.ownsMemLimit = debug.SetMemoryLimit(-1) == math.MaxInt64
	g.metrics = newMetrics(g)
	g.console = newConsole()
	g.presence = &presenceWriter{g: g, store: cfg.Presence}
	if cfg.Presence == nil {
		g.cfg.Presence = localPresence{g}
		g.presence.store = nil // nothing to write
	}
	return g, nil
}

// Start runs the engine, the admin API and the membership watch. It returns
// once clients can connect and the first member set is applied.
func (g *Gateway) Start(ctx context.Context) error {
	ctx, g.cancel = context.WithCancel(context.Background())
	go func() {
		g.runDone <- gnet.Run(g, "tcp://"+g.cfg.Listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(g.cfg.Loops),
			gnet.WithReuseAddr(true), // a restarted gateway binds at once, TIME_WAIT or not
			gnet.WithReusePort(g.cfg.ReusePort),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			// Set on the listener, inherited by accepted sockets (Linux):
			// a peer that vanished frees its slot even with pings off.
			gnet.WithTCPKeepAlive(tcpKeepAlive(&g.cfg)),
			gnet.WithTCPKeepInterval(15*time.Second),
			gnet.WithTCPKeepCount(4),
			gnet.WithAcceptErrorHandler(g.acceptError),
			gnet.WithLogger(gnetLogger{g.log}),
			gnet.WithTicker(true), // OnTick tells when the loops run
		)
	}()
	select {
	case <-g.loopsUp:
	case err := <-g.runDone:
		g.cancel()
		return fmt.Errorf("gateway: --listen %s: %w", g.cfg.Listen, err)
	}
	go func() {
		err := <-g.runDone
		if !g.draining.Load() {
			g.engineDown.Store(true)
			g.log.Error("event loops stopped; the gateway takes no clients", "err", err)
			g.fatal(fmt.Errorf("gateway: event loops stopped: %v", err))
		}
	}()
	if g.cfg.MaxConns > DefaultMaxConns() {
		g.log.Warn("--max-conns leaves few descriptors for links, Redis and RabbitMQ; new clients are shed when descriptors run out",
			"max_conns", g.cfg.MaxConns, "open_file_limit", openFileLimit())
	}
	if g.cfg.Admin != "-" {
		a, err := startAdmin(g, g.cfg.Admin)
		if err != nil {
			g.stopEngine()
			g.cancel()
			return err
		}
		g.admin = a
	}
	sets, err := g.cfg.Members.Watch(ctx)
	if err != nil {
		g.Close()
		return fmt.Errorf("gateway: membership: %w", err)
	}
	first := make(chan struct{})
	g.every(ctx, consoleEvery, func(now time.Time) { g.sample(ctx, now) })
	g.wg.Add(5)
	go g.memoryReleaser(ctx)
	go g.watch(sets, first)
	go g.pace(ctx)
	go g.janitor(ctx)
	g.every(ctx, resolveEvery, g.refreshTargets)
	go func() { defer g.wg.Done(); g.presence.run(ctx) }() // returns at once without a store
	if g.tls != nil {
		// Reload the certificate when its files change (logged and
		// counted in ReloadTLS).
		g.every(ctx, g.cfg.TLSReload, func(time.Time) { _ = g.ReloadTLS() })
	}
	if g.cfg.Fanout != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.cfg.Fanout.Subscribe(ctx, g.deliverBroadcast) }()
	}
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		g.log.Warn("no member set after 10s; clients get 503 until one arrives")
	}
	g.log.Info("gateway started", "id", g.cfg.ID, "listen", g.addr, "admin", g.AdminAddr(), "loops", g.cfg.Loops)
	return nil
}

// Addr is the client listener's address.
func (g *Gateway) Addr() string { return g.addr }

// AdminAddr is the admin API's address, or "" without one.
func (g *Gateway) AdminAddr() string {
	if g.admin == nil {
		return ""
	}
	return g.admin.addr
}

// Stats is a snapshot of gateway counters.
type Stats struct {
	Clients         int64 // open client sessions
	RebalanceCloses int64 // clients closed because their owner changed, since start
	PendingMoves    int64 // clients still to close for the current rebalance
}

// Stats returns current counters. Safe from any goroutine.
func (g *Gateway) Stats() Stats {
	st := Stats{Clients: g.clients.Load(), RebalanceCloses: g.rebalanced.Load()}
	for _, l := range g.loopList() {
		st.PendingMoves += l.pending.Load()
	}
	return st
}

// NodeAlive reports whether this gateway's control link to node id is up:
// a direct liveness check the membership source may use.
func (g *Gateway) NodeAlive(id string) bool {
	c := g.control(id)
	return c != nil && c.healthy.Load()
}

// Ring is the current ring (nil before the first member set).
func (g *Gateway) Ring() *ring.Ring { return g.ring.Load() }

// Clients is the number of open client sessions.
func (g *Gateway) Clients() int { return int(g.clients.Load()) }

// NodeClients is the number of this gateway's clients routed to node id.
func (g *Gateway) NodeClients(id string) int { return int(g.nodeClients(id).Load()) }

func (g *Gateway) nodeClients(id string) *atomic.Int64 {
	g.nodesMu.Lock()
	defer g.nodesMu.Unlock()
	c := g.perNode[id]
	if c == nil {
		c = new(atomic.Int64)
		g.perNode[id] = c
	}
	return c
}

// now is the coarse time of the last janitor tick, with a monotonic reading
// (durations between two of them ignore wall-clock steps).
func (g *Gateway) now() time.Time { return g.started.Add(time.Duration(g.mono.Load())) }

// Shutdown closes every client with 1001, waits for the close handshakes
// (at most DrainTimeout or until ctx ends), then stops everything.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if !g.draining.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.DrainTimeout)
	defer cancel()
	for _, l := range g.loopList() {
		_ = l.exec(func() {
			for _, s := range l.sessions {
				l.closeSession(s, wsframe.CloseGoingAway, "gateway shutting down", false)
			}
		})
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for g.clients.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	if n := g.clients.Load(); n > 0 {
		g.log.Warn("drain timeout; closing remaining clients", "clients", n)
	}
	g.Close()
	return nil
}

// Close stops the gateway at once.
func (g *Gateway) Close() {
	g.draining.Store(true)
	if g.cancel != nil {
		g.cancel()
	}
	g.console.closeStreams() // before the admin server waits for its handlers
	if g.admin != nil {
		g.admin.close()
	}
	g.stopEngine()
	if g.ownsMemLimit {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	g.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = g.cfg.Presence.ResetGateway(ctx, g.cfg.ID)
	cancel()
	g.nodesMu.Lock()
	controls := g.controls
	g.controls = map[string]*control{}
	g.nodesMu.Unlock()
	for _, c := range controls { // without nodesMu: see control.stop
		c.stop()
	}
}

func (g *Gateway) stopEngine() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.eng.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		g.log.Debug("engine stop", "err", err)
	}
}

// fatal reports an error after which the gateway cannot serve new clients:
// /healthz fails and Fatal delivers it, so the process exits non-zero and a
// supervisor restarts it.
func (g *Gateway) fatal(err error) {
	select {
	case g.fatalCh <- err:
	default:
	}
}

// Fatal delivers the error that left the gateway unable to serve new
// clients (its accept loop stopped). The caller should exit non-zero.
func (g *Gateway) Fatal() <-chan error { return g.fatalCh }

// tcpKeepAlive is the client sockets' TCP keepalive idle time: 60 s, or
// twice the ping interval when server pings are longer apart than 30 s.
// With pings on, a ping reaches every idle client before a keepalive probe
// would, and the idle timeout closes the dead ones; a keepalive shorter
// than the pings only adds packets: at a million clients on 60 s it is
// 16,700 probes a second, which on this machine's loopback overflowed the
// kernel's backlog (`wsgate bench scale`, docs/BENCHMARKS.md).
func tcpKeepAlive(c *Config) time.Duration {
	return max(60*time.Second, 2*c.PingInterval)
}

// janitorTick is the janitor's period: 250ms, or a quarter of the link
// keepalive, the client ping interval or the idle timeout when one is
// shorter (so each keeps its schedule), at least 5ms.
func janitorTick(c *Config) time.Duration {
	t := 250 * time.Millisecond
	for _, d := range []time.Duration{c.KeepAlive, c.PingInterval, c.IdleTimeout} {
		if d > 0 {
			t = min(t, d/4)
		}
	}
	return max(t, 5*time.Millisecond)
}

// janitor drives every loop's sweep and the coarse clock.
func (g *Gateway) janitor(ctx context.Context) {
	defer g.wg.Done()
	tick := time.NewTicker(g.tick)
	defer tick.Stop()
	lastLimits, lastMem := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			g.tickClock(now)
			for _, l := range g.loopList() {
				_ = l.exec(func() { l.noteLag(now); l.sweep(now) })
			}
			if now.Sub(lastLimits) >= 10*time.Second {
				lastLimits = now
				g.limits.sweep(now)
			}
			if now.Sub(lastMem) >= time.Second {
				lastMem = now
				g.tuneMemoryLimit()
			}
		}
	}
}

// gnetLogger sends gnet's own logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any) {
	// gnet warns of every event for a connection already closed (a reset
	// flood makes thousands): not the operator's concern, and a way for a
	// client to fill the logs.
	if strings.HasPrefix(f, "received event") {
		g.l.Debug(fmt.Sprintf(f, a...))
		return
	}
	g.l.Warn(fmt.Sprintf(f, a...))
}
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
