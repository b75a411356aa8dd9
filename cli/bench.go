package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsgate/wsgate/bench"
)

// benchFlags registers the scenario flags shared by `wsgate bench` and
// `wsgate bench compare` and returns a function that fills a Config.
func benchFlags(fs *flagSet) func(*bench.Config) {
	var (
		conns    = fs.Int("conns", bench.DefaultConns, "WebSocket connections")
		keys     = fs.Int("keys", 0, "key space: connection i uses key <key-prefix><i mod keys> (default --conns)")
		prefix   = fs.String("key-prefix", "user-", "key prefix")
		sources  = fs.Int("sources", 0, "source addresses 127.0.0.1..N to spread connections over (default: one per 7,000 connections, plus 16, at most 250)")
		loops    = fs.Int("loops", 0, "client event loops (default: number of CPUs)")
		inflight = fs.Int("inflight", bench.DefaultInflight, "handshakes in flight at once")
		crate    = fs.Float("connect-rate", 0, "new connections per second in all (split over worker processes); 0: as fast as --inflight allows")
		size     = fs.Int("size", bench.DefaultSize, "echo: message size in bytes (>= 16)")
		window   = fs.Int("window", bench.DefaultWindow, "echo: messages in flight per connection")
		rate     = fs.Int("rate", 0, "echo: messages per second per connection (0: as fast as the window allows)")
		dur      = fs.Duration("duration", bench.DefaultDuration, "echo: measured time; idle: CPU sampling time")
		warm     = fs.Duration("warmup", bench.DefaultWarmup, "echo: unmeasured time before measuring")
		pushes   = fs.Int("pushes", bench.DefaultPushes, "push: messages sent through the admin API")
		rounds   = fs.Int("broadcasts", bench.DefaultRounds, "broadcast: broadcasts sent")
		timeout  = fs.Duration("timeout", bench.DefaultTimeout, "bound on every wait (connect, delivery, reconnect)")
		quiet    = fs.Bool("quiet", false, "no progress line")
		jwtFile  = fs.String("jwt-secret-file", "", "sign an HS256 token (sub = the connection's key) for every connection, sent as ?token= (against a gateway with --auth-jwt-secret-file)")
	)
	return func(c *bench.Config) {
		c.Conns, c.Keys, c.KeyPrefix, c.Sources, c.Loops, c.Inflight, c.ConnectRate = *conns, *keys, *prefix, *sources, *loops, *inflight, *crate
		c.Size, c.Window, c.Rate, c.Duration, c.Warmup = *size, *window, float64(*rate), *dur, *warm
		c.Pushes, c.Rounds, c.Timeout = *pushes, *rounds, *timeout
		if *jwtFile != "" {
			b, err := os.ReadFile(*jwtFile)
			if err != nil {
				fmt.Fprintf(os.Stderr, "wsgate bench: --jwt-secret-file: %v\n", err)
				os.Exit(2)
			}
			c.Path = tokenPath([]byte(strings.TrimSpace(string(b))))
		}
		if !*quiet {
			c.Progress = func(line string) { fmt.Fprintf(os.Stderr, "\r\033[K%s", line) }
		}
	}
}

// tokenPath returns request paths that carry an HS256 token for the key
// (sub = key, valid for a day), signed once per key and cached: the client
// pays the signing once, the gateway pays the verification every time.
func tokenPath(secret []byte) func(key string) string {
	var mu sync.Mutex
	cache := map[string]string{}
	return func(key string) string {
		mu.Lock()
		defer mu.Unlock()
		p, ok := cache[key]
		if !ok {
			tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": key, "exp": time.Now().Add(24 * time.Hour).Unix()}).SignedString(secret)
			p = bench.DefaultPath(key) + "&token=" + tok
			cache[key] = p
		}
		return p
	}
}

// runBench runs `wsgate bench` (the load generator in bench/).
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "compare" {
		return runCompare(ctx, args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "report" {
		return runReport(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "scale" {
		return runBenchScale(ctx, args[1:], stdout)
	}
	fs := newFlagSet("wsgate bench")
	fill := benchFlags(fs)
	scen := fs.String("scenario", bench.Echo, "comma-separated scenarios: "+strings.Join(bench.Scenarios, ", "))
	addr := fs.String("addr", "127.0.0.1:8080", "target: host:port, ws://host:port or wss://host:port")
	useTLS := fs.Bool("tls", false, "wss://: TLS to --addr (as a wss:// address does)")
	tlsCA := fs.String("tls-ca", "", "wss://: PEM file of the CA certificates that verify the server (default: the system's); the name checked is --addr's host")
	tlsInsecure := fs.Bool("tls-insecure", false, "wss://: do not verify the server's certificate (the output says so)")
	tlsResume := tlsResumeFlag(fs)
	admin := fs.String("admin", "", "wsgate admin host:port (push, broadcast, rebalance; CPU, RSS and heap from /metrics)")
	pids := fs.String("pids", "", "comma-separated target pids for CPU and memory (children included), instead of --admin's /metrics")
	name := fs.String("name", "", "target name in reports (default --addr)")
	out := fs.String("out", "", "directory for results.json, results.md and results.svg")
	procs := fs.Int("procs", 0, "client processes for connect, idle and echo (default: one per 18,000 connections)")
	offset := fs.Int("key-offset", 0, "index of the first key (worker processes take slices of the key space)")
	worker := fs.Bool("worker", false, "run as a worker process of `wsgate bench --procs` (JSON on stdout)")
	migrate := fs.Bool("migrate", false, "rebalance: against a gateway with --rebalance migrate: demo counter sessions at --rate msgs/s (default 1) whose counts are checked; no client may be closed; reports each step's pauses")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	target, tlsCfg, err := benchTarget(*addr, *useTLS, *tlsCA, *tlsInsecure, *tlsResume)
	if err != nil {
		return usageError{err}
	}
	if tlsCfg != nil && tlsCfg.Insecure && !*worker {
		fmt.Fprintln(os.Stderr, "wsgate bench: --tls-insecure: the server's certificate is NOT verified")
	}
	probe := bench.Probe{Admin: *admin}
	if *pids != "" {
		var list []int
		for _, p := range strings.Split(*pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return usageError{fmt.Errorf("--pids %q: want comma-separated numbers", *pids)}
			}
			list = append(list, n)
		}
		probe.Pids = func() []int {
			var all []int
			for _, p := range list {
				all = append(all, bench.WithChildren(p)...)
			}
			return all
		}
	}
	var results []*bench.Result
	var failed error
	for _, s := range strings.Split(*scen, ",") {
		cfg := bench.Config{Scenario: strings.TrimSpace(s), Target: *name, Addr: target, TLS: tlsCfg, Admin: *admin, Probe: probe, KeyOffset: *offset,
			Migrate: *migrate}
		fill(&cfg)
		if cfg.Sources <= 0 { // of all the connections, before they are split over workers
			cfg.Sources = bench.SourcesFor(cfg.Conns)
		}
		if *worker {
			return runWorker(ctx, cfg, stdout)
		}
		n := *procs
		if n == 0 {
			n = bench.Workers(cfg.Conns)
		}
		var r *bench.Result
		var err error
		if n > 1 {
			r, err = bench.RunWorkers(ctx, cfg, n, func(conns, off int) *exec.Cmd {
				wargs := append([]string{"bench"}, args...)
				wargs = append(wargs, "--worker", "--quiet", "--scenario", cfg.Scenario,
					"--conns", strconv.Itoa(conns), "--key-offset", strconv.Itoa(off), "--sources", strconv.Itoa(cfg.Sources))
				cmd := exec.CommandContext(ctx, os.Args[0], wargs...)
				cmd.Stderr = os.Stderr
				return cmd
			})
		} else {
			r, err = bench.Run(ctx, cfg)
		}
		if r == nil {
			return usageError{err}
		}
		if cfg.Progress != nil {
			fmt.Fprint(os.Stderr, "\r\033[K")
		}
		results = append(results, r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", s, err)
			failed = errors.Join(failed, fmt.Errorf("%s: %w", s, err))
		}
	}
	bench.WriteMarkdown(stdout, bench.Summarize(results), "")
	if *out != "" {
		if err := bench.WriteFiles(*out, results, ""); err != nil {
			return err
		}
	}
	return failed
}

// tlsResumeFlag registers --tls-resume (`wsgate bench` and `bench compare`).
func tlsResumeFlag(fs *flagSet) *bool {
	return fs.Bool("tls-resume", false, "wss://: resume the TLS sessions (tickets) of earlier connections; off, every connection makes a full handshake, so handshakes/s is the full cost")
}

// benchTarget reads --addr and the TLS flags: host:port, and the TLS
// settings for wss:// (nil for plain WebSocket).
func benchTarget(addr string, useTLS bool, ca string, insecure, resume bool) (string, *bench.TLSConfig, error) {
	hostport, secure, err := bench.SplitURL(addr)
	if err != nil {
		return "", nil, err
	}
	switch {
	case useTLS && strings.HasPrefix(addr, "ws://"):
		return "", nil, fmt.Errorf("--tls with a ws:// address %q", addr)
	case ca != "" && insecure:
		return "", nil, errors.New("--tls-ca and --tls-insecure exclude each other")
	case !useTLS && !secure && (ca != "" || insecure || resume):
		return "", nil, errors.New("--tls-ca, --tls-insecure and --tls-resume need --tls or a wss:// address")
	case !useTLS && !secure:
		return hostport, nil, nil
	}
	return hostport, &bench.TLSConfig{CAFile: ca, Insecure: insecure, Resume: resume}, nil
}

// runWorker runs one scenario as a worker process: the result as one JSON
// line on stdout, histograms included; for idle, a ready line first, then
// the connections are held until stdin closes.
func runWorker(ctx context.Context, cfg bench.Config, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	cfg.Progress, cfg.Histograms = nil, true
	cfg.Hold = func(connected, failed int) {
		_ = enc.Encode(map[string]any{"ready": true, "connected": connected, "failed": failed})
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	if cfg.Scenario == bench.Broadcast { // the parent sends the broadcasts, round by round
		cfg.Control = os.Stdin
		cfg.Report = func(v any) { _ = enc.Encode(v) }
	}
	r, err := bench.Run(ctx, cfg)
	if r == nil {
		return usageError{err}
	}
	if eerr := enc.Encode(r); eerr != nil {
		return eerr
	}
	return err
}

// runCompare runs `wsgate bench compare`: wsgate, nginx and HAProxy in
// front of the same backends, in alternating rounds.
func runCompare(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("wsgate bench compare")
	fill := benchFlags(fs)
	scen := fs.String("scenarios", "connect,echo,idle", "comma-separated scenarios run against every target")
	extra := fs.String("wsgate-scenarios", "broadcast,push", "scenarios run against wsgate only (the peers have no admin API)")
	targets := fs.String("targets", "wsgate,nginx,haproxy", "comma-separated targets: wsgate (link backends), passthrough (wsgate with the plain WebSocket servers as --upstream), nginx, haproxy")
	ref := fs.String("ref", "", "target the ratio rows divide by (default: the first of --targets)")
	rounds := fs.Int("rounds", 3, "rounds; targets alternate within each round")
	backends := fs.Int("backends", 3, "demo backend processes")
	gwLoops := fs.Int("gateway-loops", 0, "wsgate --loops (default: number of CPUs)")
	out := fs.String("out", "bin/bench-results", "directory for results.json, results.md, results.svg and the peers' configs")
	useTLS := fs.Bool("tls", false, "the TLS round: every target terminates TLS with one self-signed ECDSA P-256 certificate (made into <out>/tls), the client dials wss:// and verifies it")
	tlsResume := tlsResumeFlag(fs)
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	var tlsCfg *bench.TLSConfig
	switch {
	case *useTLS:
		tlsCfg = &bench.TLSConfig{Resume: *tlsResume}
	case *tlsResume:
		return usageError{errors.New("--tls-resume needs --tls")}
	}
	var base bench.Config
	fill(&base)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cc := bench.CompareConfig{
		Binary: self, Dir: *out, Rounds: *rounds, Backends: *backends, GatewayLoops: *gwLoops,
		Targets: split(*targets), Scenarios: split(*scen), WsgateOnly: split(*extra), Base: base, TLS: tlsCfg, Log: log,
	}
	if *ref == "" && len(cc.Targets) > 0 {
		*ref = cc.Targets[0]
	}
	results, err := bench.Compare(ctx, cc)
	if len(results) > 0 {
		bench.WriteMarkdown(stdout, bench.Summarize(results), *ref)
		if werr := bench.WriteFiles(*out, results, *ref); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// runReport runs `wsgate bench report`: it renders saved results.json
// files again (Markdown on stdout; Markdown and chart into --out).
func runReport(args []string, stdout io.Writer) error {
	fs := newFlagSet("wsgate bench report")
	in := fs.List("in", "a results.json file")
	ref := fs.String("ref", "wsgate", "target the ratio rows divide by")
	out := fs.String("out", "", "directory for results.json, results.md and results.svg")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	var results []*bench.Result
	for _, f := range *in {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var rs []*bench.Result
		if err := json.Unmarshal(b, &rs); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		results = append(results, rs...)
	}
	bench.WriteMarkdown(stdout, bench.Summarize(results), *ref)
	if *out != "" {
		return bench.WriteFiles(*out, results, *ref)
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
