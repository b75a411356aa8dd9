package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Push and broadcast markers: pushed messages carry "p-<seq>" (inside the
// demo app's JSON), broadcasts "b-<round>" (verbatim).
var (
	pushMarker  = []byte(`"content":"p-`)
	bcastPrefix = []byte("b-")
)

// adminWorkers is how many admin API requests the push scenario keeps in
// flight.
const adminWorkers = 16

// onPush counts a pushed message "p-<seq>" and records its latency from
// pushT0[seq]; a worker of RunHold, which has no pushT0, reads the
// parent's send time (wall clock, one machine) from "p-<seq>-<unix ns>".
func (r *runner) onPush(c *Conn, p []byte) {
	i := bytes.Index(p, pushMarker)
	if i < 0 {
		return
	}
	p = p[i+len(pushMarker):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return
	}
	now := r.e.Now()
	var t0 int64
	if r.pushT0 == nil {
		_, sent, ok := bytes.Cut(p[:j], []byte("-"))
		wall, err := strconv.ParseInt(string(sent), 10, 64)
		if !ok || err != nil {
			return
		}
		t0 = now - (r.e.base.Add(time.Duration(now)).UnixNano() - wall)
	} else {
		seq, err := strconv.Atoi(string(p[:j]))
		if err != nil || seq < 0 || seq >= len(r.pushT0) {
			return
		}
		t0 = r.pushT0[seq].Load()
	}
	recordNanos(r.lat[c.Loop()], now-t0)
	r.received.Add(1)
	storeMax(&r.lastRecv, now)
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (r *runner) push() error {
	if err := r.connectAll(); err != nil {
		return err
	}
	n := r.cfg.Pushes
	r.pushT0 = make([]atomic.Int64, n)
	r.mode.Store(modePush)
	var delivered atomic.Int64
	var apiErr atomic.Pointer[error]
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := r.e.Now()
	for range adminWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				body, _ := json.Marshal(map[string]string{"userId": r.key(i % r.cfg.Conns), "message": "p-" + strconv.Itoa(i)})
				r.pushT0[i].Store(r.e.Now())
				b, err := httpDo(r.ctx, "POST", "http://"+r.cfg.Admin+"/api/send", string(body))
				if err != nil {
					apiErr.Store(&err)
					continue
				}
				var out struct{ Delivered int64 }
				_ = json.Unmarshal(b, &out)
				delivered.Add(out.Delivered)
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	returned := r.e.Now()
	if p := apiErr.Load(); p != nil {
		return *p
	}
	want := delivered.Load()
	err := r.waitFor("push delivery", func() bool { return r.received.Load() >= want })
	r.res.Delivered = r.received.Load()
	r.res.Missing = want - r.res.Delivered
	r.res.PushRate = float64(n) / (float64(returned-start) / 1e9)
	r.res.Delivery = summarize(r.lat...)
	r.res.LastAfterReply = []float64{ms(r.lastRecv.Load() - returned)}
	return err
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// onBroadcast counts a broadcast "b-<round>" of the current round; any
// other message goes to onPush (a worker of RunHold gets both).
func (r *runner) onBroadcast(c *Conn, p []byte) {
	if !bytes.HasPrefix(p, bcastPrefix) {
		r.onPush(c, p)
		return
	}
	round, err := strconv.Atoi(string(p[len(bcastPrefix):]))
	if err != nil || int64(round) != r.bcastRound.Load() {
		return
	}
	now := r.e.Now()
	if t0 := r.bcastT0.Load(); t0 != 0 { // a worker does not know when its parent called
		recordNanos(r.lat[c.Loop()], now-t0)
	}
	r.received.Add(1)
	storeMax(&r.lastRecv, now)
}

// broadcastRound is a worker's report of one broadcast round.
type broadcastRound struct {
	Round    int   `json:"round"`
	Received int64 `json:"received"`
	Want     int64 `json:"want"`
	Last     int64 `json:"last_unix_ns"` // wall clock of the round's last delivery; 0 if none
}

// pushReport is a worker's answer to "pushed <n>" (RunHold).
type pushReport struct {
	Received int64                  `json:"received"`
	Last     int64                  `json:"last_unix_ns"` // wall clock of the latest push delivery; 0 if none
	Hist     *hdrhistogram.Snapshot `json:"latency_histogram"`
}

// wall is the wall clock (unix ns) of an Engine.Now reading; 0 stays 0.
func (r *runner) wall(now int64) int64 {
	if now == 0 {
		return 0
	}
	return r.e.base.Add(time.Duration(now)).UnixNano()
}

// failPending is the failure reason of the connections a worker still
// waited for when its connect phase timed out.
const failPending = "pending at the timeout"

// broadcastWorker holds the connections and answers the parent's commands
// on Control (see Config.Control), one a line: "<round>" arms a broadcast
// round and reports it once delivered; "push" resets the push count
// (answered {"push_armed":true}); "pushed <n>" waits until n pushes
// arrived (or the timeout) and answers a pushReport.
func (r *runner) broadcastWorker() error {
	err := r.connectAll()
	if err != nil && r.ctx.Err() == nil && r.nWelcome.Load() > 0 {
		// The connect phase timed out with connections still dialing
		// or unanswered: they count as failed, and the worker holds and
		// reports the rest (a scale run measures what it got; a worker
		// that quit here failed the parent's whole run at 900,000).
		// Dropped connections were welcomed first: they are not pending.
		if pending := r.pending(); pending > 0 {
			r.fails.addN(failPending, int(pending))
			r.nFail.Add(pending)
		}
		err = nil
	}
	want := r.nWelcome.Load() - r.nDrop.Load()
	r.cfg.Report(readyLine{Ready: true, Connected: int(want), Failed: int(r.nFail.Load()),
		LastOpen: r.wall(r.lastOpen.Load()), Handshakes: merged(r.hs...).Export(), Failures: r.fails.snapshot()})
	if err != nil {
		return err
	}
	r.mode.Store(modeBroadcast)
	sc := bufio.NewScanner(r.cfg.Control)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "push" {
			r.received.Store(0)
			r.lastRecv.Store(0)
			r.cfg.Report(map[string]bool{"push_armed": true})
			continue
		}
		if n, ok := strings.CutPrefix(line, "pushed "); ok {
			want, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return fmt.Errorf("bench: worker: bad command %q", line)
			}
			// The parent counted these as delivered: a short bound, even
			// when Timeout is long enough for a million connects.
			werr := r.waitWithin("push delivery", min(r.cfg.Timeout, time.Minute), func() bool { return r.received.Load() >= want })
			rep := pushReport{Received: r.received.Load(), Last: r.wall(r.lastRecv.Load())}
			hs := make([]*hdrhistogram.Histogram, len(r.lat))
			r.e.ExecAll(func(i int) { hs[i] = hdrhistogram.Import(r.lat[i].Export()) }) // the loops record into r.lat
			rep.Hist = merged(hs...).Export()
			r.cfg.Report(rep)
			if werr != nil {
				return werr
			}
			continue
		}
		round, err := strconv.Atoi(line)
		if err != nil {
			return fmt.Errorf("bench: worker: bad command %q", line)
		}
		r.received.Store(0)
		r.lastRecv.Store(0)
		r.bcastRound.Store(int64(round))
		r.cfg.Report(map[string]int{"armed": round})
		werr := r.waitFor("broadcast delivery", func() bool { return r.received.Load() >= want })
		rep := broadcastRound{Round: round, Received: r.received.Load(), Want: want, Last: r.wall(r.lastRecv.Load())}
		r.cfg.Report(rep)
		if werr != nil {
			return werr
		}
	}
	return nil
}

func (r *runner) broadcast() error {
	if r.cfg.Control != nil {
		return r.broadcastWorker()
	}
	if err := r.connectAll(); err != nil {
		return err
	}
	r.mode.Store(modeBroadcast)
	want := r.nWelcome.Load() - r.nDrop.Load()
	var cpu float64
	for round := 1; round <= r.cfg.Rounds; round++ {
		u0, perr := r.cfg.Probe.Sample(r.ctx, false)
		r.received.Store(0)
		r.lastRecv.Store(0)
		r.bcastRound.Store(int64(round))
		body, _ := json.Marshal(map[string]string{"message": "b-" + strconv.Itoa(round)})
		t0 := r.e.Now()
		r.bcastT0.Store(t0)
		if _, err := httpDo(r.ctx, "POST", "http://"+r.cfg.Admin+"/api/broadcast", string(body)); err != nil {
			return err
		}
		t1 := r.e.Now()
		err := r.waitFor("broadcast delivery", func() bool { return r.received.Load() >= want })
		last := r.lastRecv.Load()
		r.res.Delivered += r.received.Load()
		r.res.Missing += want - r.received.Load()
		r.res.LastAfterCall = append(r.res.LastAfterCall, ms(last-t0))
		r.res.LastAfterReply = append(r.res.LastAfterReply, ms(last-t1))
		if err != nil {
			return err
		}
		if u1, perr1 := r.cfg.Probe.Sample(r.ctx, false); perr == nil && perr1 == nil {
			cpu += u1.CPU - u0.CPU
		}
		settle(r.ctx, 200*time.Millisecond)
	}
	r.res.Delivery = summarize(r.lat...)
	r.res.CPUPerBroadcast = 1000 * cpu / float64(r.cfg.Rounds)
	return nil
}

// nodeInfo is one entry of GET /api/nodes.
type nodeInfo struct {
	ID      string `json:"id"`
	Healthy bool   `json:"healthy"`
}

func (r *runner) nodes() ([]nodeInfo, error) {
	b, err := httpGet(r.ctx, "http://"+r.cfg.Admin+"/api/nodes")
	if err != nil {
		return nil, err
	}
	var ns []nodeInfo
	return ns, json.Unmarshal(b, &ns)
}

// ringOwners asks the gateway's ring for every connection's owner.
func (r *runner) ringOwners() ([]string, error) {
	owners := make([]string, r.cfg.Conns)
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range adminWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				b, err := httpGet(r.ctx, "http://"+r.cfg.Admin+"/api/ring?key="+r.key(i))
				if err != nil {
					firstErr.Store(&err)
					continue
				}
				var out struct{ Owner string }
				_ = json.Unmarshal(b, &out)
				owners[i] = out.Owner
			}
		}()
	}
	for i := range r.cfg.Conns {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return nil, *p
	}
	return owners, nil
}

// rebalance adds a node, then removes it, and checks who moved.
func (r *runner) rebalance() error {
	closed := make([]atomic.Int32, r.cfg.Conns) // per connection: 1012 closes in this step
	r.onClose = func(c *Conn, code int, reason string) {
		if reason == "local" {
			return // the scenario's own teardown
		}
		if code == 1012 && !r.cfg.Migrate {
			closed[c.ID].Add(1)
		} else {
			r.nDrop.Add(1)
			r.fails.add(fmt.Sprintf("after open: close %d %s", code, reason))
		}
		r.e.Dial(c.ID, c.Key) // reconnect at once, like a real client
	}
	if err := r.connectAll(); err != nil {
		return err
	}
	if r.cfg.Migrate {
		r.startCounting()
		defer r.sending.Store(false)
	}
	before, err := r.nodes()
	if err != nil {
		return err
	}
	var added struct{ ID string }
	add := func() error {
		b, err := httpDo(r.ctx, "POST", "http://"+r.cfg.Admin+"/api/nodes", "")
		if err != nil {
			return fmt.Errorf("bench: add node (needs `wsgate dev`): %w", err)
		}
		if err := json.Unmarshal(b, &added); err != nil || added.ID == "" {
			return fmt.Errorf("bench: add node: answer %q", b)
		}
		return nil
	}
	step, err := r.rebalanceStep("add", len(before), closed, add, func(owners []string) bool {
		return slices.Contains(owners, added.ID)
	})
	if err != nil {
		return err
	}
	step.Change = "add " + added.ID
	r.res.Steps = append(r.res.Steps, step)
	for i := range closed {
		closed[i].Store(0)
	}
	remove := func() error {
		_, err := httpDo(r.ctx, "DELETE", "http://"+r.cfg.Admin+"/api/nodes/"+added.ID, "")
		return err
	}
	step, err = r.rebalanceStep("remove", len(before)+1, closed, remove, func(owners []string) bool {
		return !slices.Contains(owners, added.ID)
	})
	step.Change = "remove " + added.ID
	r.res.Steps = append(r.res.Steps, step)
	r.res.Drops = r.nDrop.Load()
	return err
}

// rebalanceStep notes every client's owner, makes the change (do), reads
// the new owners from the gateway's ring until they show the change
// (changed) and two reads agree, waits until every client whose owner
// changed is connected to its new owner, and counts closes.
func (r *runner) rebalanceStep(change string, nodesBefore int, closed []atomic.Int32, do func() error, changed func(owners []string) bool) (RebalanceStep, error) {
	st := RebalanceStep{Change: change, NodesBefore: nodesBefore}
	old := make([]string, r.cfg.Conns)
	for i := range old {
		if p := r.owner[i].Load(); p != nil {
			old[i] = *p
		}
	}
	var m0 migrationSample
	if r.cfg.Migrate {
		var err error
		if m0, err = r.sampleMigrations(r.ctx); err != nil {
			return st, err
		}
		r.e.ExecAll(func(i int) { r.lat[i].Reset() })
		r.badCounts.Store(0)
		r.recording.Store(true)
	}
	if err := do(); err != nil {
		return st, err
	}
	t0 := time.Now()
	var owners []string
	if err := r.waitFor(change+": ring", func() bool {
		prev := owners
		var err error
		if owners, err = r.ringOwners(); err != nil {
			owners = nil
			return false
		}
		return changed(owners) && slices.Equal(prev, owners)
	}); err != nil {
		return st, err
	}
	var movers []int
	for i, o := range owners {
		if o != old[i] {
			movers = append(movers, i)
		}
	}
	stop := make(chan struct{})
	go r.progress("rebalance", stop)
	err := r.waitFor(change+": reconnects", func() bool {
		for _, i := range movers {
			p := r.owner[i].Load()
			if r.opened[i].Load() == 0 || p == nil || *p != owners[i] {
				return false
			}
		}
		return true
	})
	close(stop)
	st.ReconnectSecs = time.Since(t0).Seconds()
	st.Moved = len(movers)
	st.Fraction = float64(len(movers)) / float64(r.cfg.Conns)
	if change == "add" {
		st.Ideal = 1 / float64(nodesBefore+1)
	} else {
		st.Ideal = 1 / float64(nodesBefore)
	}
	moving := make(map[int]bool, len(movers))
	for _, i := range movers {
		moving[i] = true
		if closed[i].Load() == 0 && !r.cfg.Migrate {
			st.Missed++
		}
	}
	if r.cfg.Migrate && err == nil {
		err = r.migrationStep(&st, m0)
	}
	for i := range closed {
		if closed[i].Load() > 0 && !moving[i] {
			st.NeedlessClose++
		}
	}
	return st, err
}
