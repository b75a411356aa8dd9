package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/wsgate/wsgate/internal/tlscert"
)

// CompareConfig configures a side-by-side run: the same demo backends
// behind wsgate, nginx and HAProxy in turn.
type CompareConfig struct {
	Binary       string   // the wsgate binary (backends and gateway run as its subcommands)
	Dir          string   // output directory: peers' configs and logs go below it
	Rounds       int      // rounds; each round runs every target, in a rotating order
	Backends     int      // demo backend processes
	GatewayLoops int      // wsgate --loops; 0: its default (CPUs)
	Targets      []string // "wsgate", "passthrough", "nginx", "haproxy"
	Scenarios    []string // run against every target
	WsgateOnly   []string // run against wsgate only (push, broadcast)
	Base         Config   // scenario settings; Scenario, Target, Addr, Admin and Probe are filled in
	// TLS, if set, runs the TLS round: every target terminates TLS with one
	// self-signed ECDSA P-256 certificate made into <Dir>/tls, in front of
	// the same plain backends, and the client dials wss:// trusting that
	// certificate (TLS.CAFile is set to it).
	TLS *TLSConfig
	Log *slog.Logger
}

// tlsFiles are the TLS round's certificate files (absolute paths).
type tlsFiles struct {
	Cert, Key string // PEM certificate, PEM private key
	PEM       string // both in one file, as HAProxy's crt wants
}

// writeTLSFiles makes a self-signed ECDSA P-256 certificate for 127.0.0.1
// and localhost into dir.
func writeTLSFiles(dir string) (*tlsFiles, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cert, key, err := tlscert.Write(dir, 30*24*time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	cb, err1 := os.ReadFile(cert)
	kb, err2 := os.ReadFile(key)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	f := &tlsFiles{Cert: cert, Key: key, PEM: filepath.Join(dir, "combined.pem")}
	return f, os.WriteFile(f.PEM, append(cb, kb...), 0o600)
}

// proc is a child process with its output in a log file.
type proc struct {
	cmd  *exec.Cmd
	name string
}

func startProc(dir, name string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		f.Close()
	}()
	return &proc{cmd: cmd, name: name}, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace time.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	for range 100 {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// pidsOf returns the process ids of ps.
func pidsOf(ps []*proc) func() []int {
	return func() []int {
		out := make([]int, 0, len(ps))
		for _, p := range ps {
			out = append(out, p.cmd.Process.Pid)
		}
		return out
	}
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct loopback ports that were free a moment
// ago: each listener stays open until all are chosen, so the kernel
// cannot hand one out twice (separate FreePort calls may).
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitPort polls until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %s does not accept connections: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady polls a wsgate admin API until /readyz answers 200: its
// listener takes connections before the first member set is applied, and
// a client that came before would be refused with 503.
func waitReady(ctx context.Context, admin string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: wsgate at %s not ready: %w", admin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type backendProc struct {
	ID       string
	Link, WS string
}

// target is a started proxy under test.
type target struct {
	addr, admin string
	probe       Probe
	procs       []*proc
}

func (t *target) stop() {
	for _, p := range t.procs {
		p.stop()
	}
}

// Compare runs cfg.Scenarios against every target and cfg.WsgateOnly
// against wsgate, for cfg.Rounds rounds, and returns every result.
func Compare(ctx context.Context, cfg CompareConfig) ([]*Result, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	if cfg.Backends <= 0 {
		cfg.Backends = 3
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	for _, t := range cfg.Targets {
		if t != "wsgate" && t != "passthrough" {
			if _, err := exec.LookPath(t); err != nil {
				return nil, fmt.Errorf("bench: %s not found (install it: scripts/peers.sh): %w", t, err)
			}
		}
	}
	var tf *tlsFiles
	if cfg.TLS != nil {
		var err error
		if tf, err = writeTLSFiles(filepath.Join(cfg.Dir, "tls")); err != nil {
			return nil, fmt.Errorf("bench: TLS certificate: %w", err)
		}
		tc := *cfg.TLS
		tc.CAFile = tf.Cert
		cfg.Base.TLS = &tc
	}
	logs := filepath.Join(cfg.Dir, "logs")
	var backends []backendProc
	var bprocs []*proc
	defer func() {
		for _, p := range bprocs {
			p.stop()
		}
	}()
	for i := range cfg.Backends {
		lp, err1 := FreePort()
		wp, err2 := FreePort()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		b := backendProc{ID: "b" + strconv.Itoa(i+1), Link: "127.0.0.1:" + strconv.Itoa(lp), WS: "127.0.0.1:" + strconv.Itoa(wp)}
		p, err := startProc(logs, "backend-"+b.ID, cfg.Binary, "backend", "--id", b.ID, "--listen", b.Link,
			"--ws-listen", b.WS, "--admin", "-", "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		bprocs = append(bprocs, p)
		backends = append(backends, b)
	}
	for _, b := range backends {
		if err := waitPort(ctx, b.WS); err != nil {
			return nil, err
		}
		if err := waitPort(ctx, b.Link); err != nil {
			return nil, err
		}
	}
	bprobe := &Probe{Pids: pidsOf(bprocs)}
	var results []*Result
	for round := 1; round <= cfg.Rounds; round++ {
		for k := range cfg.Targets {
			name := cfg.Targets[(k+round-1)%len(cfg.Targets)]
			cfg.Log.Info("bench: round", "round", round, "target", name)
			scens := cfg.Scenarios
			if name == "wsgate" {
				scens = append(append([]string(nil), scens...), cfg.WsgateOnly...)
			}
			for _, s := range scens {
				// A fresh target per scenario: memory baselines and CPU
				// counters start clean, and no scenario inherits another's
				// connections in TIME_WAIT or half-closed.
				t, err := startTarget(ctx, cfg, name, backends, tf)
				if err != nil {
					return results, err
				}
				rc := cfg.Base
				rc.Scenario, rc.Target, rc.Addr, rc.Admin, rc.Probe, rc.Backends = s, name, t.addr, t.admin, t.probe, bprobe
				r, err := Run(ctx, rc)
				t.stop()
				if r != nil {
					r.Round = round
					results = append(results, r)
					cfg.Log.Info("bench: done", "target", name, "scenario", s, "summary", oneLine(r))
				}
				if rc.Progress != nil {
					rc.Progress("")
				}
				if err != nil {
					cfg.Log.Warn("bench: scenario failed", "target", name, "scenario", s, "err", err)
				}
				if ctx.Err() != nil {
					return results, ctx.Err()
				}
			}
		}
	}
	return results, nil
}

// oneLine is a result's figures as "name=value ...".
func oneLine(r *Result) string {
	var parts []string
	for _, f := range Figures(r) {
		parts = append(parts, f.Name+"="+formatValue(f.Value))
	}
	return strings.Join(parts, " ")
}

func startTarget(ctx context.Context, cfg CompareConfig, name string, backends []backendProc, tf *tlsFiles) (*target, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logs := filepath.Join(cfg.Dir, "logs")
	t := &target{addr: addr}
	switch name {
	case "wsgate", "passthrough":
		ap, err := FreePort()
		if err != nil {
			return nil, err
		}
		t.admin = "127.0.0.1:" + strconv.Itoa(ap)
		args := []string{cfg.Binary, "gateway", "--listen", addr, "--admin", t.admin, "--log-level", "warn", "--pprof"}
		if cfg.GatewayLoops > 0 {
			args = append(args, "--loops", strconv.Itoa(cfg.GatewayLoops))
		}
		for _, b := range backends {
			if name == "passthrough" { // the plain servers nginx and HAProxy front, as upstreams
				args = append(args, "--upstream", b.ID+"=ws://"+b.WS)
			} else {
				args = append(args, "--backend", b.ID+"="+b.Link)
			}
		}
		if tf != nil {
			args = append(args, "--tls-cert", tf.Cert, "--tls-key", tf.Key)
		}
		p, err := startProc(logs, name, args...)
		if err != nil {
			return nil, err
		}
		t.procs = []*proc{p}
		t.probe = Probe{Admin: t.admin, Pids: func() []int { return []int{p.cmd.Process.Pid} }}
	case "nginx":
		dir, conf, err := writeConfig(cfg.Dir, "nginx", "nginx.conf", nginxConf, addr, backends, tf)
		if err != nil {
			return nil, err
		}
		p, err := startProc(logs, "nginx", "nginx", "-p", dir, "-c", conf)
		if err != nil {
			return nil, err
		}
		t.procs = []*proc{p}
		t.probe = Probe{Pids: func() []int { return WithChildren(p.cmd.Process.Pid) }}
	case "haproxy":
		_, conf, err := writeConfig(cfg.Dir, "haproxy", "haproxy.cfg", haproxyConf, addr, backends, tf)
		if err != nil {
			return nil, err
		}
		// One single-threaded process per core, sharing the port
		// (SO_REUSEPORT, HAProxy's default on Linux): one process with a
		// thread per core would need 2 descriptors per client, more than
		// the 20,000 one process may open at 10,000 clients.
		for i := range runtime.NumCPU() {
			p, err := startProc(logs, "haproxy-"+strconv.Itoa(i), "haproxy", "-db", "-f", conf)
			if err != nil {
				t.stop()
				return nil, err
			}
			t.procs = append(t.procs, p)
		}
		t.probe = Probe{Pids: pidsOf(t.procs)}
	default:
		return nil, fmt.Errorf("bench: unknown target %q (want wsgate, passthrough, nginx or haproxy)", name)
	}
	if err := waitPort(ctx, addr); err != nil {
		t.stop()
		return nil, err
	}
	if t.admin != "" {
		if err := waitReady(ctx, t.admin); err != nil {
			t.stop()
			return nil, err
		}
	}
	return t, nil
}

// peerConf is what the peers' config templates see.
type peerConf struct {
	Listen   string
	Dir      string
	Backends []backendProc
	Cores    int
	MaxConn  int       // HAProxy maxconn per process
	TLS      *tlsFiles // the TLS round's certificate; nil for plain
}

// writeConfig renders a peer's config template into <out>/<peer>/<file>
// and returns that directory (absolute) and the file's path.
func writeConfig(out, peer, file, tmpl, addr string, backends []backendProc, tf *tlsFiles) (dir, path string, err error) {
	if dir, err = filepath.Abs(filepath.Join(out, peer)); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	t, err := template.New(file).Parse(tmpl)
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, file)
	f, err := os.Create(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	data := peerConf{Listen: addr, Dir: dir, Backends: backends, Cores: runtime.NumCPU(), MaxConn: 9900, TLS: tf}
	return dir, path, t.Execute(f, data)
}

// nginxConf is nginx in its usual tuned form for WebSocket proxying: a
// worker per core, each allowed the whole descriptor limit, epoll with
// multi_accept, SO_REUSEPORT listeners (one accept queue per worker), no
// access log, upgrade headers passed, and consistent hashing on userId.
// Upstream keepalive is set although upgraded connections never return
// to the pool (it helps only non-upgrade requests). In the TLS round it
// terminates TLS 1.2 and 1.3 with the round's certificate, X25519 or P-256,
// and the usual shared session cache (the client resumes no session
// unless asked to).
const nginxConf = `# Generated by wsgate bench compare.
worker_processes {{.Cores}};
worker_rlimit_nofile 20000;
worker_cpu_affinity auto;
daemon off;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events {
    worker_connections 19500;
    use epoll;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp;
    proxy_temp_path {{.Dir}}/tmp;
    fastcgi_temp_path {{.Dir}}/tmp;
    uwsgi_temp_path {{.Dir}}/tmp;
    scgi_temp_path {{.Dir}}/tmp;
    upstream backends {
        hash $arg_userId consistent;
{{- range .Backends}}
        server {{.WS}} max_fails=0;
{{- end}}
        keepalive 64;
    }
    server {
        listen {{.Listen}}{{if .TLS}} ssl{{end}} reuseport backlog=4096;
        tcp_nodelay on;
{{- if .TLS}}
        ssl_certificate {{.TLS.Cert}};
        ssl_certificate_key {{.TLS.Key}};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;
{{- end}}
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
`

// haproxyConf is HAProxy in its usual tuned form for WebSocket proxying:
// HTTP mode (it sees the upgrade and tunnels), url_param hashing with
// consistent hash-type, long tunnel timeouts, no logging. In the TLS round
// it terminates TLS (1.2 at least) with the round's certificate and
// ALPN http/1.1; its TLS 1.3 suites are listed with AES-128-GCM first
// because HAProxy picks by its own order (OpenSSL's puts AES-256 first),
// while nginx and wsgate follow the client's, which is AES-128-GCM first:
// so all three negotiate the same suite.
const haproxyConf = `# Generated by wsgate bench compare.
global
    maxconn {{.MaxConn}}
    nbthread 1
    tune.maxaccept 64
{{- if .TLS}}
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
{{- end}}
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-request 10s
    option http-keep-alive
frontend fe
    bind {{.Listen}} backlog 4096{{if .TLS}} ssl crt {{.TLS.PEM}} alpn http/1.1{{end}}
    maxconn {{.MaxConn}}
    default_backend be
backend be
    balance url_param userId
    hash-type consistent
{{- range .Backends}}
    server {{.ID}} {{.WS}}
{{- end}}
`
