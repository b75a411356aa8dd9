package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/wsgate/wsgate/internal/wsframe"
)

// Scenario names.
const (
	Connect   = "connect"
	Idle      = "idle"
	Echo      = "echo"
	Push      = "push"
	Broadcast = "broadcast"
	Rebalance = "rebalance"
)

// Scenarios lists every scenario, in the order compare runs them.
var Scenarios = []string{Connect, Idle, Echo, Push, Broadcast, Rebalance}

// Defaults of Config.
const (
	DefaultConns    = 1000
	DefaultInflight = 512
	DefaultSize     = 64
	DefaultWindow   = 1
	DefaultDuration = 10 * time.Second
	DefaultWarmup   = 2 * time.Second
	DefaultPushes   = 2000
	DefaultRounds   = 5
	DefaultTimeout  = 60 * time.Second
)

// Config is one scenario run against one target.
type Config struct {
	Scenario string
	Target   string // the name reports use, e.g. "wsgate"
	Addr     string // WebSocket host:port
	Admin    string // wsgate admin host:port (push, broadcast, rebalance, heap)
	Probe    Probe  // where CPU and memory are read
	// Backends, if set, reads the backends' CPU (echo reports it beside
	// the target's, to show the backends were not the bottleneck).
	Backends *Probe
	// TLS, if set, makes the connections wss:// (TLS to Addr).
	TLS *TLSConfig

	Conns     int    // connections; default DefaultConns
	Keys      int    // key space: connection i uses key KeyPrefix + i%Keys; default Conns
	KeyPrefix string // default "user-"
	Sources   int    // source addresses 127.0.0.1..N; default SourcesFor(Conns)
	Loops     int    // client event loops; default CPUs
	Inflight  int    // handshakes in flight at once; default DefaultInflight
	// ConnectRate, if > 0, paces the connect phase: at most this many new
	// connections a second (still at most Inflight in flight). Without it
	// the phase dials as fast as the Inflight window refills.
	ConnectRate float64
	Size        int           // echo: message bytes (>= 16); default DefaultSize
	Window      int           // echo: messages in flight per connection; default DefaultWindow
	Rate        float64       // echo: messages/s per connection; 0 = as fast as the window allows
	Duration    time.Duration // echo: measured time; idle: CPU window; default DefaultDuration
	Warmup      time.Duration // echo: unmeasured time first; default DefaultWarmup
	Pushes      int           // push: messages; default DefaultPushes
	Rounds      int           // broadcast: rounds; default DefaultRounds
	Timeout     time.Duration // bound on each wait; default DefaultTimeout
	// Path, if set, returns each connection's request path (default
	// DefaultPath), e.g. with a token.
	Path func(key string) string

	// Progress, if set, receives a one-line status about once a second.
	Progress func(line string)
	// Log, if set, gets a line as each phase of RunHold ends (a run at a
	// million takes many minutes; the phases say where it is).
	Log *slog.Logger
	// OnPhase, if set, is called with the phase's name ("connected",
	// "idle measured", "broadcasts done", "pushes done") as each phase of
	// RunHold ends, on RunHold's goroutine; it must not block.
	OnPhase func(name string)

	// KeyOffset shifts key indexes: connection i uses key index
	// KeyOffset+i (worker processes each take a slice of the key space).
	KeyOffset int
	// Hold, if set, is called by the idle scenario once every connection
	// is welcomed, instead of measuring; the connections stay open until it
	// returns. Worker processes use it so their parent measures the target.
	Hold func(connected, failed int)
	// Control and Report, if set, make the broadcast scenario a worker of
	// a parent that sends the broadcasts (RunWorkers): Report gets a
	// ready line once the connections are welcomed, then for each round
	// number read as a line from Control an armed line and, once the round
	// is delivered (or the wait times out), a broadcastRound. It returns
	// when Control ends.
	Control io.Reader
	Report  func(v any)
	// Histograms asks for the raw latency histograms in the result (for a
	// parent merging its workers' results).
	Histograms bool
	// Migrate makes the rebalance scenario check a gateway with
	// --rebalance migrate: the connections are demo counter sessions
	// (counter=1) sending Rate messages/s (default 1), every answer's
	// count is checked, any close is a failure, and each step reports the
	// pause the moved clients saw (migrate.go).
	Migrate bool
}

func (c *Config) defaults() error {
	if c.Conns <= 0 {
		c.Conns = DefaultConns
	}
	if c.Migrate {
		if c.Scenario != Rebalance {
			return fmt.Errorf("bench: --migrate goes with --scenario %s", Rebalance)
		}
		c.Path = counterPath(c.Path)
		if c.Rate <= 0 {
			c.Rate = 1
		}
	}
	if c.Keys <= 0 {
		c.Keys = c.KeyOffset + c.Conns
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "user-"
	}
	if c.Inflight <= 0 {
		c.Inflight = DefaultInflight
	}
	if c.Sources <= 0 {
		c.Sources = SourcesFor(c.Conns)
	}
	if c.ConnectRate < 0 {
		return fmt.Errorf("bench: --connect-rate %v: want 0 (unpaced) or more", c.ConnectRate)
	}
	if c.Size <= 0 {
		c.Size = DefaultSize
	}
	if c.Size < stampLen {
		return fmt.Errorf("bench: --size %d: want at least %d bytes (the timestamp)", c.Size, stampLen)
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.Pushes <= 0 {
		c.Pushes = DefaultPushes
	}
	if c.Rounds <= 0 {
		c.Rounds = DefaultRounds
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Target == "" {
		c.Target = c.Addr
	}
	switch c.Scenario {
	case Push, Broadcast, Rebalance:
		if c.Admin == "" {
			return fmt.Errorf("bench: %s needs --admin (wsgate's admin API)", c.Scenario)
		}
	}
	if scenarioRuns[c.Scenario] == nil {
		return fmt.Errorf("bench: unknown scenario %q (want one of %v)", c.Scenario, Scenarios)
	}
	return nil
}

// scenarioRuns maps each scenario to its runner method.
var scenarioRuns = map[string]func(*runner) error{
	Connect: (*runner).connect, Idle: (*runner).idle, Echo: (*runner).echo,
	Push: (*runner).push, Broadcast: (*runner).broadcast, Rebalance: (*runner).rebalance,
}

// Result is what one scenario run measured. Fields a scenario does not
// measure are zero and left out of the JSON.
type Result struct {
	Target   string `json:"target"`
	Scenario string `json:"scenario"`
	Round    int    `json:"round,omitempty"`
	Conns    int    `json:"conns"`
	// TLS is what wss:// connections negotiated ("TLS 1.3, ..., X25519,
	// ..."); empty for plain WebSocket. Reports keep TLS results apart.
	TLS string `json:"tls,omitempty"`

	// Every scenario: connections that failed, by reason.
	Failures map[string]int `json:"failures,omitempty"`

	// connect
	Connected     int      `json:"connected,omitempty"`
	ConnectSecs   float64  `json:"connect_seconds,omitempty"`
	HandshakeRate float64  `json:"handshakes_per_second,omitempty"`
	Handshake     *Latency `json:"handshake_latency,omitempty"`
	// CPUPerThousand is the target's CPU milliseconds per 1,000 handshakes.
	CPUPerThousand float64 `json:"cpu_ms_per_thousand_handshakes,omitempty"`

	// idle
	MemPerConn  float64 `json:"mem_bytes_per_conn,omitempty"`
	HeapPerConn float64 `json:"heap_bytes_per_conn,omitempty"`
	IdleCPU     float64 `json:"idle_cpu_percent,omitempty"`
	// The backends' memory per connection and CPU while idle (RunHold,
	// with Config.Backends).
	BackendMemPerConn float64 `json:"backend_mem_bytes_per_conn,omitempty"`
	BackendIdleCPU    float64 `json:"backend_idle_cpu_percent,omitempty"`

	// echo
	Size          int      `json:"size,omitempty"`
	Window        int      `json:"window,omitempty"`
	Rate          float64  `json:"rate,omitempty"`
	Messages      int64    `json:"messages,omitempty"`
	Throughput    float64  `json:"messages_per_second,omitempty"`
	Latency       *Latency `json:"latency,omitempty"`
	CPUPerMillion float64  `json:"cpu_seconds_per_million,omitempty"`
	Drops         int64    `json:"drops,omitempty"`
	// BackendCPUPerMillion is the backends' CPU seconds per million echoes.
	BackendCPUPerMillion float64 `json:"backend_cpu_seconds_per_million,omitempty"`

	// push, broadcast
	Delivered      int64     `json:"delivered,omitempty"`
	PushRate       float64   `json:"pushes_per_second,omitempty"`
	Delivery       *Latency  `json:"delivery_latency,omitempty"`
	LastAfterCall  []float64 `json:"last_delivery_after_call_ms,omitempty"`
	LastAfterReply []float64 `json:"last_delivery_after_return_ms,omitempty"`
	Missing        int64     `json:"missing,omitempty"`
	// CPUPerBroadcast is the target's CPU milliseconds per broadcast.
	CPUPerBroadcast float64 `json:"cpu_ms_per_broadcast,omitempty"`

	// rebalance
	Steps []RebalanceStep `json:"rebalance,omitempty"`

	// Raw histograms (µs), with Config.Histograms: handshake and message
	// or delivery latency.
	HandshakeHist *hdrhistogram.Snapshot `json:"handshake_histogram,omitempty"`
	LatencyHist   *hdrhistogram.Snapshot `json:"latency_histogram,omitempty"`
	// CPUSeconds and WindowSeconds are the target CPU and the measured time
	// behind CPUPerMillion (for merging workers).
	CPUSeconds    float64 `json:"cpu_seconds,omitempty"`
	WindowSeconds float64 `json:"window_seconds,omitempty"`
}

// RebalanceStep is one membership change of the rebalance scenario.
type RebalanceStep struct {
	Change        string  `json:"change"` // "add node-4", "remove node-4"
	NodesBefore   int     `json:"nodes_before"`
	Moved         int     `json:"moved"`
	Fraction      float64 `json:"moved_fraction"`
	Ideal         float64 `json:"ideal_fraction"`
	NeedlessClose int     `json:"needless_closes"`
	Missed        int     `json:"missed"` // clients whose owner changed but were not moved
	ReconnectSecs float64 `json:"reconnect_seconds"`

	// With Config.Migrate: sessions the gateway migrated in the step, the
	// pause they saw (the gateway's migration_pause_seconds histogram:
	// client input held until the session resumed on its new node, in
	// ms; max is the top of the highest bucket hit), answers with a wrong
	// count (lost, duplicated or reordered messages) and the clients'
	// message round trip during the step.
	Migrated    int      `json:"migrated,omitempty"`
	MigrateLost int      `json:"migrated_without_state,omitempty"`
	PauseMs     *Latency `json:"pause_ms,omitempty"`
	BadCounts   int64    `json:"bad_counts,omitempty"`
	RoundTrip   *Latency `json:"round_trip_ms,omitempty"`
}

// Run runs cfg's scenario and returns its result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, res: &Result{Target: cfg.Target, Scenario: cfg.Scenario, Conns: cfg.Conns}}
	r.ctx = ctx
	r.opened = make([]atomic.Int64, cfg.Conns)
	r.owner = make([]atomic.Pointer[string], cfg.Conns)
	e, err := NewEngine(EngineConfig{Addr: cfg.Addr, Sources: cfg.Sources, Loops: cfg.Loops, Path: cfg.Path, TLS: cfg.TLS}, r)
	if err != nil {
		return nil, err
	}
	r.e = e
	r.hs = make([]*hdrhistogram.Histogram, e.Loops())
	r.lat = make([]*hdrhistogram.Histogram, e.Loops())
	for i := range r.hs {
		r.hs[i], r.lat[i] = newHist(), newHist()
	}
	defer e.Close()
	runErr := scenarioRuns[cfg.Scenario](r)
	e.CloseAll()
	r.res.Failures = r.fails.snapshot()
	if cfg.TLS != nil {
		r.res.TLS = e.TLSInfo()
		if r.res.TLS == "" {
			r.res.TLS = tlsNoHandshake
		}
	}
	if cfg.Histograms {
		r.res.HandshakeHist = merged(r.hs...).Export()
		r.res.LatencyHist = merged(r.lat...).Export()
	}
	return r.res, runErr
}

// runner is the Handler shared by every scenario; mode selects what a data
// message means once the welcome arrived.
type runner struct {
	cfg Config
	ctx context.Context
	e   *Engine
	res *Result

	next     atomic.Int64 // next connection id to dial in the connect phase
	nOpen    atomic.Int64 // upgrades completed (101)
	nWelcome atomic.Int64 // connections welcomed (usable), each once: a reconnect's welcome is not counted
	nFail    atomic.Int64 // connect-phase failures
	nDrop    atomic.Int64 // closes after the welcome (of connections counted in nWelcome)
	lastOpen atomic.Int64 // Engine.Now of the latest 101
	fails    failures

	opened []atomic.Int64           // per connection: Engine.Now of its welcome, 0 if none
	owner  []atomic.Pointer[string] // per connection: serverIp of its latest welcome

	hs  []*hdrhistogram.Histogram // per loop: handshake latency
	lat []*hdrhistogram.Histogram // per loop: message / delivery latency

	mode      atomic.Int32
	recording atomic.Bool
	sending   atomic.Bool
	received  atomic.Int64
	lastRecv  atomic.Int64
	sendBuf   [][]byte // per loop: echo payload scratch

	pushT0     []atomic.Int64 // push: Engine.Now when push i was sent
	bcastRound atomic.Int64   // broadcast: the round being delivered
	bcastT0    atomic.Int64   // broadcast: Engine.Now of its API call

	onClose func(c *Conn, code int, reason string) // rebalance hook, on the loop

	counts    []int64      // migrate: per connection, the last count answered (on its loop)
	badCounts atomic.Int64 // migrate: answers whose count was not the last plus one
}

// Modes: what a data message after the welcome means.
const (
	modeIgnore int32 = iota
	modeEcho
	modePush
	modeBroadcast
	modeCount // migrate: demo counter answers
)

func (r *runner) key(i int) string {
	return r.cfg.KeyPrefix + strconv.Itoa((r.cfg.KeyOffset+i)%r.cfg.Keys)
}

// OnOpen implements Handler.
func (r *runner) OnOpen(c *Conn) {
	now := r.e.Now()
	recordNanos(r.hs[c.Loop()], now-c.Started)
	r.nOpen.Add(1)
	r.lastOpen.Store(now)
	r.dialNext()
}

// dialNext keeps the connect phase's window of handshakes full (unpaced;
// with ConnectRate, pace dials).
func (r *runner) dialNext() {
	if r.cfg.ConnectRate <= 0 {
		r.dial()
	}
}

func (r *runner) dial() {
	if id := int(r.next.Add(1)) - 1; id < r.cfg.Conns {
		r.e.Dial(id, r.key(id))
	}
}

// pace dials ConnectRate connections a second, with at most Inflight
// handshakes open, until every connection is dialled or stop closes. A
// window that was full does not make up for lost time in a burst larger
// than Inflight.
func (r *runner) pace(stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	start, n, window := time.Now(), int64(r.cfg.Conns), int64(r.cfg.Inflight)
	for {
		allowed := min(int64(r.cfg.ConnectRate*time.Since(start).Seconds())+1, n)
		for r.next.Load() < allowed && r.next.Load()-r.nOpen.Load()-r.nFail.Load() < window {
			r.dial()
		}
		if r.next.Load() >= n {
			return
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// OnMessage implements Handler.
func (r *runner) OnMessage(c *Conn, op wsframe.OpCode, p []byte) {
	if r.opened[c.ID].Load() == 0 {
		if r.counts != nil {
			r.counts[c.ID] = 0 // a new session (a reconnect, counted as a drop)
		}
		ip := welcomeServer(p)
		if r.owner[c.ID].Swap(&ip) == nil { // its first welcome
			r.nWelcome.Add(1)
		}
		r.opened[c.ID].Store(r.e.Now())
		if r.mode.Load() == modeEcho && r.sending.Load() {
			r.startEcho(c)
		}
		return
	}
	switch r.mode.Load() {
	case modeEcho:
		r.onEcho(c, op, p)
	case modePush:
		r.onPush(c, p)
	case modeBroadcast:
		r.onBroadcast(c, p)
	case modeCount:
		r.onCount(c, p)
	}
}

// OnClose implements Handler.
func (r *runner) OnClose(c *Conn, code int, reason string) {
	if r.opened[c.ID].Load() == 0 {
		if reason != "local" {
			r.nFail.Add(1)
			r.fails.add(reason)
			r.dialNext()
		}
		return
	}
	r.opened[c.ID].Store(0)
	if r.onClose != nil {
		r.onClose(c, code, reason)
		return
	}
	if reason != "local" {
		r.nDrop.Add(1)
		if code != 0 {
			reason = "close " + strconv.Itoa(code)
		}
		r.fails.add("after open: " + reason)
	}
}

var serverIPField = []byte(`"serverIp":"`)

// welcomeServer extracts serverIp from the demo app's welcome message.
func welcomeServer(p []byte) string { return string(serverOf(p)) }

// progress prints a status line about once a second until stop is closed.
func (r *runner) progress(phase string, stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var lastRecv int64
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			recv := r.received.Load()
			r.cfg.Progress(fmt.Sprintf("%s %s %5.0fs  open %d/%d  welcomed %d  failed %d  dropped %d  msgs/s %d",
				r.cfg.Target, phase, time.Since(start).Seconds(), r.nOpen.Load(), r.cfg.Conns,
				r.nWelcome.Load(), r.nFail.Load(), r.nDrop.Load(), recv-lastRecv))
			lastRecv = recv
		}
	}
}

// waitFor polls cond until it holds, the timeout passes or ctx ends.
func (r *runner) waitFor(what string, cond func() bool) error {
	return r.waitWithin(what, r.cfg.Timeout, cond)
}

// waitWithin is waitFor bounded by d.
func (r *runner) waitWithin(what string, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s: timed out after %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// pending is how many connections are neither welcomed nor failed yet.
func (r *runner) pending() int64 {
	return int64(r.cfg.Conns) - r.nWelcome.Load() - r.nFail.Load()
}

// connectAll dials every connection, at most Inflight handshakes at once
// (and ConnectRate a second if set), and waits until each is welcomed or
// failed.
func (r *runner) connectAll() error {
	stop := make(chan struct{})
	defer close(stop)
	go r.progress("connect", stop)
	if r.cfg.ConnectRate > 0 {
		go r.pace(stop)
	} else {
		for range min(r.cfg.Inflight, r.cfg.Conns) {
			r.dialNext()
		}
	}
	n := int64(r.cfg.Conns)
	err := r.waitFor("connect", func() bool { return r.nOpen.Load()+r.nFail.Load() >= n })
	if err == nil {
		err = r.waitFor("welcome", func() bool { return r.pending() <= 0 })
	}
	r.res.Connected = int(r.nOpen.Load())
	if f := r.nFail.Load(); f > 0 && err == nil && f == n {
		err = errors.New("bench: every connection failed")
	}
	return err
}

func (r *runner) connect() error {
	u0, perr := r.cfg.Probe.Sample(r.ctx, false)
	err := r.connectAll()
	if u1, perr1 := r.cfg.Probe.Sample(r.ctx, false); perr == nil && perr1 == nil && u0.CPU >= 0 && r.nOpen.Load() > 0 {
		r.res.CPUSeconds = u1.CPU - u0.CPU
		r.res.CPUPerThousand = 1000 * r.res.CPUSeconds / (float64(r.nOpen.Load()) / 1000)
	}
	secs := float64(r.lastOpen.Load()) / 1e9
	r.res.ConnectSecs = secs
	if secs > 0 {
		r.res.HandshakeRate = float64(r.nOpen.Load()) / secs
	}
	r.res.Handshake = summarize(r.hs...)
	return err
}

func (r *runner) idle() error {
	if r.cfg.Hold != nil {
		err := r.connectAll()
		r.cfg.Hold(int(r.nWelcome.Load()), int(r.nFail.Load()))
		return err
	}
	before, err := r.cfg.Probe.Sample(r.ctx, true)
	if err != nil {
		return err
	}
	if err := r.connectAll(); err != nil {
		return err
	}
	return measureIdle(r.ctx, r.cfg, r.res, before, int(r.nWelcome.Load()))
}

// settle waits d or until ctx ends.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
