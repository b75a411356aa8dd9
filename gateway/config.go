package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wire"
)

// Defaults, applied by Config.setDefaults to every zero field.
const (
	DefaultListen           = "127.0.0.1:8080"
	DefaultAdmin            = "127.0.0.1:8081"
	DefaultMaxMessage       = 16 << 20          // largest client message, bytes; larger is closed with 1009
	MaxMessageLimit         = 1 << 30           // the most --max-message may be
	DefaultMaxHandshake     = 8 << 10           // largest upgrade request, bytes; larger gets 431
	DefaultMaxKey           = 256               // longest routing key, bytes; longer gets 400
	DefaultHandshakeTimeout = 5 * time.Second   // upgrade request must be complete by then
	DefaultCloseTimeout     = 3 * time.Second   // wait for the client's close frame after ours
	DefaultRebalanceRate    = 2000              // rebalance closes per second, whole gateway
	DefaultMigrateTimeout   = 5 * time.Second   // --rebalance migrate: longest wait for a node's Ready or State
	DefaultLinkRetry        = 2 * time.Second   // after a failed dial, clients of that node get 1013 for this long
	DefaultKeepAlive        = wire.PingInterval // link ping interval (both sides, fixed schedule); silent 3x this = dead
	DefaultMaxClientBacklog = 32 << 20          // bytes queued to one slow client before it is closed with 1008
	DefaultMaxLinkBacklog   = 64 << 20          // bytes queued to one backend link before senders are closed with 1013
	DefaultDrainTimeout     = 10 * time.Second
	DefaultPresenceFlush    = 100 * time.Millisecond // presence batch interval
	DefaultPresenceTTL      = 10 * time.Second       // a gateway silent this long loses its presence

	// Edge limits (docs/operations.md, "Limits").

	// DefaultMaxFrameRate: data frames per second one client may send
	// (token bucket, burst twice this); beyond it the client is closed
	// with 1008 "rate limit". Generous for chat, games and dashboards (a
	// 60 Hz game client sends 60), low enough that one client cannot keep
	// an event loop busy.
	DefaultMaxFrameRate = 1000
	// DefaultPingInterval: how often the gateway pings a client it has
	// heard nothing from (spread over the interval, one 2-byte frame).
	DefaultPingInterval = 30 * time.Second
	// DefaultIdleTimeout: a client from which nothing (not even a pong)
	// arrives for this long is closed with 1001 "idle timeout".
	DefaultIdleTimeout = 90 * time.Second
	// DefaultOutboundShare: without --max-outbound-memory, the bytes queued
	// toward all clients may use this share of the memory limit
	// (GOMEMLIMIT, else the cgroup's memory.max, else physical RAM).
	DefaultOutboundShare = 4 // 1/4
	// FDReserveMin and FDReserveShare size the descriptors kept free of
	// client connections for backend links, control links, Redis,
	// RabbitMQ, the admin listener and rejections being answered: the
	// default --max-conns is the open-file limit minus
	// max(FDReserveMin, limit/FDReserveShare), the reserve being at most a
	// quarter of the limit (20,000 -> 19,000; 1,024 -> 768; 256 -> 192).
	FDReserveMin   = 512
	FDReserveShare = 20

	// RebalanceDisconnect and RebalanceMigrate are the values of
	// Config.Rebalance (--rebalance).
	RebalanceDisconnect = "disconnect"
	RebalanceMigrate    = "migrate"

	// MaxBalanceFactor is the largest Config.BalanceFactor.
	MaxBalanceFactor = 100
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
	// BalanceFactor turns on bounded-load consistent hashing: no backend
	// takes more than ceil(BalanceFactor × its share of this gateway's
	// clients); a key whose owner is full goes to the next backend on the
	// ring with room (docs/operations.md, "Bounded loads"). 0 = off; else
	// above 1 (such as 1.25) and at most MaxBalanceFactor.
	BalanceFactor float64
	// Rebalance is what happens to a client whose owner changes:
	// RebalanceDisconnect (the default: closed with 1012, it reconnects)
	// or RebalanceMigrate (its session moves over the links, the
	// WebSocket stays open; docs/operations.md, "Migration").
	Rebalance string
	// MigrateTimeout bounds each wait of a migration (the new node's
	// Ready, the old node's State); default DefaultMigrateTimeout.
	MigrateTimeout time.Duration

	// Edge limits. For the rates and timeouts below, 0 means the default
	// and a negative value turns the limit off.
	MaxConns           int           // client sockets held (handshaking or open); default from the open-file limit (see FDReserveMin)
	MaxConnsPerIP      int           // client sockets per source address; 0 = off
	HandshakeRatePerIP float64       // upgrade attempts per second per source address (burst the same); 0 = off
	MaxFrameRate       int           // data frames per second per client; default DefaultMaxFrameRate; < 0 off
	PingInterval       time.Duration // server pings; default DefaultPingInterval; < 0 off
	IdleTimeout        time.Duration // default DefaultIdleTimeout; < 0 off
	MaxOutboundMemory  int64         // bytes queued toward all clients; default a share of the memory limit; < 0 off

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
	// ClusterSecret, when set, authenticates every link: the gateway and the
	// backend each prove they hold it (wire/auth.go) before a session frame
	// crosses. The same secret goes to every backend. Never logged.
	ClusterSecret []byte

	// TLSCert and TLSKey, PEM files, turn on TLS on the client listener
	// (tls.go): clients connect with wss://. Both or neither.
	TLSCert, TLSKey string
	// TLSReload is how often the two files are checked for a change;
	// default DefaultTLSReload (ReloadTLS, on SIGHUP, reloads at once).
	TLSReload time.Duration
	// LinkTLSCert, LinkTLSKey and LinkTLSCA turn on mutual TLS on backend
	// links (all three, and the same CA on the backends): the gateway
	// shows its certificate, and a backend must show one that chains to
	// the CA and names the address dialled.
	LinkTLSCert, LinkTLSKey, LinkTLSCA string

	// Auth turns on client authentication with JWTs (auth.go).
	Auth AuthConfig

	// AllowedOrigins lists the browser origins that may connect
	// (--allowed-origins; see originPolicy). Empty: same origin only (and
	// clients that send no Origin); "*": any.
	AllowedOrigins []string

	// AdminToken, when set, is the bearer token the admin API asks for
	// (docs/operations.md, "Security"); without it the admin listener must
	// be on a loopback address. Never logged, never in /api/info.
	AdminToken string
	// MetricsAuth: /metrics needs the admin token too.
	MetricsAuth bool
	// Pprof serves /debug/pprof on the admin listener.
	Pprof bool

	// Collectors are more metrics served on /metrics (e.g. the membership
	// source's dropped events).
	Collectors []prometheus.Collector

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

// ErrNodeLimit is returned (wrapped) by NodeManager.AddNode at its maximum
// number of nodes; POST /api/nodes answers it with 409.
var ErrNodeLimit = errors.New("maximum number of nodes reached")

// ScalerInfo is what a NodeManager may also tell the console: its driver's
// name and its maximum number of nodes.
type ScalerInfo interface {
	Name() string
	Max() int
}

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
	defDur(&c.MigrateTimeout, DefaultMigrateTimeout)
	if c.Rebalance == "" {
		c.Rebalance = RebalanceDisconnect
	}
	defDur(&c.LinkRetry, DefaultLinkRetry)
	defDur(&c.KeepAlive, DefaultKeepAlive)
	defDur(&c.DrainTimeout, DefaultDrainTimeout)
	defDur(&c.PresenceFlush, DefaultPresenceFlush)
	defDur(&c.PresenceTTL, DefaultPresenceTTL)
	defDur(&c.TLSReload, DefaultTLSReload)
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns(openFileLimit())
	}
	def(&c.MaxFrameRate, DefaultMaxFrameRate)
	defDur(&c.PingInterval, DefaultPingInterval)
	defDur(&c.IdleTimeout, DefaultIdleTimeout)
	if c.MaxOutboundMemory == 0 {
		c.MaxOutboundMemory = memoryLimit() / DefaultOutboundShare
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// DefaultMaxConns is the --max-conns default on this process: the
// open-file limit minus the descriptor reserve.
func DefaultMaxConns() int { return defaultMaxConns(openFileLimit()) }

// defaultMaxConns leaves the descriptor reserve free of client sockets.
func defaultMaxConns(nofile int) int {
	return max(1, nofile-min(max(FDReserveMin, nofile/FDReserveShare), nofile/4))
}

// openFileLimit is the process's open-file limit (Go raises the soft limit
// to the hard one at start).
func openFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(rl.Cur)
}

// memoryLimit is the memory the process may use: GOMEMLIMIT when set, else
// the cgroup v2 memory.max when set, else physical RAM.
func memoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err == nil {
		return int64(si.Totalram) * int64(si.Unit)
	}
	return 4 << 30
}

// Fanout carries broadcasts to every gateway (see internal/fanout).
type Fanout interface {
	Publish(ctx context.Context, msg []byte) error
	Subscribe(ctx context.Context, handle func([]byte))
}

// ConfigError is a Config value New refuses; its text names the flag.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return e.msg }

// validate reports the first bad field by its flag name, as a *ConfigError.
func (c *Config) validate() error {
	if err := c.check(); err != nil {
		return &ConfigError{err.Error()}
	}
	return nil
}

func (c *Config) check() error {
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
		if c.AdminToken == "" && !IsLoopbackAddr(c.Admin) {
			return fmt.Errorf("gateway: --admin %s is not a loopback address: give the admin API a token with --admin-token-file (or WSGATE_ADMIN_TOKEN), or listen on 127.0.0.1", c.Admin)
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
		{"--max-conns", c.MaxConns, 1},
		{"--max-conns-per-ip", c.MaxConnsPerIP, 0},
	} {
		if f.v < f.min {
			return fmt.Errorf("gateway: %s %d: must be at least %d", f.name, f.v, f.min)
		}
	}
	if c.MaxMessage > MaxMessageLimit {
		return fmt.Errorf("gateway: --max-message %d: at most %d (1 GiB)", c.MaxMessage, MaxMessageLimit)
	}
	if c.HandshakeRatePerIP < 0 || math.IsNaN(c.HandshakeRatePerIP) || math.IsInf(c.HandshakeRatePerIP, 0) {
		return fmt.Errorf("gateway: --handshake-rate-per-ip %v: want a rate >= 0 (0 = off)", c.HandshakeRatePerIP)
	}
	if f := c.BalanceFactor; f != 0 && !(f > 1 && f <= MaxBalanceFactor) { // NaN fails too
		return fmt.Errorf("gateway: --balance-factor %v: want 0 (off) or a factor above 1 and at most %d, such as 1.25", f, MaxBalanceFactor)
	}
	if c.Rebalance != RebalanceDisconnect && c.Rebalance != RebalanceMigrate {
		return fmt.Errorf("gateway: --rebalance %q: want %s or %s", c.Rebalance, RebalanceDisconnect, RebalanceMigrate)
	}
	if c.MaxOutboundMemory > 0 && c.MaxOutboundMemory < 1<<20 {
		return fmt.Errorf("gateway: --max-outbound-memory %d: must be at least 1 MiB (or 0 for the default)", c.MaxOutboundMemory)
	}
	if c.PingInterval > 0 && c.IdleTimeout > 0 && c.IdleTimeout <= c.PingInterval {
		return fmt.Errorf("gateway: --idle-timeout %v must be longer than --ping-interval %v (a client answers a ping)", c.IdleTimeout, c.PingInterval)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"--handshake-timeout", c.HandshakeTimeout},
		{"--close-timeout", c.CloseTimeout},
		{"--migrate-timeout", c.MigrateTimeout},
		{"--link-retry", c.LinkRetry},
		{"--keepalive", c.KeepAlive},
		{"--drain-timeout", c.DrainTimeout},
		{"--presence-flush", c.PresenceFlush},
		{"--presence-ttl", c.PresenceTTL},
		{"--tls-reload", c.TLSReload},
	} {
		if f.v < time.Millisecond {
			return fmt.Errorf("gateway: %s %v: must be at least 1ms", f.name, f.v)
		}
	}
	return nil
}
