package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/bench"
)

// Sizes of `wsgate bench scale`.
const (
	// scaleConnsPerGateway is how many clients one gateway process takes:
	// a process may hold about 19,000 descriptors on the machines this was
	// built on (ulimit -Hn 20,000), and a gateway needs a few for links,
	// Redis and RabbitMQ.
	scaleConnsPerGateway = 18000
)

// ScaleReport is what `wsgate bench scale --json FILE` writes.
type ScaleReport struct {
	Date     string `json:"date"`
	Command  string `json:"command"`
	Conns    int    `json:"conns"`
	Gateways int    `json:"gateways"`
	Backends int    `json:"backends"`
	Seconds  int    `json:"seconds"` // the whole run
	// Peak resident memory over the run per connection, above the
	// processes' baseline before any client connected.
	GatewayRSSPerConn int64 `json:"gateway_rss_bytes_per_conn"`
	BackendRSSPerConn int64 `json:"backend_rss_bytes_per_conn"`
	// Peak kernel TCP memory (/proc/net/sockstat) per connection, both
	// ends on loopback.
	KernelTCPPerConn int64 `json:"kernel_tcp_bytes_per_conn"`
	// BacklogDrops is how many received packets the kernel dropped for a
	// full backlog during the run (/proc/net/softnet_stat): each is a
	// retransmission, or a lost keepalive probe.
	BacklogDrops int64 `json:"backlog_drops"`
	// Limits lists the kernel settings the run raised or found too low.
	Limits []string `json:"limits,omitempty"`
	// Results are the bench scenarios' own figures (connect, idle,
	// broadcast at Conns; push at up to 18,000).
	Results []*bench.Result `json:"results"`
}

// runBenchScale is `wsgate bench scale`: a cluster sized for --conns
// connections on this machine (one gateway per 18,000 connections on one
// port with SO_REUSEPORT, --backends backends, cluster mode on Redis and
// RabbitMQ under private names), then client worker processes that
// connect every client once, paced at --connect-rate, and hold them while
// the parent measures idle, broadcasts to all and pushes to random users
// (bench.RunHold), with the memory sampled meanwhile.
func runBenchScale(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("wsgate bench scale")
	conns := fs.Int("conns", 100000, "connections")
	backends := fs.Int("backends", 4, "backend processes")
	gateways := fs.Int("gateways", 0, "gateway processes (default: one per 18,000 connections)")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	out := fs.String("out", "", "directory for the bench's results and the processes' logs (default bin/scale-<conns>)")
	amqpURL := fs.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	redisURL := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	level := fs.String("cluster-log-level", "warn", "log level of the gateways and backends")
	quiet := fs.Bool("quiet", false, "no progress line")
	rate := fs.Float("connect-rate", 3500, "new client connections per second, in all (0: as fast as each worker's handshake window allows)")
	procs := fs.Int("procs", 0, "client worker processes (default: one per 18,000 connections)")
	ping := fs.Duration("ping-interval", 0, "the gateways' --ping-interval (default: theirs)")
	hsTimeout := fs.Duration("handshake-timeout", 0, "the gateways' --handshake-timeout (default: theirs); a load generator starved on the same cores sends its requests late")
	keepalive := fs.Duration("keepalive", 0, "the gateways' and backends' link --keepalive (default: theirs); a link silent 3x this is dropped, and loops starved that long by a 2-core machine count as silent")
	pushes := fs.Int("pushes", 1000, "pushes to distinct random users")
	rounds := fs.Int("broadcasts", 3, "broadcasts to every client")
	idleFor := fs.Duration("duration", 10*time.Second, "how long the idle CPU is measured")
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *conns < 1:
		return usageError{fmt.Errorf("--conns %d: want at least 1", *conns)}
	case *backends < 1 || *backends > 64:
		return usageError{fmt.Errorf("--backends %d: want 1..64", *backends)}
	case *gateways < 0:
		return usageError{fmt.Errorf("--gateways %d: want 0 (automatic) or more", *gateways)}
	case *procs < 0 || *procs > *conns:
		return usageError{fmt.Errorf("--procs %d: want 0 (automatic) to --conns", *procs)}
	case *rate < 0:
		return usageError{fmt.Errorf("--connect-rate %v: want 0 or more", *rate)}
	case *keepalive < 0:
		return usageError{fmt.Errorf("--keepalive %v: want 0 (the default) or more", *keepalive)}
	case *hsTimeout < 0:
		return usageError{fmt.Errorf("--handshake-timeout %v: want 0 (the gateways' default) or more", *hsTimeout)}
	case *ping < 0:
		return usageError{fmt.Errorf("--ping-interval %v: want 0 (the gateways' default) or more", *ping)}
	}
	if *procs == 0 {
		*procs = bench.Workers(*conns)
	}
	g := *gateways
	if g == 0 {
		g = (*conns + scaleConnsPerGateway - 1) / scaleConnsPerGateway
	}
	if *out == "" {
		*out = filepath.Join("bin", "scale-"+strconv.Itoa(*conns))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rep := &ScaleReport{Date: time.Now().UTC().Format("2006-01-02"), Command: "wsgate bench scale " + strings.Join(args, " "),
		Conns: *conns, Gateways: g, Backends: *backends}
	rep.Limits = raiseLimits(*conns, log)
	c := &scaleCluster{bin: self, out: *out, log: log}
	defer c.stop()
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	name := fmt.Sprintf("scale-%d-%d", os.Getpid(), time.Now().Unix())
	common := []string{"--amqp", *amqpURL, "--redis", *redisURL, "--exchange", name, "--redis-prefix", name, "--log-level", *level}
	if *keepalive > 0 { // both sides: a backend drops a link silent for 3x its own
		common = append(common, "--keepalive", keepalive.String())
	}
	env := append(os.Environ(), "WSGATE_CLUSTER_SECRET="+hex.EncodeToString(secret[:]))
	for i := range *backends {
		if _, err := c.start(env, "backends.log", append([]string{"backend", "--id", fmt.Sprintf("%s-b%d", name, i+1), "--listen", "127.0.0.1:0", "--admin", "-"}, common...)...); err != nil {
			return err
		}
	}
	nb := len(c.procs)
	port, err := bench.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if undo, note := untrack(port, log); note != "" {
		rep.Limits = append(rep.Limits, note)
		defer undo()
	}
	if *ping > 0 { // the idle timeout keeps the defaults' ratio, three pings
		common = append(common, "--ping-interval", ping.String(), "--idle-timeout", (3 * *ping).String())
	}
	if *hsTimeout > 0 { // gateways only, as the pings: the backends have started
		common = append(common, "--handshake-timeout", hsTimeout.String())
	}
	// One event loop a gateway and one a worker: one P each keeps the
	// runtime from waking a second thread per process (context switches
	// led the profile of a run with 112 processes on 2 cores).
	admins, err := c.startGateways(ctx, g, *backends, func(i int, admin string) []string {
		return append([]string{"gateway", "--id", gatewayID(name, i), "--listen", addr, "--reuseport",
			"--loops", "1", "--admin", admin, "--max-conns", "19000", "--pprof"}, common...)
	}, append(env, "GOMAXPROCS=1"), name)
	if err != nil {
		return err
	}
	rep.Limits = append(rep.Limits, warmLinks(ctx, addr, g, log))
	gw, be := c.procs[nb:], c.procs[:nb]
	var progress io.Writer
	if !*quiet {
		progress = os.Stderr
	}
	sampler := startSampler(pidsOf(gw), pidsOf(be), *conns, progress)
	log.Info("bench scale: cluster up", "conns", *conns, "gateways", g, "backends", *backends, "client_procs", *procs, "addr", addr, "out", *out)
	start, drops0 := time.Now(), softnetDrops()
	sources := bench.SourcesFor(*conns)
	cfg := bench.Config{Target: "wsgate", Addr: addr, Admin: admins[0], Conns: *conns, Sources: sources,
		Rounds: *rounds, Pushes: *pushes, Duration: *idleFor, Timeout: 900 * time.Second, Log: log, OnPhase: sampler.mark,
		Probe: bench.Probe{Pids: func() []int { return pidsOf(gw) }}, Backends: &bench.Probe{Pids: func() []int { return pidsOf(be) }}}
	results, runErr := bench.RunHold(ctx, cfg, *procs, func(n, off int) *exec.Cmd {
		cmd := exec.CommandContext(ctx, self, "bench", "--worker", "--quiet", "--scenario", bench.Broadcast, "--addr", addr,
			"--admin", admins[0], "--conns", strconv.Itoa(n), "--key-offset", strconv.Itoa(off), "--sources", strconv.Itoa(sources),
			"--timeout", cfg.Timeout.String(), "--connect-rate", strconv.FormatFloat(*rate/float64(*procs), 'f', 3, 64),
			"--loops", "1") // one thread a worker: fewer context switches on a machine this busy
		cmd.Stderr = os.Stderr
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
		return cmd
	})
	rep.Seconds = int(time.Since(start).Seconds())
	rep.BacklogDrops = softnetDrops() - drops0
	series := sampler.stop()
	peakG, peakB, peakK, baseG, baseB, baseK := series.peaks()
	rep.GatewayRSSPerConn = (peakG - baseG) / int64(*conns)
	rep.BackendRSSPerConn = (peakB - baseB) / int64(*conns)
	rep.KernelTCPPerConn = (peakK - baseK) / int64(*conns)
	rep.Results = results
	if err := bench.WriteFiles(*out, results, ""); err != nil {
		return err
	}
	if dead := c.exited(); len(dead) > 0 {
		rep.Limits = append(rep.Limits, fmt.Sprintf("processes that ended during the run: %s (see the logs)", strings.Join(dead, ", ")))
		runErr = errors.Join(runErr, fmt.Errorf("bench scale: %d cluster processes ended during the run", len(dead)))
	}
	if err := os.WriteFile(filepath.Join(*out, "scale.svg"), []byte(series.chart(rep)), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	bench.WriteMarkdown(&md, bench.Summarize(results), "")
	writeScaleMarkdown(&md, rep)
	fmt.Fprint(stdout, md.String())
	if err := os.WriteFile(filepath.Join(*out, "scale.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	if *jsonFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return runErr
}

// writeScaleMarkdown writes the memory figures of rep as a table.
func writeScaleMarkdown(w io.Writer, rep *ScaleReport) {
	fmt.Fprintf(w, "\n**scale: %d connections** (%s; %d gateways, %d backends, whole run %d s)\n\n",
		rep.Conns, rep.Date, rep.Gateways, rep.Backends, rep.Seconds)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "| --- | --- |")
	fmt.Fprintf(w, "| gateways' RSS per connection (peak over the run) | %d B |\n", rep.GatewayRSSPerConn)
	fmt.Fprintf(w, "| backends' RSS per connection (peak) | %d B |\n", rep.BackendRSSPerConn)
	fmt.Fprintf(w, "| kernel TCP memory per connection (peak, both ends on loopback) | %d B |\n", rep.KernelTCPPerConn)
	fmt.Fprintf(w, "| packets dropped for a full backlog (softnet_stat) | %d |\n", rep.BacklogDrops)
	for _, r := range rep.Results {
		if r.Scenario == bench.Idle {
			fmt.Fprintf(w, "| at idle: gateways' memory per connection (PSS) | %.0f B |\n", r.MemPerConn)
			fmt.Fprintf(w, "| at idle: backends' memory per connection (PSS) | %.0f B |\n", r.BackendMemPerConn)
			fmt.Fprintf(w, "| at idle: user-space memory per connection, gateways and backends | %.0f B |\n", r.MemPerConn+r.BackendMemPerConn)
			fmt.Fprintf(w, "| at idle: CPU of the gateways, of the backends (%% of one core) | %.1f%%, %.1f%% |\n", r.IdleCPU, r.BackendIdleCPU)
		}
	}
	for _, l := range rep.Limits {
		fmt.Fprintf(w, "\n- %s", l)
	}
	fmt.Fprintln(w)
}

// raiseLimits checks the kernel settings a run of conns loopback
// connections meets (two sockets each): the conntrack table (every
// loopback connection is tracked while iptables is loaded; a full table
// drops new connections), TCP memory (tcp_mem, pages), the system's open
// files and the backlog of received packets. As root it raises them, as a deployment would with sysctl;
// otherwise it says which is too low.
func raiseLimits(conns int, log *slog.Logger) []string {
	var notes []string
	for _, l := range []struct {
		path string
		want int64
	}{
		{"/proc/sys/net/netfilter/nf_conntrack_max", 3*int64(conns) + 100000},
		{"/proc/sys/net/ipv4/tcp_mem", int64(conns) + 500000}, // pages: its maximum (the third value)
		{"/proc/sys/fs/file-max", 3*int64(conns) + 100000},
		// Loopback packets wait in a per-CPU backlog of this many before
		// the softirq takes them; past it they are dropped (the drops are
		// column 2 of /proc/net/softnet_stat). With the default 1,000, a
		// run of 700,000 lost millions of packets on 2 busy cores: SYNs
		// retried after seconds, keepalive probes unanswered, and the
		// kernel aborted established connections.
		{"/proc/sys/net/core/netdev_max_backlog", int64(conns) / 10},
	} {
		b, err := os.ReadFile(l.path)
		if err != nil {
			continue // no such setting here (no conntrack module)
		}
		fields := strings.Fields(string(b))
		cur, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
		if err != nil || cur >= l.want {
			continue
		}
		name := strings.ReplaceAll(strings.TrimPrefix(l.path, "/proc/sys/"), "/", ".")
		val := strconv.FormatInt(l.want, 10)
		if len(fields) == 3 {
			val = fmt.Sprintf("%d %d %d", l.want/4, l.want/2, l.want)
		}
		if err := os.WriteFile(l.path, []byte(val), 0o644); err != nil {
			n := fmt.Sprintf("%s is %d, below the %d this run needs: raise it (as root: sysctl -w %s=...) or expect failures past it", name, cur, l.want, name)
			log.Warn("bench scale: " + n)
			notes = append(notes, n)
			continue
		}
		n := fmt.Sprintf("raised %s from %d to %d", name, cur, l.want)
		log.Info("bench scale: " + n)
		notes = append(notes, n)
	}
	return notes
}

// untrackRules are the iptables raw-table rules that keep the run's
// client connections (to and from port %d on loopback) out of the
// connection tracking table.
var untrackRules = [][]string{
	{"OUTPUT", "-o", "lo", "-p", "tcp", "--dport", "%d", "-j", "NOTRACK"},
	{"OUTPUT", "-o", "lo", "-p", "tcp", "--sport", "%d", "-j", "NOTRACK"},
	{"PREROUTING", "-i", "lo", "-p", "tcp", "--dport", "%d", "-j", "NOTRACK"},
	{"PREROUTING", "-i", "lo", "-p", "tcp", "--sport", "%d", "-j", "NOTRACK"},
}

// untrack exempts the gateways' port from connection tracking for the
// run, as an edge host under a million connections does (conntrack costs
// a table entry and a lookup per packet; perf of a 300,000 run put
// netfilter at about 7% of the machine). It needs root and iptables;
// otherwise it says so and the run goes on tracked. undo removes the
// rules.
func untrack(port int, log *slog.Logger) (undo func(), note string) {
	rule := func(op string, r []string) error {
		args := []string{"-t", "raw", op}
		for _, a := range r {
			args = append(args, strings.ReplaceAll(a, "%d", strconv.Itoa(port)))
		}
		out, err := exec.Command("iptables", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	var added [][]string
	undo = func() {
		for _, r := range added {
			if err := rule("-D", r); err != nil {
				log.Warn("bench scale: removing the NOTRACK rule failed; remove it by hand", "rule", strings.Join(r, " "), "err", err)
			}
		}
	}
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_max"); err != nil {
		return undo, "" // no connection tracking here
	}
	for _, r := range untrackRules {
		if err := rule("-I", r); err != nil {
			undo()
			n := fmt.Sprintf("connections to port %d stay in the conntrack table (iptables -t raw NOTRACK failed: %v)", port, err)
			log.Warn("bench scale: " + n)
			return func() {}, n
		}
		added = append(added, r)
	}
	n := fmt.Sprintf("connections to port %d exempt from connection tracking for the run (iptables -t raw ... -j NOTRACK, removed after)", port)
	log.Info("bench scale: " + n)
	return undo, n
}

// scaleCluster is the gateway and backend processes of a scale run.
type scaleCluster struct {
	bin, out string
	log      *slog.Logger
	procs    []*scaleProc
	logs     []*os.File
}

// scaleProc is one process of the cluster; done is closed when it has
// ended (a goroutine waits for it from the start).
type scaleProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // its exit; read after done
}

func (p *scaleProc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start starts `wsgate args...` with env, its stderr appended to the log
// file named.
func (c *scaleCluster) start(env []string, logName string, args ...string) (*scaleProc, error) {
	f, err := os.OpenFile(filepath.Join(c.out, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.logs = append(c.logs, f)
	cmd := exec.Command(c.bin, args...)
	cmd.Env, cmd.Stderr = env, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &scaleProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

// gatewayID is the --id of gateway i (from 0) of the run called name.
func gatewayID(name string, i int) string { return fmt.Sprintf("%s-g%d", name, i+1) }

// startGateways starts n gateways (args(i, admin) is the command line of
// gateway i with its admin address), each on its own admin port, and
// waits until each answers as itself with all backends on its ring. A
// gateway that ends while starting (its admin port taken meanwhile: the
// ports are free when chosen, not reserved) is started again on new
// ports, up to 3 times. It returns the admin addresses.
func (c *scaleCluster) startGateways(ctx context.Context, n, backends int, args func(i int, admin string) []string, env []string, name string) ([]string, error) {
	const tries = 3
	admins := make([]string, n)
	procs := make([]*scaleProc, n)
	ports, err := bench.FreePorts(n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		admins[i] = "127.0.0.1:" + strconv.Itoa(ports[i])
		if procs[i], err = c.start(env, "gateways.log", args(i, admins[i])...); err != nil {
			return nil, err
		}
	}
	for i := range n {
		for try := 1; ; try++ {
			err := waitGateway(ctx, procs[i], admins[i], gatewayID(name, i), backends, 30*time.Second)
			if !errors.Is(err, errEnded) || try == tries {
				if err != nil {
					return nil, err
				}
				break
			}
			c.drop(procs[i])
			c.log.Warn("bench scale: a gateway ended while starting; starting it again on new ports", "id", gatewayID(name, i), "admin", admins[i], "exit", procs[i].err, "log", filepath.Join(c.out, "gateways.log"))
			// A port not given to a gateway already (those not started
			// yet have closed their listeners, so the kernel may offer one).
			p, err := bench.FreePorts(n + 1)
			if err != nil {
				return nil, err
			}
			for _, port := range p {
				a := "127.0.0.1:" + strconv.Itoa(port)
				if !slices.Contains(admins, a) {
					admins[i] = a
					break
				}
			}
			if procs[i], err = c.start(env, "gateways.log", args(i, admins[i])...); err != nil {
				return nil, err
			}
		}
	}
	return admins, nil
}

// errEnded says a cluster process ended while it was awaited.
var errEnded = errors.New("bench scale: the process ended")

// Sizes of the warm-up before a scale run (warmLinks).
const (
	warmPerGateway = 40 // clients per gateway a pass (SO_REUSEPORT spreads them by hash: with 4 backends a given gateway misses one with odds of about (3/4)^40, and that link is dialled alone in the run)
	warmPasses     = 5
)

// warmLinks connects and closes warmPerGateway clients per gateway, in
// passes, until a pass has no failure (at most warmPasses), and says how
// it went. A gateway loop dials its link to a backend when its first
// client for that backend comes; 56 gateways dialling 4 backends at once
// exceed what a backend takes from one source address (16 link handshakes
// pending), and the first clients of a cold cluster get 503 (Retry-After)
// while the refused links are held off. A cluster in service has its links
// up, and the measured run starts from there. The warm-up's keys
// ("warm<pass>-<i>") are not the run's.
func warmLinks(ctx context.Context, addr string, gateways int, log *slog.Logger) string {
	var failed []int // per pass
	for pass := 1; pass <= warmPasses; pass++ {
		r, err := bench.Run(ctx, bench.Config{Scenario: bench.Connect, Target: "wsgate", Addr: addr, Conns: gateways * warmPerGateway,
			KeyPrefix: "warm" + strconv.Itoa(pass) + "-", ConnectRate: 1000, Loops: 1, Timeout: 30 * time.Second})
		n := 0
		if r != nil {
			for _, k := range r.Failures {
				n += k
			}
		}
		if err == nil && n == 0 {
			note := fmt.Sprintf("links warmed before the run: %d clients a pass, %d passes (failures in earlier passes: %v)", gateways*warmPerGateway, pass, failed)
			log.Info("bench scale: " + note)
			return note
		}
		failed = append(failed, n)
		log.Info("bench scale: warming the links", "pass", pass, "failed", n, "err", err)
	}
	note := fmt.Sprintf("links still failing after %d warm-up passes (failures a pass: %v); the run goes on", warmPasses, failed)
	log.Warn("bench scale: " + note)
	return note
}

// waitGateway polls a gateway's /api/info until it answers with its own
// id (not another process that holds the port) and n backends on its
// ring, every one healthy on /api/nodes (its link up: a backend refuses
// links beyond its pending-handshake limit when 56 gateways link at once,
// and they come back a moment later). Every backend has joined, so no
// rebalance comes during the run.
// It returns errEnded at once if the process ends, and an error after
// within.
func waitGateway(ctx context.Context, p *scaleProc, admin, id string, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	var info struct {
		ID          string `json:"id"`
		RingMembers int    `json:"ringMembers"`
	}
	healthy := 0
	for {
		if p.ended() {
			return fmt.Errorf("%w: gateway %s (%v)", errEnded, id, p.err)
		}
		getJSON("http://"+admin+"/api/info", &info)
		if info.ID == id && info.RingMembers == n {
			var nodes []struct{ Healthy bool }
			getJSON("http://"+admin+"/api/nodes", &nodes)
			healthy = 0
			for _, nd := range nodes {
				if nd.Healthy {
					healthy++
				}
			}
			if healthy == n {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench scale: gateway %s (admin %s) not up with %d healthy backends on its ring after %v: it answers as %q with %d on its ring, %d healthy (see the logs)", id, admin, n, within, info.ID, info.RingMembers, healthy)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// drop forgets p, a process that ended and was replaced.
func (c *scaleCluster) drop(p *scaleProc) {
	c.procs = slices.DeleteFunc(c.procs, func(q *scaleProc) bool { return q == p })
}

// pollClient bounds each poll: a process that accepts and never answers
// (stopped, or not a gateway) must not hold the wait past its deadline.
var pollClient = &http.Client{Timeout: 2 * time.Second}

// getJSON decodes the JSON at url into v; v is left as it was when the
// request or the decoding fails (the caller polls again).
func getJSON(url string, v any) {
	resp, err := pollClient.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
}

// exited names the cluster processes that have ended.
func (c *scaleCluster) exited() []string {
	var out []string
	for _, p := range c.procs {
		if p.ended() {
			out = append(out, fmt.Sprintf("pid %d (%s: %v)", p.cmd.Process.Pid, p.cmd.Args[1], p.err))
		}
	}
	return out
}

// stop ends every process (SIGINT, then SIGKILL after 10 s).
func (c *scaleCluster) stop() {
	for _, p := range c.procs {
		_ = p.cmd.Process.Signal(os.Interrupt)
	}
	deadline := time.After(10 * time.Second)
	for _, p := range c.procs {
		select {
		case <-p.done:
		case <-deadline:
			for _, q := range c.procs {
				_ = q.cmd.Process.Kill()
			}
			<-p.done
		}
	}
	for _, f := range c.logs {
		_ = f.Close()
	}
}

// pidsOf is the process ids of ps, the live ones (a dead gateway's pid
// may be reused).
func pidsOf(ps []*scaleProc) []int {
	var out []int
	for _, p := range ps {
		if !p.ended() {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

// memSampler records, once a second, the gateways' and backends' RSS, the
// kernel's TCP memory and sockets in use, and with a progress writer
// prints a status line every 5 s.
type memSampler struct {
	stopCh chan struct{}
	done   chan struct{}
	t0     time.Time
	mu     sync.Mutex // guards s.phases (mark runs on the bench's goroutine)
	s      scaleSeries
}

// mark records that the phase name ended now (bench.Config.OnPhase).
func (m *memSampler) mark(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.phases = append(m.s.phases, scalePhase{secs: time.Since(m.t0).Seconds(), name: name})
}

// scaleSeries is what the sampler recorded: the baselines before any
// client, then one sample a second, and when each phase of the run ended.
type scaleSeries struct {
	baseG, baseB, baseK int64
	samples             []scaleSample
	phases              []scalePhase
}

// scalePhase is the end of a phase of the run, seconds after the
// sampler started (the chart's time axis).
type scalePhase struct {
	secs float64
	name string
}

type scaleSample struct {
	secs          float64
	sockets       int64 // TCP sockets in use (both ends of every loopback connection)
	gw, be, kernl int64 // bytes
}

func startSampler(gw, be []int, conns int, progress io.Writer) *memSampler {
	m := &memSampler{stopCh: make(chan struct{}), done: make(chan struct{}), t0: time.Now()}
	m.s.baseG, m.s.baseB = rss(gw), rss(be)
	m.s.baseK, _ = tcpStat()
	t0 := m.t0
	go func() {
		defer close(m.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; ; i++ {
			k, socks := tcpStat()
			smp := scaleSample{secs: time.Since(t0).Seconds(), sockets: socks, gw: rss(gw), be: rss(be), kernl: k}
			m.s.samples = append(m.s.samples, smp)
			if progress != nil && i%5 == 0 {
				load, _ := os.ReadFile("/proc/loadavg")
				f := strings.Fields(string(load))
				if len(f) == 0 {
					f = []string{"?"}
				}
				// A whole line each time, not one redrawn with \r: the
				// run's phase lines and warnings come between them.
				fmt.Fprintf(progress, "scale %4.0fs  TCP sockets %d (~%d of %d clients)  gateways %d MB  backends %d MB  kernel TCP %d MB  load %s\n",
					smp.secs, socks, socks/2, conns, smp.gw>>20, smp.be>>20, smp.kernl>>20, f[0])
			}
			select {
			case <-m.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memSampler) stop() *scaleSeries {
	close(m.stopCh)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return &m.s
}

// peaks returns the peak and baseline gateway RSS, backend RSS and kernel
// TCP memory.
func (s *scaleSeries) peaks() (peakG, peakB, peakK, baseG, baseB, baseK int64) {
	for _, x := range s.samples {
		peakG, peakB, peakK = max(peakG, x.gw), max(peakB, x.be), max(peakK, x.kernl)
	}
	return peakG, peakB, peakK, s.baseG, s.baseB, s.baseK
}

// chart draws the run over time as SVG: clients connected (TCP sockets
// / 2) on the left axis, the gateways' and backends' RSS and the
// kernel's TCP memory in MB on the right, and a dashed line where each
// phase of the run ended.
func (s *scaleSeries) chart(rep *ScaleReport) string {
	const w, h, left, right, top, bottom = 760, 340, 70, 70, 40, 40
	var maxT, maxC, maxM float64 = 1, 1, 1
	for _, x := range s.samples {
		maxT, maxC = max(maxT, x.secs), max(maxC, float64(x.sockets/2))
		maxM = max(maxM, float64(x.gw>>20), float64(x.be>>20), float64(x.kernl>>20))
	}
	px := func(t float64) float64 { return left + t/maxT*(w-left-right) }
	py := func(v, top2 float64) float64 { return h - bottom - v/top2*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">wsgate bench scale: %d connections, %d gateways, %d backends (%s)</text>`+"\n",
		left, rep.Conns, rep.Gateways, rep.Backends, rep.Date)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`+"\n", left, h-bottom, w-right, h-bottom)
	for i := 0; i <= 4; i++ {
		y := py(maxC*float64(i)/4, maxC)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%d</text>`, left-6, y+4, int(maxC*float64(i)/4))
		fmt.Fprintf(&b, `<text x="%d" y="%.0f">%d MB</text>`+"\n", w-right+6, y+4, int(maxM*float64(i)/4))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">0 s</text><text x="%d" y="%d" text-anchor="end">%.0f s</text>`+"\n",
		left, h-bottom+16, w-right, h-bottom+16, maxT)
	for i, p := range s.phases {
		x := px(min(p.secs, maxT))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#aaa" stroke-dasharray="4 3"/>`, x, top, x, h-bottom)
		// Labels step down so that phases close together stay legible,
		// and end at the line in the right half.
		tx, anchor := x+3, "start"
		if x > w/2 {
			tx, anchor = x-3, "end"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#555" text-anchor="%s">%.0f s: %s</text>`+"\n",
			tx, top+10+12*(i%4), anchor, p.secs, p.name)
	}
	lines := []struct {
		name, color string
		v           func(scaleSample) float64
		top         float64
	}{
		{"clients connected", "#1f77b4", func(x scaleSample) float64 { return float64(x.sockets / 2) }, maxC},
		{"gateways RSS (MB)", "#d62728", func(x scaleSample) float64 { return float64(x.gw >> 20) }, maxM},
		{"backends RSS (MB)", "#2ca02c", func(x scaleSample) float64 { return float64(x.be >> 20) }, maxM},
		{"kernel TCP (MB)", "#9467bd", func(x scaleSample) float64 { return float64(x.kernl >> 20) }, maxM},
	}
	for i, l := range lines {
		b.WriteString(`<polyline fill="none" stroke-width="2" stroke="` + l.color + `" points="`)
		for _, x := range s.samples {
			fmt.Fprintf(&b, "%.1f,%.1f ", px(x.secs), py(l.v(x), l.top))
		}
		b.WriteString("\"/>\n")
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", left+10+i*160, h-8, l.color, l.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// rss is the summed resident memory of pids, in bytes.
func rss(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				sum += kb * 1024
			}
		}
	}
	return sum
}

// softnetDrops is the packets the kernel dropped for a full per-CPU
// backlog, all CPUs (column 2 of /proc/net/softnet_stat, hex).
func softnetDrops() int64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var sum int64
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			n, _ := strconv.ParseInt(f[1], 16, 64)
			sum += n
		}
	}
	return sum
}

// tcpStat is the kernel's TCP memory in bytes and TCP sockets in use,
// from /proc/net/sockstat ("TCP: inuse N ... mem M", pages).
func tcpStat() (mem, inuse int64) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := range len(f) - 1 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "mem":
				mem = n * int64(os.Getpagesize())
			case "inuse":
				inuse = n
			}
		}
	}
	return mem, inuse
}
