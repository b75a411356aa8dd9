package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wsgate/wsgate/internal/ring"
)

// The operations console (GET / on the admin listener) is fed by a sampler
// that reads the gateway's counters once a second into a 15-minute history,
// and by an event log (ring swaps, nodes joining, leaving and going down,
// each rebalance's summary, rejections and protocol closes by reason).
// Both are pushed to open consoles as server-sent events.

const (
	consoleEvery   = time.Second
	consoleSamples = 900 // 15 minutes at consoleEvery
	consoleEvents  = 500
	// consoleStreams bounds the open /api/console/stream connections: each
	// is a goroutine and a buffer; the admin API is for operators, not for
	// the public.
	consoleStreams = 32
)

// Sample is one second of the console's history.
type Sample struct {
	T          int64              `json:"t"`     // unix milliseconds
	Conns      int64              `json:"conns"` // open client sessions
	Nodes      map[string]int64   `json:"nodes"` // this gateway's sessions per backend node
	MsgsIn     float64            `json:"in"`    // client -> backend messages per second
	MsgsOut    float64            `json:"out"`   // backend -> client messages per second
	Handshakes float64            `json:"hs"`    // successful upgrades per second
	Rejected   map[string]float64 `json:"rej,omitempty"`
	// RTTp99 is the 99th percentile of link round trips (keepalive
	// Ping/Pong through the links' queues and the backends' read loops)
	// over the last minute, in milliseconds; 0 before any.
	RTTp99 float64 `json:"rtt99"`
	// RelayP99 is the 99th percentile of sampled relay round trips (a
	// client message to the backend's next message to that client) over
	// the last minute, in milliseconds; 0 before any.
	RelayP99 float64 `json:"relay99"`
}

// Event is one line of the console's event log.
type Event struct {
	T    int64  `json:"t"`    // unix milliseconds
	Kind string `json:"kind"` // ring, join, leave, down, up, rebalance, rejected, close, scale
	Text string `json:"text"`
}

// console holds the history and the event log, and the open streams.
// Safe for concurrent use.
type console struct {
	mu      sync.Mutex
	samples history[Sample]
	events  history[Event]
	subs    map[chan []byte]struct{}
	last    counters // the previous sample's counter values
	lastAt  time.Time

	rb *rebalanceRun // the rebalance in progress, if any
}

// counters are the cumulative values a sample turns into rates.
type counters struct {
	in, out, hs float64
	rejected    map[string]float64
	closes      map[string]float64
}

// rebalanceRun is a ring change whose moved clients are being closed.
type rebalanceRun struct {
	version         uint64
	from            time.Time
	closedAtStart   int64
	migratedAtStart int64
	members         int
	joined, left    []string
	superseded      bool
	closedAtFinish  int64
}

func newConsole() *console {
	return &console{subs: make(map[chan []byte]struct{}),
		samples: history[Sample]{max: consoleSamples}, events: history[Event]{max: consoleEvents}}
}

// history keeps the last max values pushed (a ring).
type history[T any] struct {
	buf  []T
	head int // the oldest value once buf is full
	max  int
}

func (h *history[T]) push(v T) {
	if len(h.buf) < h.max {
		h.buf = append(h.buf, v)
		return
	}
	h.buf[h.head] = v
	h.head = (h.head + 1) % h.max
}

// all returns a copy of the values, oldest first.
func (h *history[T]) all() []T {
	return append(append([]T(nil), h.buf[h.head:]...), h.buf[:h.head]...)
}

// event records an event and pushes it to open consoles.
func (c *console) event(kind, format string, args ...any) {
	e := Event{T: time.Now().UnixMilli(), Kind: kind, Text: fmt.Sprintf(format, args...)}
	c.mu.Lock()
	c.events.push(e)
	c.publishLocked("event", e)
	c.mu.Unlock()
}

// publishLocked sends one server-sent event to every stream; a stream
// that cannot keep up loses it (it reloads the snapshot on reconnect).
func (c *console) publishLocked(name string, v any) {
	if len(c.subs) == 0 {
		return
	}
	data, _ := json.Marshal(v)
	msg := []byte("event: " + name + "\ndata: " + string(data) + "\n\n")
	for ch := range c.subs {
		select {
		case ch <- msg:
		default:
		}
	}
}

// snapshot is the history and the event log in order, oldest first.
func (c *console) snapshot() (samples []Sample, events []Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.samples.all(), c.events.all()
}

// sample takes the console's sample of now and publishes the nodes (every
// consoleEvery).
func (g *Gateway) sample(ctx context.Context, now time.Time) {
	g.takeSample(now)
	g.publishNodes(ctx)
}

// publishNodes sends the nodes and the gateways to the open consoles,
// read once for all of them (the gateways come from presence: Redis).
func (g *Gateway) publishNodes(ctx context.Context) {
	c := g.console
	c.mu.Lock()
	open := len(c.subs) > 0
	c.mu.Unlock()
	if !open {
		return
	}
	nodes, gws := g.Nodes(ctx), g.Gateways(ctx)
	c.mu.Lock()
	c.publishLocked("nodes", nodes)
	c.publishLocked("gateways", gws)
	c.mu.Unlock()
}

// takeSample reads the counters, records a sample and the rejections and
// protocol closes since the last one as events.
func (g *Gateway) takeSample(now time.Time) {
	cur := counters{rejected: map[string]float64{}, closes: map[string]float64{}}
	var rtt *dto.Histogram
	if mfs, err := g.metrics.reg.Gather(); err == nil {
		for _, mf := range mfs {
			switch mf.GetName() {
			case "wsgate_gateway_messages_in_total":
				cur.in = sumCounter(mf)
			case "wsgate_gateway_messages_out_total":
				cur.out = sumCounter(mf)
			case "wsgate_gateway_handshakes_total":
				cur.hs = labelled(mf, "result")["ok"]
			case "wsgate_gateway_rejected_total":
				cur.rejected = labelled(mf, "reason")
			case "wsgate_gateway_protocol_closes_total":
				cur.closes = labelled(mf, "code")
			}
		}
	}
	rtt = g.metrics.rttWindow.snapshot()
	s := Sample{T: now.UnixMilli(), Conns: g.clients.Load(), Nodes: map[string]int64{}}
	for _, n := range g.memberSet() {
		s.Nodes[n.ID] = g.nodeClients(n.ID).Load()
	}
	if rtt != nil {
		s.RTTp99 = quantile(rtt, 0.99) * 1000
	}
	if h := g.metrics.relayWindow.snapshot(); h != nil {
		s.RelayP99 = quantile(h, 0.99) * 1000
	}
	c := g.console
	c.mu.Lock()
	if !c.lastAt.IsZero() {
		dt := now.Sub(c.lastAt).Seconds()
		rate := func(a, b float64) float64 { return max(0, a-b) / dt }
		s.MsgsIn, s.MsgsOut, s.Handshakes = rate(cur.in, c.last.in), rate(cur.out, c.last.out), rate(cur.hs, c.last.hs)
		for reason, v := range cur.rejected {
			if d := v - c.last.rejected[reason]; d > 0 {
				if s.Rejected == nil {
					s.Rejected = map[string]float64{}
				}
				s.Rejected[reason] = d / dt
			}
		}
	}
	prev := c.last
	c.last, c.lastAt = cur, now
	c.samples.push(s)
	c.publishLocked("sample", s)
	c.mu.Unlock()
	if prev.rejected != nil {
		if d := deltas(cur.rejected, prev.rejected); d != "" {
			c.event("rejected", "refused or closed by a limit or auth: %s", d)
		}
		if d := deltas(cur.closes, prev.closes); d != "" {
			c.event("close", "protocol closes by code: %s", d)
		}
	}
}

// deltas formats the counters that grew: "max_conns ×3, auth_expired ×1".
func deltas(cur, prev map[string]float64) string {
	var keys []string
	for k, v := range cur {
		if v > prev[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += k + " ×" + strconv.FormatFloat(cur[k]-prev[k], 'f', -1, 64)
	}
	return out
}

func sumCounter(mf *dto.MetricFamily) float64 {
	var s float64
	for _, m := range mf.GetMetric() {
		s += m.GetCounter().GetValue()
	}
	return s
}

// labelled maps one label's values to their counter values.
func labelled(mf *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// quantile estimates the q quantile of a histogram from its buckets (the
// upper bound of the bucket that holds it); 0 when it is empty.
func quantile(h *dto.Histogram, q float64) float64 {
	n := float64(h.GetSampleCount())
	if n == 0 {
		return 0
	}
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= q*n {
			return b.GetUpperBound()
		}
	}
	return h.GetBucket()[len(h.GetBucket())-1].GetUpperBound()
}

// ringChanged records a ring swap in the event log and starts (or
// supersedes) the rebalance it causes. prevIDs and ids are the members
// before and after.
func (g *Gateway) ringChanged(version uint64, prevIDs, ids []string, moving bool) {
	joined, left := diffIDs(ids, prevIDs), diffIDs(prevIDs, ids)
	c := g.console
	for _, id := range joined {
		c.event("join", "node %s is on the ring", id)
	}
	for _, id := range left {
		c.event("leave", "node %s left the ring", id)
	}
	c.event("ring", "ring %016x: %d members", version, len(ids))
	if !moving {
		return
	}
	c.mu.Lock()
	if c.rb != nil {
		c.rb.superseded = true
	}
	old := c.rb
	c.rb = &rebalanceRun{version: version, from: time.Now(), closedAtStart: g.rebalanced.Load(), migratedAtStart: g.migrating.Load(),
		members: len(ids), joined: joined, left: left}
	c.mu.Unlock()
	if old != nil {
		g.finishRebalance(old)
	}
}

// rebalanceDone runs when the pacer has no moved client left to close.
func (g *Gateway) rebalanceDone() {
	c := g.console
	c.mu.Lock()
	rb := c.rb
	c.rb = nil
	c.mu.Unlock()
	if rb != nil {
		g.finishRebalance(rb)
	}
}

// finishRebalance logs the one summary line of a rebalance, records it in
// the event log and the rebalance duration histogram.
func (g *Gateway) finishRebalance(rb *rebalanceRun) {
	closed := g.rebalanced.Load() - rb.closedAtStart
	migrated := g.migrating.Load() - rb.migratedAtStart
	moved := closed + migrated
	d := time.Since(rb.from)
	how := "done"
	if rb.superseded {
		how = "superseded by a newer ring"
	}
	g.log.Info("rebalance "+how, "version", fmt.Sprintf("%016x", rb.version), "nodes", rb.members,
		"joined", rb.joined, "left", rb.left, "moved", moved, "closed", closed, "migrated", migrated, "duration", d.Round(time.Millisecond))
	g.metrics.rebalanceSeconds.Observe(d.Seconds())
	g.console.event("rebalance", "rebalance to ring %016x %s: %d clients moved in %v", rb.version, how, moved, d.Round(time.Millisecond))
}

// diffIDs is what a has and b has not.
func diffIDs(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, id := range b {
		in[id] = true
	}
	var out []string
	for _, id := range a {
		if !in[id] {
			out = append(out, id)
		}
	}
	return out
}

// consoleSnapshot is GET /api/console: what a console shows when it opens.
type consoleSnapshot struct {
	Info     Info            `json:"info"`
	Nodes    []NodeStatus    `json:"nodes"`
	Gateways []GatewayStatus `json:"gateways"`
	Samples  []Sample        `json:"samples"`
	Events   []Event         `json:"events"`
	Every    int64           `json:"everyMs"`
}

func (g *Gateway) serveConsole(w http.ResponseWriter, r *http.Request) {
	samples, events := g.console.snapshot()
	writeJSON(w, http.StatusOK, consoleSnapshot{Info: g.Info(), Nodes: g.Nodes(r.Context()), Gateways: g.Gateways(r.Context()),
		Samples: samples, Events: events, Every: consoleEvery.Milliseconds()})
}

// serveStream is GET /api/console/stream: server-sent events "sample"
// (each second), "event" (as they happen), "nodes" and "gateways" (each
// second) until the client goes or the gateway stops.
func (g *Gateway) serveStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	c := g.console
	ch := make(chan []byte, 64)
	c.mu.Lock()
	if len(c.subs) >= consoleStreams || c.subs == nil {
		c.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "too many open consoles (at most "+strconv.Itoa(consoleStreams)+")")
		return
	}
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.subs != nil {
			delete(c.subs, ch)
		}
		c.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": wsgate console\n\n"))
	fl.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return // the gateway is stopping
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// closeStreams ends every open stream (the gateway is stopping) and
// refuses new ones.
func (c *console) closeStreams() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs {
		close(ch)
	}
	c.subs = nil
}

// memberIDs lists r's member ids (none for a nil ring).
func memberIDs(r *ring.Ring) []string {
	if r == nil {
		return nil
	}
	var ids []string
	for _, m := range r.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}

// gatewayLister is a Presence that also knows every live gateway
// (presence.Redis, localPresence).
type gatewayLister interface {
	Gateways(ctx context.Context) (map[string]map[string]int, error)
}

// GatewayStatus is one gateway of the cluster as the console lists it.
type GatewayStatus struct {
	ID      string         `json:"id"`
	Clients int            `json:"clients"`
	Nodes   map[string]int `json:"nodes"` // its clients per backend node, as of its last presence beat
	Self    bool           `json:"self"`  // the gateway serving this console
}

// Gateways lists every live gateway of the cluster (from presence) with
// its clients; this gateway's own counts are read live.
func (g *Gateway) Gateways(ctx context.Context) []GatewayStatus {
	all := map[string]map[string]int{}
	if gl, ok := g.cfg.Presence.(gatewayLister); ok {
		if m, err := gl.Gateways(ctx); err == nil {
			all = m
		}
	}
	all[g.cfg.ID] = g.nodeCounts()
	out := make([]GatewayStatus, 0, len(all))
	for id, nodes := range all {
		st := GatewayStatus{ID: id, Nodes: nodes, Self: id == g.cfg.ID}
		for _, c := range nodes {
			st.Clients += c
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
