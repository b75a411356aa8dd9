package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// WorkerLimit is the most connections one client process opens: a process
// may hold 20,000 descriptors here, and the engine needs a few of its own.
const WorkerLimit = 18000

// Workers is how many client processes n connections need.
func Workers(n int) int { return (n + WorkerLimit - 1) / WorkerLimit }

// readyLine is what a holding worker prints once its connections are up.
type readyLine struct {
	Ready     bool `json:"ready"`
	Connected int  `json:"connected"`
	Failed    int  `json:"failed"`
	// A broadcast worker's connect phase: the wall clock (unix ns) of its
	// last 101, and its handshake latencies.
	LastOpen   int64                  `json:"last_open_unix_ns,omitempty"`
	Handshakes *hdrhistogram.Snapshot `json:"handshake_histogram,omitempty"`
	Failures   map[string]int         `json:"failures,omitempty"` // so far, by reason
}

// worker is a started worker process.
type worker struct {
	cmd           *exec.Cmd
	stdin         io.WriteCloser
	lines         *bufio.Scanner
	offset, conns int // its slice of the key space
}

// RunWorkers runs cfg's scenario (connect, idle or echo) split over procs
// client processes and merges their results. command(conns, offset)
// returns the command line of one worker, which must run
// `wsgate bench --worker` with those connection counts: it prints its
// result as one JSON line, and for idle first a ready line, then holds its
// connections until its stdin closes. For idle the parent measures the
// target while every worker holds.
func RunWorkers(ctx context.Context, cfg Config, procs int, command func(conns, offset int) *exec.Cmd) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	switch cfg.Scenario {
	case Connect, Idle, Echo, Broadcast:
	default:
		return nil, fmt.Errorf("bench: %s runs in one process (at most %d connections)", cfg.Scenario, WorkerLimit)
	}
	var before Usage
	if cfg.Scenario == Idle {
		var err error
		if before, err = cfg.Probe.Sample(ctx, true); err != nil {
			return nil, err
		}
	}
	ws, err := startWorkers(cfg.Conns, procs, command)
	defer stopWorkers(ws)
	if err != nil {
		return nil, err
	}
	res := &Result{Target: cfg.Target, Scenario: cfg.Scenario, Conns: cfg.Conns}
	if cfg.Scenario == Broadcast {
		want, _, err := readyWorkers(ws)
		if err != nil {
			return nil, err
		}
		return res, broadcastWorkers(ctx, cfg, res, ws, want)
	}
	if cfg.Scenario == Idle {
		welcomed := 0
		for _, w := range ws {
			var rl readyLine
			if !w.lines.Scan() || json.Unmarshal(w.lines.Bytes(), &rl) != nil || !rl.Ready {
				return nil, fmt.Errorf("bench: worker %d: no ready line", w.cmd.Process.Pid)
			}
			welcomed += rl.Connected
		}
		if err := measureIdle(ctx, cfg, res, before, welcomed); err != nil {
			return res, err
		}
		for _, w := range ws {
			_ = w.stdin.Close()
		}
	}
	var parts []*Result
	for _, w := range ws {
		var r Result
		if !w.lines.Scan() || json.Unmarshal(w.lines.Bytes(), &r) != nil {
			return res, fmt.Errorf("bench: worker %d: no result", w.cmd.Process.Pid)
		}
		parts = append(parts, &r)
	}
	mergeInto(res, parts)
	return res, nil
}

// measureIdle reads the target's memory per welcomed connection against
// before, then its CPU over cfg.Duration.
func measureIdle(ctx context.Context, cfg Config, res *Result, before Usage, welcomed int) error {
	settle(ctx, 2*time.Second)
	p := cfg.Probe
	after, err := p.Sample(ctx, true)
	if err != nil {
		return err
	}
	if n := float64(welcomed); n > 0 {
		res.MemPerConn = (after.Mem - before.Mem) / n
		if after.Heap >= 0 {
			res.HeapPerConn = (after.Heap - before.Heap) / n
		}
	}
	cpu0, err := p.Sample(ctx, false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	settle(ctx, cfg.Duration)
	cpu1, err := p.Sample(ctx, false)
	if err != nil {
		return err
	}
	res.IdleCPU = 100 * (cpu1.CPU - cpu0.CPU) / time.Since(t0).Seconds()
	return ctx.Err()
}

// mergeInto adds the workers' results to res: counts add up, rates add
// up, histograms merge, and the connect time is the slowest worker's.
func mergeInto(res *Result, parts []*Result) {
	var hs, lat []*hdrhistogram.Histogram
	var cpu float64
	for _, r := range parts {
		mergeFailures(res, r)
		res.Connected += r.Connected
		res.ConnectSecs = max(res.ConnectSecs, r.ConnectSecs)
		res.Messages += r.Messages
		res.Throughput += r.Throughput
		res.Drops += r.Drops
		res.Size, res.Window, res.Rate = r.Size, r.Window, r.Rate
		if res.TLS == "" || res.TLS == tlsNoHandshake {
			res.TLS = r.TLS
		}
		cpu += r.CPUSeconds
		if r.HandshakeHist != nil {
			hs = append(hs, hdrhistogram.Import(r.HandshakeHist))
		}
		if r.LatencyHist != nil {
			lat = append(lat, hdrhistogram.Import(r.LatencyHist))
		}
	}
	if res.ConnectSecs > 0 && res.Scenario == Connect {
		res.HandshakeRate = float64(res.Connected) / res.ConnectSecs
		res.Handshake = summarize(hs...)
	}
	if res.Scenario == Echo {
		res.Latency = summarize(lat...)
		// Every worker sampled the same target over about the same window:
		// their mean is the target's CPU for all the messages.
		if res.Messages > 0 && len(parts) > 0 {
			res.CPUSeconds = cpu / float64(len(parts))
			res.CPUPerMillion = res.CPUSeconds / (float64(res.Messages) / 1e6)
		}
	}
}

// startWorkers starts procs workers sharing conns connections:
// command(n, offset) is the command line of the worker that takes n
// connections from key index offset. The workers started are returned
// even on an error, for stopWorkers.
func startWorkers(conns, procs int, command func(conns, offset int) *exec.Cmd) ([]*worker, error) {
	var ws []*worker
	offset := 0
	for i := range procs {
		n := conns / procs
		if i < conns%procs {
			n++
		}
		cmd := command(n, offset)
		stdin, err1 := cmd.StdinPipe()
		stdout, err2 := cmd.StdoutPipe()
		if err := errors.Join(err1, err2); err != nil {
			return ws, err
		}
		if err := cmd.Start(); err != nil {
			return ws, fmt.Errorf("bench: start worker: %w", err)
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		ws = append(ws, &worker{cmd: cmd, stdin: stdin, lines: sc, offset: offset, conns: n})
		offset += n
	}
	return ws, nil
}

// stopWorkers ends the workers (their stdin closed, then killed).
func stopWorkers(ws []*worker) {
	for _, w := range ws {
		_ = w.stdin.Close()
		_ = w.cmd.Process.Kill()
		_ = w.cmd.Wait()
	}
}

// readyWorkers reads every broadcast worker's ready line: the connections
// they hold, and the ready lines themselves.
func readyWorkers(ws []*worker) (int64, []readyLine, error) {
	var want int64
	var rls []readyLine
	for _, w := range ws {
		var rl readyLine
		if err := w.readJSON(&rl); err != nil || !rl.Ready {
			return 0, nil, fmt.Errorf("bench: worker %d: no ready line (%v)", w.cmd.Process.Pid, err)
		}
		want += int64(rl.Connected)
		rls = append(rls, rl)
	}
	return want, rls, nil
}

// readJSON reads w's next line into v.
func (w *worker) readJSON(v any) error {
	if !w.lines.Scan() {
		return fmt.Errorf("bench: worker %d ended: %v", w.cmd.Process.Pid, w.lines.Err())
	}
	return json.Unmarshal(w.lines.Bytes(), v)
}

// broadcastWorkers runs the broadcast rounds over worker processes that
// hold want connections (Config.Control): for each round every worker is
// armed, the parent calls POST /api/broadcast, and the round's last
// delivery is the latest of the workers' (wall clock: one machine). Then
// the workers close their connections and report.
func broadcastWorkers(ctx context.Context, cfg Config, res *Result, ws []*worker, want int64) error {
	if err := broadcastRounds(ctx, cfg, res, ws, want); err != nil {
		return err
	}
	closeWorkers(res, ws)
	if res.Missing > 0 {
		return fmt.Errorf("bench: broadcast: %d deliveries missing", res.Missing)
	}
	return nil
}

// closeWorkers closes the workers' stdin (they close their connections
// and print their results) and adds their failures to res; it returns how
// many reported.
func closeWorkers(res *Result, ws []*worker) int {
	n := 0
	for _, w := range ws {
		_ = w.stdin.Close()
		var r Result
		if err := w.readJSON(&r); err == nil {
			mergeFailures(res, &r)
			n++
		}
	}
	return n
}

// broadcastRounds sends cfg.Rounds broadcasts to workers holding want
// connections and records them in res.
func broadcastRounds(ctx context.Context, cfg Config, res *Result, ws []*worker, want int64) error {
	var cpu float64
	for round := 1; round <= cfg.Rounds; round++ {
		u0, perr := cfg.Probe.Sample(ctx, false)
		for _, w := range ws {
			if _, err := fmt.Fprintf(w.stdin, "%d\n", round); err != nil {
				return err
			}
			var armed map[string]int
			if err := w.readJSON(&armed); err != nil || armed["armed"] != round {
				return fmt.Errorf("bench: worker %d not armed for round %d (%v)", w.cmd.Process.Pid, round, err)
			}
		}
		body, _ := json.Marshal(map[string]string{"message": "b-" + strconv.Itoa(round)})
		t0 := time.Now()
		if _, err := httpDo(ctx, "POST", "http://"+cfg.Admin+"/api/broadcast", string(body)); err != nil {
			return err
		}
		t1 := time.Now()
		var last, got int64
		for _, w := range ws {
			var br broadcastRound
			if err := w.readJSON(&br); err != nil || br.Round != round {
				return fmt.Errorf("bench: worker %d: no report of round %d (%v)", w.cmd.Process.Pid, round, err)
			}
			got += br.Received
			last = max(last, br.Last)
		}
		res.Delivered += got
		res.Missing += want - got
		res.LastAfterCall = append(res.LastAfterCall, ms(last-t0.UnixNano()))
		res.LastAfterReply = append(res.LastAfterReply, ms(last-t1.UnixNano()))
		if u1, perr1 := cfg.Probe.Sample(ctx, false); perr == nil && perr1 == nil {
			cpu += u1.CPU - u0.CPU
		}
		settle(ctx, 200*time.Millisecond)
	}
	res.CPUPerBroadcast = 1000 * cpu / float64(cfg.Rounds)
	return nil
}

// mergeFailures adds r's failures by reason to res's.
func mergeFailures(res, r *Result) {
	for k, v := range r.Failures {
		if res.Failures == nil {
			res.Failures = map[string]int{}
		}
		res.Failures[k] += v
	}
}
