package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wire"
)

// Defaults, applied by Config.setDefaults to every zero field.
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultAdmin            = "127.0.0.1:8081"
	DefaultMaxMessage       = 16 << 20          // largest client message, bytes; larger is closed with 1009
	DefaultMaxHandshake     = 8 << 10           // largest upgrade request, bytes; larger gets 431
	DefaultMaxKey           = 256               // longest routing key, bytes; longer gets 400
	DefaultHandshakeTimeout = 5 * time.Second   // upgrade request must be complete by then
	DefaultCloseTimeout     = 3 * time.Second   // wait for the client's close frame after ours
	DefaultRebalanceRate    = 2000              // rebalance closes per second, whole gateway
	DefaultLinkRetry        = 2 * time.Second   // after a failed dial, clients of that node get 1013 for this long
	DefaultKeepAlive        = wire.PingInterval // link ping interval (both sides, fixed schedule); silent 3x this = dead
	DefaultMaxClientBacklog = 32 << 20          // bytes queued to one slow client before it is closed with 1008
	DefaultMaxLinkBacklog   = 64 << 20          // bytes queued to one backend link before senders are closed with 1013
	DefaultDrainTimeout     = 10 * time.Second
	DefaultPresenceFlush    = 100 * time.Millisecond // presence batch interval
	DefaultPresenceTTL      = 10 * time.Second       // a gateway silent this long loses its presence
)

// Config configures a Gateway. The zero value of every field means its default.
type Config struct {
	ID     string // gateway id, sent to backends in Hello; default host-pid
	Listen string // client listener host:port; default DefaultListen
	Admin  string // admin HTTP host:port; default DefaultAdmin; "-" disables

	Loops     int  // event loops; default GOMAXPROCS
	ReusePort bool // SO_REUSEPORT on the client listener, for several gateway processes on one port

	MaxMessage       int           // default DefaultMaxMessage
	MaxHandshake     int           // default DefaultMaxHandshake
	MaxKey           int           // default DefaultMaxKey
	HandshakeTimeout time.Duration // default DefaultHandshakeTimeout
	CloseTimeout     time.Duration // default DefaultCloseTimeout
	RebalanceRate    int           // default DefaultRebalanceRate
	LinkRetry        time.Duration // default DefaultLinkRetry
	KeepAlive        time.Duration // link ping interval (fixed schedule); a link silent for 3x this is dead
	MaxClientBacklog int           // default DefaultMaxClientBacklog
	MaxLinkBacklog   int           // default DefaultMaxLinkBacklog
	DrainTimeout     time.Duration // Shutdown waits this long for clients to finish the close handshake
	VirtualNodes     int           // ring virtual nodes per weight unit; 0 = the ring's default

	PresenceFlush time.Duration // default DefaultPresenceFlush
	PresenceTTL   time.Duration // default DefaultPresenceTTL

	// Members yields the backend set. Required.
	Members membership.Source
	// Presence stores where users are, for every gateway of a cluster
	// (Redis). Default: none; this gateway's own session tables answer.
	Presence Presence
	// Fanout carries POST /api/broadcast to every gateway; default: this
	// gateway only.
	Fanout Fanout
	// Health names dependencies (redis, rabbitmq) and reports whether each
	// is reachable, for /readyz and metrics.
	Health map[string]func() bool
	// Nodes, when set, lets the admin API add and remove backends (dev mode).
	Nodes NodeManager
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// NodeManager starts and stops backends on request; `wsgate dev` provides one.
type NodeManager interface {
	// AddNode starts a backend and returns its id once it has joined.
	AddNode() (string, error)
	// RemoveNode stops a backend gracefully; ErrUnknownNode if there is none.
	RemoveNode(id string) error
}

// ErrUnknownNode is returned by NodeManager.RemoveNode for an id it does not know.
var ErrUnknownNode = errors.New("gateway: unknown node")

func (c *Config) setDefaults() {
	if c.ID == "" {
		h, _ := os.Hostname()
		c.ID = h + "-" + strconv.Itoa(os.Getpid())
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	def(&c.Loops, runtime.GOMAXPROCS(0))
	def(&c.MaxMessage, DefaultMaxMessage)
	def(&c.MaxHandshake, DefaultMaxHandshake)
	def(&c.MaxKey, DefaultMaxKey)
	def(&c.RebalanceRate, DefaultRebalanceRate)
	def(&c.MaxClientBacklog, DefaultMaxClientBacklog)
	def(&c.MaxLinkBacklog, DefaultMaxLinkBacklog)
	defDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	defDur(&c.CloseTimeout, DefaultCloseTimeout)
	defDur(&c.LinkRetry, DefaultLinkRetry)
	defDur(&c.KeepAlive, DefaultKeepAlive)
	defDur(&c.DrainTimeout, DefaultDrainTimeout)
	defDur(&c.PresenceFlush, DefaultPresenceFlush)
	defDur(&c.PresenceTTL, DefaultPresenceTTL)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Fanout carries broadcasts to every gateway (see internal/fanout).
type Fanout interface {
	Publish(ctx context.Context, msg []byte) error
	Subscribe(ctx context.Context, handle func([]byte))
}

// validate reports the first bad field by its flag name.
func (c *Config) validate() error {
	if c.Members == nil {
		return errors.New("gateway: no membership source (give --backend id=host:port, or run wsgate dev)")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("gateway: --listen %q: %v", c.Listen, err)
	}
	if c.Admin != "-" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			return fmt.Errorf("gateway: --admin %q: %v", c.Admin, err)
		}
	}
	for _, f := range []struct {
		name   string
		v, min int
	}{
		{"--loops", c.Loops, 1},
		{"--max-message", c.MaxMessage, 16},
		{"--max-handshake", c.MaxHandshake, 256},
		{"--max-key", c.MaxKey, 1},
		{"--rebalance-rate", c.RebalanceRate, 1},
		{"--max-client-backlog", c.MaxClientBacklog, 4096},
		{"--max-link-backlog", c.MaxLinkBacklog, 1 << 20},
		{"--virtual-nodes", c.VirtualNodes, 0},
	} {
		if f.v < f.min {
			return fmt.Errorf("gateway: %s %d: must be at least %d", f.name, f.v, f.min)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"--handshake-timeout", c.HandshakeTimeout},
		{"--close-timeout", c.CloseTimeout},
		{"--link-retry", c.LinkRetry},
		{"--keepalive", c.KeepAlive},
		{"--drain-timeout", c.DrainTimeout},
		{"--presence-flush", c.PresenceFlush},
		{"--presence-ttl", c.PresenceTTL},
	} {
		if f.v < time.Millisecond {
			return fmt.Errorf("gateway: %s %v: must be at least 1ms", f.name, f.v)
		}
	}
	return nil
}
