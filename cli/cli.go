// Package cli parses wsgate's command line and runs its subcommands.
package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/fanout"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/tlscert"
	"github.com/wsgate/wsgate/scaler"
)

const usage = `wsgate — a WebSocket edge tier that routes clients by key to stateful backends.

Usage:
  wsgate dev      [flags]   a whole cluster in one process: gateway + N demo backends
  wsgate gateway  [flags]   the edge: clients in, links out to --backend nodes or --upstream servers
  wsgate backend  [flags]   a demo backend node (echo, push) behind gateways
  wsgate announce [flags]   make a plain WebSocket server a cluster member (a sidecar)
  wsgate bench    [flags]   load generator and side-by-side comparison (see docs/BENCHMARKS.md)
  wsgate version            version, commit and Go version of this build
  wsgate help               this text

Run 'wsgate <command> -h' for a command's flags. Every flag can also be set
through the environment as WSGATE_<FLAG> (e.g. WSGATE_LISTEN=0.0.0.0:8080) and
in a file given with --config (one "flag value" per line); the command line wins
over the environment, which wins over the file.
`

// Run runs the subcommand in args until ctx ends (a signal) or it fails.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	err := run(ctx, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h printed the flags
	}
	return err
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout)
	case "gateway":
		return runGateway(ctx, args[1:])
	case "backend":
		return runBackend(ctx, args[1:])
	case "announce":
		return runAnnounce(ctx, args[1:])
	case "bench":
		return runBench(ctx, args[1:], stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q; the commands are dev, gateway, backend, announce, bench, version and help", args[0])}
}

// ExitCode maps an error from Run to a process exit code: 2 for a usage
// mistake, 1 otherwise.
func ExitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// parseArgs adds --log-level and --log-format to fs (whose other flags are
// registered), parses args and returns the logger they ask for.
func parseArgs(fs *flagSet, args []string) (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)}
	}
	switch *format {
	case "text", "json":
		return newLogger(os.Stderr, lv, *format == "json"), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", *format)}
}

// clusterSecretUsage describes --cluster-secret-file, the same flag on
// gateway, backend and dev.
const clusterSecretUsage = "file holding the cluster secret (16+ characters; or the secret itself in env WSGATE_CLUSTER_SECRET): both ends of every link prove they hold it; the same on every gateway and backend"

// keepaliveUsage describes --keepalive, the same flag on gateway, backend
// and dev (both ends of a link should use the same value).
const keepaliveUsage = "link keepalive: each side pings every interval; a link silent 3x this is dead (use the same value on gateways and backends)"

// gatewayFlags registers the gateway's tuning flags on fs and returns a
// function that fills a Config from them (after parsing).
func gatewayFlags(fs *flagSet, listen, admin, defOrigins string) func(*gateway.Config) error {
	var (
		l       = fs.String("listen", listen, "client WebSocket listener host:port")
		a       = fs.String("admin", admin, "admin HTTP host:port (- disables)")
		id      = fs.String("id", "", "gateway id (default host-pid)")
		loops   = fs.Int("loops", 0, "event loops (default: number of CPUs)")
		reuse   = fs.Bool("reuseport", false, "SO_REUSEPORT, for several gateway processes on one port")
		maxMsg  = fs.Int("max-message", gateway.DefaultMaxMessage, "largest client message in bytes (larger: close 1009)")
		maxHS   = fs.Int("max-handshake", gateway.DefaultMaxHandshake, "largest upgrade request in bytes (larger: HTTP 431)")
		hsTO    = fs.Duration("handshake-timeout", gateway.DefaultHandshakeTimeout, "time allowed for the upgrade request")
		rate    = fs.Int("rebalance-rate", gateway.DefaultRebalanceRate, "clients closed per second when their owner changes")
		vnodes  = fs.Int("virtual-nodes", 0, "ring virtual nodes per weight unit (default: the ring's)")
		rebal   = fs.String("rebalance", gateway.RebalanceDisconnect, "when a client's owner changes: disconnect (close it with 1012; it reconnects) or migrate (move its session over the links; the WebSocket stays open)")
		migTO   = fs.Duration("migrate-timeout", gateway.DefaultMigrateTimeout, "--rebalance migrate: longest wait for the new node's Ready and for the old node's state")
		balance = fs.Float("balance-factor", 0, "bounded loads: no backend takes more than ceil(factor x its share) of this gateway's clients, e.g. 1.25 (0 = off)")
		keep    = fs.Duration("keepalive", gateway.DefaultKeepAlive, keepaliveUsage)
		cBack   = fs.Int("max-client-backlog", gateway.DefaultMaxClientBacklog, "bytes queued to a slow client before it is closed with 1008")
		lBack   = fs.Int("max-link-backlog", gateway.DefaultMaxLinkBacklog, "bytes queued to a backend link before senders are closed with 1013")
		drainTO = fs.Duration("drain-timeout", gateway.DefaultDrainTimeout, "on shutdown, how long clients get to finish the close handshake")
		closeTO = fs.Duration("close-timeout", gateway.DefaultCloseTimeout, "close handshake bound: a client's last replies and its close answer wait at most this long")
		// Edge limits (docs/operations.md, "Limits").
		maxConns = fs.Int("max-conns", 0, "most client connections held; beyond: HTTP 503 (default: open-file limit minus a reserve, "+
			strconv.Itoa(gateway.DefaultMaxConns())+" here)")
		perIP   = fs.Int("max-conns-per-ip", 0, "most client connections per source address; beyond: HTTP 429 (0 = off)")
		hsRate  = fs.Float("handshake-rate-per-ip", 0, "upgrades per second per source address, burst the same; beyond: HTTP 429 (0 = off)")
		frRate  = fs.Int("max-frame-rate", gateway.DefaultMaxFrameRate, "data frames per second a client may send (burst 2x); beyond: close 1008 (0 = off)")
		pingIvl = fs.Duration("ping-interval", gateway.DefaultPingInterval, "ping clients heard nothing from for this long (0 = off)")
		idleTO  = fs.Duration("idle-timeout", gateway.DefaultIdleTimeout, "close clients silent this long, pongs included, with 1001 (0 = off)")
		outMem  = fs.Bytes("max-outbound-memory", 0, "bytes queued toward all clients; over it the largest backlogs get 1008 (default: 1/4 of GOMEMLIMIT, cgroup limit or RAM)")
		// Trust (docs/operations.md, "Security").
		tokenFile   = fs.String("admin-token-file", "", "file holding the admin API's bearer token (or the token itself in env WSGATE_ADMIN_TOKEN); required for a non-loopback --admin")
		origins     = fs.String("allowed-origins", defOrigins, "comma-separated browser origins allowed to connect (https://app.example.com, https://*.example.com, or *); empty: same origin only; others get HTTP 403")
		metricsAuth = fs.Bool("metrics-auth", false, "/metrics needs the admin token too")
		clusterFile = fs.String("cluster-secret-file", "", clusterSecretUsage)
		jwtSecret   = fs.String("auth-jwt-secret-file", "", "client auth: file holding the HMAC secret (32+ bytes) of HS256/384/512 tokens")
		jwtPubKey   = fs.String("auth-jwt-public-key-file", "", "client auth: PEM public key (RSA, ECDSA or Ed25519) of RS/PS/ES/EdDSA tokens")
		jwksFile    = fs.String("auth-jwks-file", "", "client auth: JSON Web Key Set file (RSA, EC, Ed25519 keys by kid)")
		keyClaim    = fs.String("auth-key-claim", "sub", "client auth: the claim that is the routing key")
		audience    = fs.String("auth-audience", "", "client auth: required aud claim")
		issuer      = fs.String("auth-issuer", "", "client auth: required iss claim")
		anonymous   = fs.Bool("auth-allow-anonymous", false, "client auth: let clients without a token in, keyless")
		pprofOn     = fs.Bool("pprof", false, "serve /debug/pprof on the admin listener")
		tlsCert     = fs.String("tls-cert", "", "TLS on the client listener (wss://): PEM certificate chain file; reloaded when it changes or on SIGHUP")
		tlsKey      = fs.String("tls-key", "", "TLS on the client listener: PEM private key file (goes with --tls-cert)")
		tlsReload   = fs.Duration("tls-reload", gateway.DefaultTLSReload, "how often --tls-cert and --tls-key are checked for a change")
	)
	off := func(v int64) int64 { // flag 0 = off; Config 0 = default, < 0 = off
		if v == 0 {
			return -1
		}
		return v
	}
	return func(c *gateway.Config) error {
		tok, err := secret(*tokenFile, "admin-token-file", "WSGATE_ADMIN_TOKEN")
		if err != nil {
			return err
		}
		c.AdminToken, c.MetricsAuth, c.Pprof = tok, *metricsAuth, *pprofOn
		cs, err := secret(*clusterFile, "cluster-secret-file", "WSGATE_CLUSTER_SECRET")
		if err != nil {
			return err
		}
		c.ClusterSecret = []byte(cs)
		if *jwtSecret != "" {
			b, err := os.ReadFile(*jwtSecret)
			if err != nil {
				return usageError{fmt.Errorf("--auth-jwt-secret-file: %w", err)}
			}
			c.Auth.HMACSecret = []byte(strings.TrimSpace(string(b)))
		}
		if *jwtPubKey != "" {
			k, err := gateway.LoadPublicKey(*jwtPubKey)
			if err != nil {
				return usageError{fmt.Errorf("--auth-jwt-public-key-file: %w", err)}
			}
			c.Auth.PublicKey = k
		}
		if *jwksFile != "" {
			keys, err := gateway.LoadJWKS(*jwksFile)
			if err != nil {
				return usageError{fmt.Errorf("--auth-jwks-file: %w", err)}
			}
			c.Auth.JWKS = keys
		}
		c.Auth.KeyClaim, c.Auth.Audience, c.Auth.Issuer, c.Auth.AllowAnonymous = *keyClaim, *audience, *issuer, *anonymous
		for o := range strings.SplitSeq(*origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
		if err := checkHostPort("--listen", *l, true); err != nil {
			return err
		}
		if *a != "-" {
			if err := checkHostPort("--admin", *a, true); err != nil {
				return err
			}
		}
		c.Listen, c.Admin, c.ID, c.Loops, c.ReusePort = *l, *a, *id, *loops, *reuse
		c.MaxMessage, c.MaxHandshake, c.HandshakeTimeout = *maxMsg, *maxHS, *hsTO
		c.RebalanceRate, c.VirtualNodes, c.KeepAlive, c.DrainTimeout = *rate, *vnodes, *keep, *drainTO
		c.BalanceFactor, c.Rebalance, c.MigrateTimeout = *balance, *rebal, *migTO
		c.MaxClientBacklog, c.MaxLinkBacklog, c.CloseTimeout = *cBack, *lBack, *closeTO
		c.MaxConns, c.MaxConnsPerIP, c.HandshakeRatePerIP = *maxConns, *perIP, *hsRate
		for name, v := range map[string]int64{"--max-frame-rate": int64(*frRate), "--ping-interval": int64(*pingIvl), "--idle-timeout": int64(*idleTO)} {
			if v < 0 {
				return usageError{fmt.Errorf("%s: must not be negative (0 turns it off)", name)}
			}
		}
		c.MaxFrameRate = int(off(int64(*frRate)))
		c.PingInterval, c.IdleTimeout = time.Duration(off(int64(*pingIvl))), time.Duration(off(int64(*idleTO)))
		c.MaxOutboundMemory = *outMem
		c.TLSCert, c.TLSKey, c.TLSReload = *tlsCert, *tlsKey, *tlsReload
		return nil
	}
}

// secret reads a secret from the file a flag names, or from an environment
// variable holding the secret itself. Secrets never come from a flag's
// value (ps would show them) and are never logged.
func secret(file, flagName, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageError{fmt.Errorf("--%s: %w", flagName, err)}
		}
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return "", usageError{fmt.Errorf("--%s %s: the secret must be at least 16 characters", flagName, file)}
		}
		return s, nil
	}
	s := strings.TrimSpace(os.Getenv(env))
	if s != "" && len(s) < 16 {
		return "", usageError{fmt.Errorf("%s: the secret must be at least 16 characters", env)}
	}
	return s, nil
}

// randomSecret is a fresh 128-bit secret, hex-encoded (wsgate dev makes its own).
func randomSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runDev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("wsgate dev")
	// The dev dashboard (admin port) opens test clients on the client port:
	// another origin. A demo allows every origin; a gateway does not.
	fill := gatewayFlags(fs, gateway.DefaultListen, gateway.DefaultAdmin, "*")
	n := fs.Int("backends", 3, "demo backend nodes to start")
	selfSigned := fs.Bool("tls-self-signed", false, "serve wss:// with a self-signed certificate for localhost made at start (printed: give it to clients as their CA)")
	sf := addScalerFlags(fs, scaler.NameDev)
	gc := addGCFlag(fs)
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := gc.apply(); err != nil {
		return err
	}
	if *n < 1 || *n > 64 {
		return usageError{fmt.Errorf("--backends %d: want 1..64", *n)}
	}
	var cfg gateway.Config
	if err := fill(&cfg); err != nil {
		return err
	}
	if err := sf.check(true, false, cfg.ClusterSecret); err != nil {
		return err
	}
	if *sf.max > 0 && *n > *sf.max {
		return usageError{fmt.Errorf("--backends %d is more than --scaler-max %d", *n, *sf.max)}
	}
	cfg.Logger = log
	scheme, tlsNote := "ws", ""
	if *selfSigned {
		if cfg.TLSCert != "" {
			return usageError{errors.New("--tls-self-signed and --tls-cert exclude each other")}
		}
		dir, err := os.MkdirTemp("", "wsgate-dev-tls-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if cfg.TLSCert, cfg.TLSKey, err = tlscert.Write(dir, 7*24*time.Hour); err != nil {
			return err
		}
		tlsNote = "  TLS:        self-signed certificate for localhost/127.0.0.1 (this run only): " + cfg.TLSCert +
			"\n              trust it in a client, e.g. websocat --ca-file / curl --cacert; a browser asks once\n"
	}
	if cfg.TLSCert != "" {
		scheme = "wss"
	}
	tokenNote, auth := "", ""
	if cfg.AdminToken == "" && cfg.Admin != "-" && !gateway.IsLoopbackAddr(cfg.Admin) {
		// dev makes its own secret rather than expose an open admin API.
		cfg.AdminToken = randomSecret()
		tokenNote = "\n  Admin token (made for this run; the dashboard asks for it once):\n    " + cfg.AdminToken + "\n"
		auth = "-H 'Authorization: Bearer " + cfg.AdminToken + "' "
	}
	c, err := devcluster.Start(devcluster.Config{Backends: *n, Gateway: cfg, Logger: log, ClusterSecret: cfg.ClusterSecret,
		MaxBackends: *sf.max, Scaler: sf.devScaler(cfg.KeepAlive, log)})
	if ce := (*gateway.ConfigError)(nil); errors.As(err, &ce) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	g := c.Gateway()
	admin := g.AdminAddr()
	fmt.Fprintf(stdout, `wsgate dev: gateway and %d backends running (scaling driver: %[8]s).

  Dashboard:  http://%[3]s/
  WebSocket:  %[6]s://%[2]s/ws/{userId}   (also /websocket/connect/{userId}, or ?userId=)
%[7]s  Admin API:  http://%[3]s/api/nodes   /api/ring?key=K   /metrics   /healthz
  Push:       curl %[5]s-H 'Content-Type: application/json' -d '{"userId":"alice","message":"hi"}' http://%[3]s/api/send
  Scale:      curl %[5]s-H 'Content-Type: application/json' -d '{}' http://%[3]s/api/nodes ; curl %[5]s-X DELETE http://%[3]s/api/nodes/{id}
%[4]s
Ctrl-C stops the cluster (clients get close 1001).
`, *n, g.Addr(), admin, tokenNote, auth, scheme, tlsNote, c.Scaler().Name())
	go reloadOnHangup(ctx, g, log)
	select {
	case <-ctx.Done():
	case err := <-g.Fatal():
		_ = c.Shutdown(context.Background())
		return err
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+5*time.Second)
	defer cancel()
	return c.Shutdown(sctx)
}

func runGateway(ctx context.Context, args []string) error {
	fs := newFlagSet("wsgate gateway")
	fill := gatewayFlags(fs, "0.0.0.0:8080", "127.0.0.1:8081", "")
	backends := fs.List("backend", "a backend node as id=host:port[,weight] (static membership; or use --amqp and --redis)")
	upstreams := fs.List("upstream", "a plain WebSocket server as id=ws://host:port[/path][,weight]; each client gets its own connection to it (static; combines with --backend or --amqp/--redis)")
	linkTLS := addLinkTLSFlags(fs, "this gateway's client certificate on links", "the CA of the backends' certificates (a backend's must name the address dialled)")
	cf := addClusterFlags(fs)
	reconcile := fs.Duration("reconcile", 2*time.Second, "how often the member set is checked against the Redis registry")
	sf := addScalerFlags(fs, "")
	gc := addGCFlag(fs)
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := gc.apply(); err != nil {
		return err
	}
	clustered, err := cf.enabled()
	if err != nil {
		return err
	}
	var cfg gateway.Config
	var members *membership.Cluster
	if err := fill(&cfg); err != nil {
		return err
	}
	cfg.Logger = log
	cfg.LinkTLSCert, cfg.LinkTLSKey, cfg.LinkTLSCA = *linkTLS.cert, *linkTLS.key, *linkTLS.ca
	if cfg.ID == "" {
		cfg.ID = instanceID(cfg.Listen)
	}
	fixed, err := parseUpstreams(*upstreams)
	if err != nil {
		return err
	}
	switch {
	case clustered && len(*backends) > 0:
		return usageError{errors.New("--backend and --amqp/--redis exclude each other: pick static or cluster membership")}
	case clustered:
		cf.warnShared(log)
		d, err := cf.dial(ctx, "wsgate-gateway-"+cfg.ID, log)
		if err != nil {
			return err
		}
		defer d.close()
		members = &membership.Cluster{Registry: d.rdb, Broker: d.mq, Exchange: *cf.exchange, Reconcile: *reconcile, Log: log}
		if len(cfg.ClusterSecret) > 0 {
			v := membership.NewVerifier(cfg.ClusterSecret)
			members.Verify = v
			d.rdb.DecodeNode = v.DecodeNode
			for _, reason := range membership.DropReasons {
				cfg.Collectors = append(cfg.Collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
					Namespace: "wsgate_gateway", Name: "membership_events_dropped_total",
					Help:        "Membership events dropped: unsigned, forged, stale, replayed or invalid (docs/protocol.md 9.1).",
					ConstLabels: prometheus.Labels{"reason": reason}},
					func() float64 { return float64(v.Dropped()[reason]) }))
			}
		}
		cfg.Members = members
		cfg.Presence = d.rdb
		fo := &fanout.Rabbit{Broker: d.mq, Exchange: *cf.exchange + ".broadcast", Origin: cfg.ID, Secret: cfg.ClusterSecret}
		cfg.Fanout = fo
		if len(cfg.ClusterSecret) > 0 {
			for _, reason := range []string{"unsigned", "forged", "stale", "replayed", "invalid"} {
				cfg.Collectors = append(cfg.Collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
					Namespace: "wsgate_gateway", Name: "broadcasts_dropped_total",
					Help:        "Broadcasts from the exchange dropped: unsigned, forged, stale, replayed or invalid (docs/protocol.md 9.2).",
					ConstLabels: prometheus.Labels{"reason": reason}},
					func() float64 { return float64(fo.Dropped()[reason]) }))
			}
		}
		cfg.Health = d.health()
	case len(*backends) > 0 || len(fixed) > 0:
		nodes := slices.Clone(fixed)
		for _, b := range *backends {
			n, err := membership.ParseNode(b)
			if err != nil {
				return usageError{fmt.Errorf("--backend: %w", err)}
			}
			nodes = append(nodes, n)
		}
		src, err := membership.NewStatic(nodes)
		if err != nil {
			return usageError{fmt.Errorf("--backend: %w", err)}
		}
		cfg.Members = src
		fixed = nil
	default:
		return usageError{errors.New("--backend id=host:port or --upstream id=ws://host:port is required (once per node), or --amqp and --redis for cluster membership")}
	}
	if len(fixed) > 0 {
		cfg.Members = membership.Merge(fixed, cfg.Members)
	}
	if len(cfg.ClusterSecret) == 0 && (clustered || len(*backends) > 0) {
		log.Warn("no --cluster-secret-file: links to backends are not authenticated (anyone on the backend network can pose as a backend or a gateway)")
	}
	if err := sf.check(false, clustered, cfg.ClusterSecret); err != nil {
		return err
	}
	var gp atomic.Pointer[gateway.Gateway]
	nodes, err := sf.gatewayScaler(cf, &cfg, joinedOn(&gp), log)
	if err != nil {
		return err
	}
	if nodes != nil {
		cfg.Nodes = nodes
		// Children of the process driver stop with the gateway.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), scaler.DefaultStopTimeout)
			defer cancel()
			if err := nodes.Close(sctx); err != nil {
				log.Warn("scaling driver: not every backend stopped cleanly", "err", err)
			}
		}()
		log.Info("scaling driver", "scaler", nodes.Name(), "max", nodes.Max())
	}
	g, err := gateway.New(cfg)
	if err != nil {
		return usageError{err}
	}
	gp.Store(g)
	if members != nil {
		members.Alive = g.NodeAlive // a node the registry lost but this gateway reaches stays
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	go reloadOnHangup(ctx, g, log)
	select {
	case <-ctx.Done():
	case err := <-g.Fatal():
		g.Close()
		return err // exit 1: a supervisor restarts the process
	}
	log.Info("shutting down: closing clients with 1001")
	return g.Shutdown(context.Background())
}

func runBackend(ctx context.Context, args []string) error {
	fs := newFlagSet("wsgate backend")
	id := fs.String("id", "", "node id, unique in the cluster (default host-port)")
	listen := fs.String("listen", "0.0.0.0:9000", "link listener host:port that gateways dial")
	advertise := fs.String("advertise", "", "host:port gateways dial for this node (default: --listen, or this host's first non-loopback IPv4 address if it listens on all addresses)")
	admin := fs.String("admin", "127.0.0.1:0", "metrics and health HTTP host:port (- disables)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof on the admin listener (a loopback --admin only: it has no authentication)")
	weight := fs.Int("weight", 1, "share of keys relative to other nodes (1..100)")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on shutdown, how long gateways get to move clients away")
	hb := addHeartbeatFlags(fs, "registry TTL: a node silent this long (crashed) drops out")
	keep := fs.Duration("keepalive", backend.DefaultKeepAlive, keepaliveUsage)
	maxLinks := fs.Int("max-links", backend.DefaultMaxLinks, "most gateway links held (beyond: closed at once)")
	clusterFile := fs.String("cluster-secret-file", "", clusterSecretUsage)
	insecure := fs.Bool("insecure", false, "let a backend listen beyond loopback without --cluster-secret-file (anyone who reaches the port can act as a gateway)")
	maxPending := fs.Int("max-pending-links", backend.DefaultMaxPendingLinks, "most links still in the Hello handshake (beyond: closed at once)")
	plain := fs.String("ws-listen", "", "also serve the demo app as plain WebSocket on host:port (for nginx/HAProxy comparisons)")
	linkTLS := addLinkTLSFlags(fs, "this node's certificate (gateways verify it against their --link-tls-ca)", "the CA of the gateways' certificates")
	cf := addClusterFlags(fs)
	gc := addGCFlag(fs)
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := gc.apply(); err != nil {
		return err
	}
	clustered, err := cf.enabled()
	if err != nil {
		return err
	}
	if *id == "" {
		*id = instanceID(*listen)
	}
	if err := hb.check(); err != nil {
		return err
	}
	if *keep < time.Millisecond {
		return usageError{fmt.Errorf("--keepalive %v: must be at least 1ms", *keep)}
	}
	cs, err := secret(*clusterFile, "cluster-secret-file", "WSGATE_CLUSTER_SECRET")
	if err != nil {
		return err
	}
	if cs == "" && !*insecure && !gateway.IsLoopbackAddr(*listen) {
		return usageError{fmt.Errorf("--listen %s is not a loopback address and no --cluster-secret-file (or WSGATE_CLUSTER_SECRET) is set: anyone who reaches the port could act as a gateway; set a secret, or --insecure", *listen)}
	}
	if *pprofOn && (*admin == "-" || !gateway.IsLoopbackAddr(*admin)) {
		return usageError{fmt.Errorf("--pprof with --admin %s: the backend's admin listener has no authentication, so profiles are served on a loopback --admin only", *admin)}
	}
	if *maxLinks < 1 || *maxPending < 1 {
		return usageError{fmt.Errorf("--max-links %d, --max-pending-links %d: both must be at least 1", *maxLinks, *maxPending)}
	}
	if *weight < 1 || *weight > 100 {
		return usageError{fmt.Errorf("--weight %d: want 1..100", *weight)}
	}
	for flagName, v := range map[string]string{"--listen": *listen, "--advertise": *advertise, "--ws-listen": *plain} {
		if err := checkHostPort(flagName, v, flagName == "--listen"); err != nil {
			return err
		}
	}
	var tlsCfg *tls.Config
	if linkTLS.on() {
		if tlsCfg, err = backend.LinkTLSConfig(*linkTLS.cert, *linkTLS.key, *linkTLS.ca); err != nil {
			return usageError{err}
		}
	}
	node, err := demo.NewNode(backend.Config{ID: *id, Listen: *listen, Logger: log, PingInterval: *keep,
		MaxLinks: *maxLinks, MaxPendingLinks: *maxPending, ClusterSecret: []byte(cs), TLS: tlsCfg})
	if err != nil {
		return usageError{err}
	}
	var d *deps
	if clustered {
		cf.warnShared(log)
		if d, err = cf.dial(ctx, "wsgate-backend-"+*id, log); err != nil {
			return err
		}
		defer d.close()
	}
	if err := node.Start(); err != nil {
		return fmt.Errorf("backend: --listen %s: %w", *listen, err)
	}
	defer node.Close()
	stopAdmin, err := serveBackendAdmin(*admin, node, d, log, *pprofOn)
	if err != nil {
		return err
	}
	defer stopAdmin()
	if *plain != "" {
		stopPlain, err := servePlainWS(*plain, node, log)
		if err != nil {
			return fmt.Errorf("backend: --ws-listen %s: %w", *plain, err)
		}
		defer stopPlain()
	}
	self := membership.Node{ID: *id, Addr: *advertise, Weight: *weight}
	if self.Addr == "" {
		self.Addr = advertised(node.Addr())
	}
	if err := self.Validate(); err != nil {
		return usageError{err}
	}
	var ann *membership.Announcer
	if clustered {
		ann = hb.announcer(d, *cf.exchange, self, cs, log)
		if err := ann.Join(ctx); err != nil {
			return err
		}
	}
	log.Info("backend started", "id", node.ID(), "listen", node.Addr(), "advertise", self.Addr,
		"gateway_flag", "--backend "+node.ID()+"="+self.Addr)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if ann != nil {
		leave(sctx, ann, log) // first: gateways move the clients away, then the node is empty
	}
	log.Info("shutting down: waiting for gateways to move clients", "sessions", node.SessionCount())
	if err := node.Shutdown(sctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	return nil
}

// reloadOnHangup reloads the gateway's TLS certificate on SIGHUP (the
// convention of nginx and HAProxy) until ctx ends. A SIGHUP never stops
// the gateway.
func reloadOnHangup(ctx context.Context, g *gateway.Gateway, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the TLS certificate")
			_ = g.ReloadTLS() // a failure is logged and counted; the old certificate stays
		}
	}
}

// linkTLSFlags are --link-tls-cert, --link-tls-key and --link-tls-ca, the
// same on gateway and backend: mutual TLS on links.
type linkTLSFlags struct{ cert, key, ca *string }

func addLinkTLSFlags(fs *flagSet, certUsage, caUsage string) linkTLSFlags {
	return linkTLSFlags{
		cert: fs.String("link-tls-cert", "", "mutual TLS on links: PEM file of "+certUsage),
		key:  fs.String("link-tls-key", "", "mutual TLS on links: PEM private key of --link-tls-cert"),
		ca:   fs.String("link-tls-ca", "", "mutual TLS on links: PEM file of "+caUsage),
	}
}

// on reports whether any of the three was given (then all three must be).
func (f linkTLSFlags) on() bool { return *f.cert != "" || *f.key != "" || *f.ca != "" }

// version describes this build: the module version (a tag, or a pseudo
// version), the commit and its time, and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "wsgate (no build information)"
	}
	v := "wsgate " + bi.Main.Version
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		v += " commit " + rev
		if settings["vcs.modified"] == "true" {
			v += " (modified)"
		}
		if t := settings["vcs.time"]; t != "" {
			v += " " + t
		}
	}
	return v + " " + bi.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// checkHostPort validates a host:port flag value (empty: not given) with a
// numeric port in 1..65535, or 0 where a free port may be picked.
func checkHostPort(flagName, v string, zeroOK bool) error {
	if v == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return usageError{fmt.Errorf("%s %q: want host:port", flagName, v)}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || p == 0 && !zeroOK {
		return usageError{fmt.Errorf("%s %q: the port must be a number in 1..65535%s", flagName, v, map[bool]string{true: " (or 0: any free port)"}[zeroOK])}
	}
	return nil
}
