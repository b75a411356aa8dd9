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
	"strconv"
	"strings"
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
	// scaleConnsPerSource is how many connections share one 127.0.0.x
	// source address: the ephemeral port range is about 28,000 ports.
	scaleConnsPerSource = 20000
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
	// Limits lists the kernel settings the run raised or found too low.
	Limits []string `json:"limits,omitempty"`
	// Results are the bench scenarios' own figures (connect, idle,
	// broadcast at Conns; push at up to 18,000).
	Results []*bench.Result `json:"results"`
}

// runBenchScale is `wsgate bench scale`: a cluster sized for --conns
// connections on this machine (one gateway per 18,000 connections on one
// port with SO_REUSEPORT, --backends backends, cluster mode on Redis and
// RabbitMQ under private names), then the bench's connect, idle and
// broadcast at --conns and push at up to 18,000, with the peak memory per
// connection sampled meanwhile.
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
	env := append(os.Environ(), "WSGATE_CLUSTER_SECRET="+hex.EncodeToString(secret[:]))
	for i := range *backends {
		if err := c.start(env, "backends.log", append([]string{"backend", "--id", fmt.Sprintf("%s-b%d", name, i+1), "--listen", "127.0.0.1:0", "--admin", "-"}, common...)...); err != nil {
			return err
		}
	}
	nb := len(c.procs)
	port, err := bench.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var admins []string
	for i := range g {
		ap, err := bench.FreePort()
		if err != nil {
			return err
		}
		a := "127.0.0.1:" + strconv.Itoa(ap)
		admins = append(admins, a)
		if err := c.start(env, "gateways.log", append([]string{"gateway", "--id", fmt.Sprintf("%s-g%d", name, i+1), "--listen", addr, "--reuseport",
			"--loops", "1", "--admin", a, "--max-conns", "19000", "--pprof"}, common...)...); err != nil {
			return err
		}
	}
	for _, a := range admins {
		if err := waitRing(ctx, a, *backends); err != nil {
			return err
		}
	}
	gw, be := c.procs[nb:], c.procs[:nb]
	sampler := startSampler(pidsOf(gw), pidsOf(be))
	log.Info("bench scale: cluster up", "conns", *conns, "gateways", g, "backends", *backends, "addr", addr, "out", *out)
	start := time.Now()
	var pids []string
	for _, p := range pidsOf(gw) {
		pids = append(pids, strconv.Itoa(p))
	}
	base := []string{"--addr", addr, "--admin", admins[0], "--pids", strings.Join(pids, ","), "--timeout", "900s",
		"--sources", strconv.Itoa(*conns/scaleConnsPerSource + 16)}
	if *quiet {
		base = append(base, "--quiet")
	}
	var md strings.Builder
	runErr := runBench(ctx, append(base, "--scenario", "connect,idle,broadcast", "--conns", strconv.Itoa(*conns),
		"--broadcasts", "3", "--duration", "10s", "--out", filepath.Join(*out, "scale")), &md)
	// The push scenario runs in one client process (at most 18,000).
	pushErr := runBench(ctx, append(base, "--scenario", "push", "--conns", strconv.Itoa(min(*conns, scaleConnsPerGateway)),
		"--pushes", "1000", "--out", filepath.Join(*out, "push")), &md)
	rep.Seconds = int(time.Since(start).Seconds())
	peakG, peakB, peakK, baseG, baseB, baseK := sampler.stop()
	rep.GatewayRSSPerConn = (peakG - baseG) / int64(*conns)
	rep.BackendRSSPerConn = (peakB - baseB) / int64(*conns)
	rep.KernelTCPPerConn = (peakK - baseK) / int64(*conns)
	for _, dir := range []string{"scale", "push"} {
		b, err := os.ReadFile(filepath.Join(*out, dir, "results.json"))
		if err != nil {
			continue
		}
		var rs []*bench.Result
		if json.Unmarshal(b, &rs) == nil {
			rep.Results = append(rep.Results, rs...)
		}
	}
	fmt.Fprint(stdout, md.String())
	writeScaleMarkdown(stdout, rep)
	if f, err := os.Create(filepath.Join(*out, "scale.md")); err == nil {
		fmt.Fprint(f, md.String())
		writeScaleMarkdown(f, rep)
		_ = f.Close()
	}
	if *jsonFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return errors.Join(runErr, pushErr)
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
	for _, l := range rep.Limits {
		fmt.Fprintf(w, "\n- %s", l)
	}
	fmt.Fprintln(w)
}

// raiseLimits checks the kernel settings a run of conns loopback
// connections meets (two sockets each): the conntrack table (every
// loopback connection is tracked while iptables is loaded; a full table
// drops new connections), TCP memory (tcp_mem, pages) and the system's
// open files. As root it raises them, as a deployment would with sysctl;
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

// scaleCluster is the gateway and backend processes of a scale run.
type scaleCluster struct {
	bin, out string
	log      *slog.Logger
	procs    []*exec.Cmd
	logs     []*os.File
}

// start starts `wsgate args...` with env, its stderr appended to the log
// file named.
func (c *scaleCluster) start(env []string, logName string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(c.out, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	c.logs = append(c.logs, f)
	cmd := exec.Command(c.bin, args...)
	cmd.Env, cmd.Stderr = env, f
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// stop ends every process (SIGTERM, then SIGKILL after 10 s).
func (c *scaleCluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Signal(os.Interrupt)
	}
	done := make(chan struct{})
	go func() {
		for _, p := range c.procs {
			_ = p.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, p := range c.procs {
			_ = p.Process.Kill()
		}
		<-done
	}
	for _, f := range c.logs {
		_ = f.Close()
	}
}

func pidsOf(cmds []*exec.Cmd) []int {
	var out []int
	for _, c := range cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}

// waitRing polls a gateway's /api/nodes until n nodes are on its ring:
// every backend has joined, so no rebalance comes during the run.
func waitRing(ctx context.Context, admin string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var nodes []struct{ OnRing bool }
		on := 0
		if resp, err := http.Get("http://" + admin + "/api/nodes"); err == nil {
			if json.NewDecoder(resp.Body).Decode(&nodes) == nil {
				for _, nd := range nodes {
					if nd.OnRing {
						on++
					}
				}
			}
			resp.Body.Close()
		}
		if on == n {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench scale: gateway %s has %d of %d backends on its ring after 30 s (see the logs)", admin, on, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memSampler records, once a second, the gateways' and backends' RSS and
// the kernel's TCP memory, and keeps the peaks.
type memSampler struct {
	stopCh              chan struct{}
	done                chan struct{}
	peakG, peakB, peakK int64
	baseG, baseB, baseK int64
}

func startSampler(gw, be []int) *memSampler {
	s := &memSampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	s.baseG, s.baseB, s.baseK = rss(gw), rss(be), tcpMem()
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			s.peakG, s.peakB, s.peakK = max(s.peakG, rss(gw)), max(s.peakB, rss(be)), max(s.peakK, tcpMem())
			select {
			case <-s.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *memSampler) stop() (peakG, peakB, peakK, baseG, baseB, baseK int64) {
	close(s.stopCh)
	<-s.done
	return s.peakG, s.peakB, s.peakK, s.baseG, s.baseB, s.baseK
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

// tcpMem is the kernel's TCP memory (/proc/net/sockstat "TCP: ... mem N",
// pages), in bytes.
func tcpMem() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := range len(f) - 1 {
			if f[i] == "mem" {
				n, _ := strconv.ParseInt(f[i+1], 10, 64)
				return n * int64(os.Getpagesize())
			}
		}
	}
	return 0
}
