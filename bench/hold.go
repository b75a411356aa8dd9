package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// RunHold is the sequence of `wsgate bench scale`: worker processes
// connect cfg.Conns clients once (paced at cfg.ConnectRate in all) and
// hold them while the parent measures, in turn, the connect phase, the
// target idle (cfg.Probe: memory per connection, then CPU over
// cfg.Duration), cfg.Rounds broadcasts to every client, and cfg.Pushes
// pushes to random users among all of them. It returns one Result per
// phase (connect, idle, broadcast, push), as far as it got.
//
// command(conns, offset) is the command line of one worker: `wsgate bench
// --worker --scenario broadcast` with those connection counts and its
// share of the connect rate (broadcastWorker answers the commands).
// Failures of the whole run (connect, and closes after the welcome) are
// on the connect result.
func RunHold(ctx context.Context, cfg Config, procs int, command func(conns, offset int) *exec.Cmd) ([]*Result, error) {
	cfg.Scenario = Broadcast
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	result := func(scenario string) *Result {
		return &Result{Target: cfg.Target, Scenario: scenario, Conns: cfg.Conns}
	}
	before, err := cfg.Probe.Sample(ctx, false)
	if err != nil {
		return nil, err
	}
	var beforeB Usage
	if cfg.Backends != nil {
		if beforeB, err = cfg.Backends.Sample(ctx, false); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	ws, err := startWorkers(cfg.Conns, procs, command)
	defer stopWorkers(ws)
	if err != nil {
		return nil, err
	}
	conn := result(Connect)
	out := []*Result{conn}
	want, rls, err := readyWorkers(ws)
	if err != nil {
		return out, err
	}
	var hs []*hdrhistogram.Histogram
	var last int64
	for _, rl := range rls {
		mergeFailures(conn, &Result{Failures: rl.Failures})
		conn.Connected += rl.Connected
		last = max(last, rl.LastOpen)
		if rl.Handshakes != nil {
			hs = append(hs, hdrhistogram.Import(rl.Handshakes))
		}
	}
	if last > 0 {
		conn.ConnectSecs = float64(last-t0.UnixNano()) / 1e9
		conn.HandshakeRate = float64(conn.Connected) / conn.ConnectSecs
	}
	conn.Handshake = summarize(hs...)
	phase := func(msg string, args ...any) {
		if cfg.OnPhase != nil {
			cfg.OnPhase(msg)
		}
		if cfg.Log != nil {
			cfg.Log.Info("bench: "+msg, args...)
		}
	}
	phase("connected", "clients", conn.Connected, "failures", conn.Failures, "secs", int(conn.ConnectSecs))

	idle := result(Idle)
	out = append(out, idle)
	if err := measureIdle(ctx, cfg, idle, before, int(want)); err != nil {
		return out, err
	}
	if cfg.Backends != nil {
		bcfg, b := cfg, result(Idle)
		bcfg.Probe = *cfg.Backends
		if err := measureIdle(ctx, bcfg, b, beforeB, int(want)); err != nil {
			return out, err
		}
		idle.BackendMemPerConn, idle.BackendIdleCPU = b.MemPerConn, b.IdleCPU
	}
	phase("idle measured", "gateway_bytes_per_conn", int(idle.MemPerConn), "gateway_cpu_pct", int(idle.IdleCPU))
	bc := result(Broadcast)
	out = append(out, bc)
	if err := broadcastRounds(ctx, cfg, bc, ws, want); err != nil {
		return out, err
	}
	phase("broadcasts done", "rounds", cfg.Rounds, "missing", bc.Missing)
	push := result(Push)
	out = append(out, push)
	perr := pushWorkers(ctx, cfg, push, ws)
	phase("pushes done", "pushes", cfg.Pushes, "missing", push.Missing)
	// The workers' last word holds every failure, the connect phase's too.
	if all := result(Connect); closeWorkers(all, ws) == len(ws) {
		conn.Failures = all.Failures
	}
	switch {
	case perr != nil:
		return out, perr
	case bc.Missing > 0 || push.Missing > 0:
		return out, fmt.Errorf("bench: %d broadcast and %d push deliveries missing", bc.Missing, push.Missing)
	}
	return out, nil
}

// pushWorkers sends cfg.Pushes pushes (at most one per connection) to
// distinct random users among the workers' connections through the admin
// API, adminWorkers at a time, and records their delivery in res: each
// carries its send time ("p-<seq>-<unix ns>"), the worker holding the
// user records the latency, and the parent tells each worker how many
// pushes the API delivered to its users.
func pushWorkers(ctx context.Context, cfg Config, res *Result, ws []*worker) error {
	for _, w := range ws {
		if _, err := fmt.Fprintln(w.stdin, "push"); err != nil {
			return err
		}
		var armed map[string]bool
		if err := w.readJSON(&armed); err != nil || !armed["push_armed"] {
			return fmt.Errorf("bench: worker %d not armed for pushes (%v)", w.cmd.Process.Pid, err)
		}
	}
	n := min(cfg.Pushes, cfg.Conns)
	users := make(map[int]bool, n)
	for len(users) < n {
		users[rand.IntN(cfg.Conns)] = true
	}
	expect := make([]atomic.Int64, len(ws))
	var apiErr atomic.Pointer[error]
	jobs := make(chan int)
	var wg sync.WaitGroup
	seq := atomic.Int64{}
	start := time.Now()
	for range adminWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				msg := "p-" + strconv.FormatInt(seq.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 10)
				body, _ := json.Marshal(map[string]string{"userId": cfg.KeyPrefix + strconv.Itoa(u%cfg.Keys), "message": msg})
				b, err := httpDo(ctx, "POST", "http://"+cfg.Admin+"/api/send", string(body))
				if err != nil {
					apiErr.Store(&err)
					continue
				}
				var got struct{ Delivered int64 }
				_ = json.Unmarshal(b, &got)
				w := sort.Search(len(ws), func(i int) bool { return ws[i].offset+ws[i].conns > u })
				expect[w].Add(got.Delivered)
			}
		}()
	}
	for u := range users {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	returned := time.Now()
	if p := apiErr.Load(); p != nil {
		return *p
	}
	res.PushRate = float64(n) / returned.Sub(start).Seconds()
	var hs []*hdrhistogram.Histogram
	var last int64
	for i, w := range ws {
		want := expect[i].Load()
		if _, err := fmt.Fprintf(w.stdin, "pushed %d\n", want); err != nil {
			return err
		}
		var rep pushReport
		if err := w.readJSON(&rep); err != nil {
			return fmt.Errorf("bench: worker %d: no push report (%v)", w.cmd.Process.Pid, err)
		}
		res.Delivered += rep.Received
		res.Missing += max(0, want-rep.Received)
		last = max(last, rep.Last)
		if rep.Hist != nil {
			hs = append(hs, hdrhistogram.Import(rep.Hist))
		}
	}
	res.Delivery = summarize(hs...)
	if last > 0 {
		res.LastAfterReply = []float64{ms(last - returned.UnixNano())}
	}
	return nil
}
