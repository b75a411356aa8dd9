package scaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
)

// ProcessConfig configures the process driver.
type ProcessConfig struct {
	// Binary is the wsgate executable the children run; default the
	// running one (os.Executable).
	Binary string
	// AMQP, Redis, Exchange and RedisPrefix join the children to the
	// cluster (they announce themselves). They reach a child through its
	// environment (WSGATE_AMQP, ...), never its command line: URLs may
	// hold passwords. Empty AMQP and Redis: Announce must be set.
	AMQP, Redis, Exchange, RedisPrefix string
	// ClusterSecret goes to every child as WSGATE_CLUSTER_SECRET.
	ClusterSecret []byte
	// Announce, when set, is where the driver announces each child itself
	// (join once it answers, leave before it is stopped): wsgate dev's
	// in-process bus, for children without RabbitMQ and Redis.
	Announce membership.Publisher
	// Joined reports whether node id has joined (e.g. OnRing on the
	// gateway); AddNode polls it until true. Nil: a child counts as joined
	// once it answers on its admin port (and, with Announce, is announced).
	Joined func(id string) bool
	// IDPrefix names the children: <IDPrefix>-1, <IDPrefix>-2, ...;
	// default "proc-<pid>". Unique in the cluster.
	IDPrefix string
	// Args are more `wsgate backend` flags (e.g. --heartbeat 1s).
	Args []string
	// Max is the most children at once; default DefaultMax.
	Max int
	// JoinTimeout bounds AddNode; default DefaultJoinTimeout.
	JoinTimeout time.Duration
	// DrainTimeout is each child's --drain-timeout; default 30s.
	DrainTimeout time.Duration
	// StopTimeout bounds RemoveNode's wait after SIGTERM, then the child
	// gets SIGKILL; default DrainTimeout + 10s.
	StopTimeout time.Duration
	// Stderr receives the children's logs; default os.Stderr.
	Stderr io.Writer
	Logger *slog.Logger // default slog.Default()
}

// Process starts and stops `wsgate backend` child processes on free
// 127.0.0.1 ports. Children die with the driver (Close), and with the
// parent if it is killed (Linux parent-death signal).
type Process struct {
	cfg ProcessConfig

	mu       sync.Mutex
	children map[string]*child // joined
	starting int               // AddNode calls under way
	adding   sync.WaitGroup    // the same, for Close to wait on
	seq      int
	closed   bool
}

// child is one running `wsgate backend`.
type child struct {
	id, addr, admin string
	cmd             *exec.Cmd
	started         time.Time
	exited          chan struct{} // closed when Wait returned
	err             error         // Wait's result, after exited
}

// startRetries is how many times a child that exits at once is started
// again on other ports.
const startRetries = 3

// exitedAtOnce reports whether c exited within a second of its start: as
// a child whose port another process took between freePorts and its bind
// does (the ports are free when chosen, not reserved).
func (c *child) exitedAtOnce() bool {
	select {
	case <-c.exited:
		return time.Since(c.started) < time.Second
	default:
		return false
	}
}

// NewProcess checks cfg and returns a process driver with no children yet.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("scaler: the process driver runs this binary, but: %w", err)
		}
		cfg.Binary = exe
	}
	if (cfg.AMQP == "") != (cfg.Redis == "") {
		return nil, errors.New("scaler: process driver: AMQP and Redis go together")
	}
	if cfg.AMQP == "" && cfg.Announce == nil {
		return nil, errors.New("scaler: the process driver needs cluster membership (--amqp and --redis) or wsgate dev")
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = fmt.Sprintf("proc-%d", os.Getpid())
	}
	defaultLimits(&cfg.Max, &cfg.JoinTimeout, &cfg.DrainTimeout, &cfg.StopTimeout)
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Process{cfg: cfg, children: map[string]*child{}}, nil
}

// Name is "process".
func (p *Process) Name() string { return NameProcess }

// Max is the most children at once.
func (p *Process) Max() int { return p.cfg.Max }

// Nodes lists the joined children's ids, sorted.
func (p *Process) Nodes(context.Context) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.children))
	for id := range p.children {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// PID is the process id of the joined child id, or 0.
func (p *Process) PID(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.children[id]; c != nil {
		return c.cmd.Process.Pid
	}
	return 0
}

// AddNode starts a child on free loopback ports and returns its id once it
// has joined (see ProcessConfig.Joined), or stops it and fails after
// JoinTimeout.
func (p *Process) AddNode() (string, error) {
	p.mu.Lock()
	switch n := len(p.children) + p.starting; {
	case p.closed:
		p.mu.Unlock()
		return "", errClosed
	case n >= p.cfg.Max:
		p.mu.Unlock()
		return "", maxError(NameProcess, n, p.cfg.Max)
	}
	p.seq++
	p.starting++ // holds a place against the maximum
	p.adding.Add(1)
	defer p.adding.Done()
	id := fmt.Sprintf("%s-%d", p.cfg.IDPrefix, p.seq)
	p.mu.Unlock()
	var c *child
	var err error
	for attempt := 1; ; attempt++ {
		if c, err = p.start(id); err != nil {
			break
		}
		if err = p.awaitJoin(c); err == nil {
			break
		}
		_ = p.stop(c)
		if !c.exitedAtOnce() || attempt == startRetries {
			break
		}
		p.cfg.Logger.Warn("backend process exited at start; starting it again on other ports", "node", id, "err", err)
	}
	p.mu.Lock()
	p.starting--
	closed := p.closed
	if err == nil && !closed {
		p.children[id] = c
	}
	p.mu.Unlock()
	if err != nil {
		return "", err
	}
	if closed { // Close ran meanwhile and did not see c
		_ = p.stop(c)
		return "", errClosed
	}
	p.cfg.Logger.Info("backend process joined", "node", id, "pid", c.cmd.Process.Pid, "addr", c.addr)
	return id, nil
}

var errClosed = errors.New("scaler: process driver closed")

// start runs `wsgate backend` for c on two free loopback ports (links and
// admin), its cluster settings in its environment.
func (p *Process) start(id string) (*child, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	c := &child{id: id, addr: ports[0], admin: ports[1], exited: make(chan struct{}), started: time.Now()}
	args := append([]string{"backend", "--id", c.id, "--listen", c.addr, "--admin", c.admin,
		"--drain-timeout", p.cfg.DrainTimeout.String()}, p.cfg.Args...)
	cmd := exec.Command(p.cfg.Binary, args...)
	cmd.Env = p.env()
	cmd.Stdout, cmd.Stderr = io.Discard, p.cfg.Stderr
	// Own process group (a Ctrl-C at the terminal reaches the parent,
	// which drains the children in order), and SIGKILL if the parent dies
	// without stopping them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("scaler: start %s: %w", id, err)
	}
	c.cmd = cmd
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// env is the parent's environment without its WSGATE_ settings (a gateway's
// --listen or admin token must not reach a backend), plus the cluster's.
func (p *Process) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WSGATE_") {
			env = append(env, kv)
		}
	}
	set := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	set("WSGATE_AMQP", p.cfg.AMQP)
	set("WSGATE_REDIS", p.cfg.Redis)
	set("WSGATE_EXCHANGE", p.cfg.Exchange)
	set("WSGATE_REDIS_PREFIX", p.cfg.RedisPrefix)
	set("WSGATE_CLUSTER_SECRET", string(p.cfg.ClusterSecret))
	return env
}

// awaitJoin waits until c answers on its admin port, announces it when the
// driver announces, then waits for Joined; a child that exits first fails
// at once.
func (p *Process) awaitJoin(c *child) error {
	ctx := context.Background()
	deadline := time.Now().Add(p.cfg.JoinTimeout)
	exited := func() error {
		select {
		case <-c.exited:
			return fmt.Errorf("scaler: backend %s exited before it joined (%v); its log is on the gateway's stderr", c.id, c.err)
		default:
			return nil
		}
	}
	hc := &http.Client{Timeout: time.Second}
	err := pollUntil(ctx, time.Until(deadline), 20*time.Millisecond, "backend "+c.id+" answering on "+c.admin, func() (bool, error) {
		if err := exited(); err != nil {
			return false, err
		}
		r, err := hc.Get("http://" + c.admin + "/healthz")
		if err != nil {
			return false, nil
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return err
	}
	if p.cfg.Announce != nil {
		if err := p.cfg.Announce.Publish(ctx, membership.Event{Type: membership.Join,
			Node: membership.Node{ID: c.id, Addr: c.addr}}); err != nil {
			return err
		}
	}
	if p.cfg.Joined == nil {
		return nil
	}
	return pollUntil(ctx, time.Until(deadline), 20*time.Millisecond, "backend "+c.id+" joining", func() (bool, error) {
		if err := exited(); err != nil {
			return false, err
		}
		return p.cfg.Joined(c.id), nil
	})
}

// RemoveNode stops child id: a leave (announced by the driver or by the
// child), SIGTERM, and a wait of up to StopTimeout while gateways move its
// clients away, then SIGKILL.
func (p *Process) RemoveNode(id string) error {
	p.mu.Lock()
	c := p.children[id]
	delete(p.children, id)
	p.mu.Unlock()
	if c == nil {
		return gateway.ErrUnknownNode
	}
	if err := p.stop(c); err != nil {
		return err
	}
	p.cfg.Logger.Info("backend process stopped", "node", id)
	return nil
}

// stop ends c gracefully within StopTimeout, or kills it.
func (p *Process) stop(c *child) error {
	if p.cfg.Announce != nil {
		_ = p.cfg.Announce.Publish(context.Background(), membership.Event{Type: membership.Leave,
			Node: membership.Node{ID: c.id, Addr: c.addr}})
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return nil
	case <-time.After(p.cfg.StopTimeout):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("scaler: backend %s did not exit within %v of SIGTERM: killed", c.id, p.cfg.StopTimeout)
}

// Close stops every child (in parallel, each as RemoveNode does); ctx
// ending kills the ones still draining. No AddNode succeeds afterwards.
func (p *Process) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	var all []*child
	for id, c := range p.children {
		all = append(all, c)
		delete(p.children, id)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, c := range all {
		wg.Go(func() {
			done := make(chan struct{})
			go func() {
				select {
				case <-ctx.Done():
					_ = c.cmd.Process.Kill()
				case <-done:
				}
			}()
			errs[i] = p.stop(c)
			close(done)
		})
	}
	wg.Wait()
	// AddNode calls under way see closed and stop their child.
	added := make(chan struct{})
	go func() { p.adding.Wait(); close(added) }()
	select {
	case <-added:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("scaler: backends still starting when the process driver closed: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// freePorts returns n distinct free 127.0.0.1 ports as host:port, held
// open together so that they differ, then released for the child.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("scaler: no free loopback port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}
