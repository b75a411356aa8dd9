package gateway

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/wsgate/wsgate/internal/ring"
)

// loopStats are a loop's traffic counters. Written only by the loop (one
// uncontended atomic add per message), read by the metrics collector.
type loopStats struct {
	msgsIn, bytesIn, msgsOut, bytesOut atomic.Uint64
}

// in counts a relayed client->backend piece; last ends a message.
func (s *loopStats) in(n int, last bool) {
	s.bytesIn.Add(uint64(n))
	if last {
		s.msgsIn.Add(1)
	}
}

// out counts a backend->client piece.
func (s *loopStats) out(n int, last bool) {
	s.bytesOut.Add(uint64(n))
	if last {
		s.msgsOut.Add(1)
	}
}

// metrics is the gateway's Prometheus registry (namespace wsgate_gateway).
type metrics struct {
	reg         *prometheus.Registry
	handshakes  *prometheus.CounterVec
	closes      *prometheus.CounterVec
	closesSent  *prometheus.CounterVec // every close the gateway starts, by code
	rebalance   prometheus.Counter
	slow        prometheus.Counter
	ringMembers prometheus.Gauge
	ringVersion prometheus.Gauge
	ringSwaps   prometheus.Counter
	links       *prometheus.GaugeVec
	silent      *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	linkAuth    *prometheus.CounterVec
	hsOK        prometheus.Counter
	// handshakeGraced counts handshakes given a second timeout because
	// their request waited unread when the first passed (loop.sweep).
	handshakeGraced prometheus.Counter
	tlsReloads      *prometheus.CounterVec
	upDials         *prometheus.CounterVec
	upDialsOK       prometheus.Counter
	migrations      *prometheus.CounterVec // --rebalance migrate, by result
	registered      *recordingRegistry     // every collector registered, for the dashboard test

	handshakeSeconds prometheus.Histogram // accept to 101, client connections
	linkRTT          prometheus.Histogram // keepalive Ping to Pong, all links
	rebalanceSeconds prometheus.Histogram // ring swap to the last moved client closed
	relayRoundTrip   prometheus.Histogram // sampled client message to the backend's next message to that client
	migrationSeconds prometheus.Histogram // a migrated client's pause: migration start to resumed on its new node
	ringInfo         *prometheus.GaugeVec
	rttWindow        *window // linkRTT over the last minute or two, for the console
	relayWindow      *window // relayRoundTrip likewise
}

func newMetrics(g *Gateway) *metrics {
	const ns = "wsgate_gateway"
	reg := &recordingRegistry{Registry: prometheus.NewRegistry()}
	f := func(name, help string, pick func(*loopStats) *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, func() float64 {
			var sum uint64
			for _, l := range g.loopList() {
				sum += pick(&l.stats).Load()
			}
			return float64(sum)
		})
	}
	m := &metrics{
		reg:        reg.Registry,
		registered: reg,
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "handshakes_total",
			Help: "WebSocket upgrade attempts by result (ok or the failure reason)."}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "protocol_closes_total",
			Help: "Clients closed for a protocol violation, by close code."}, []string{"code"}),
		rebalance: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rebalance_closes_total",
			Help: "Clients closed with 1012 because their owner changed."}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "slow_client_closes_total",
			Help: "Clients closed with 1008 for exceeding the outbound backlog."}),
		ringMembers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "ring_members",
			Help: "Backend nodes on the current ring."}),
		ringVersion: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "ring_version",
			Help: "Low 52 bits of the current ring's content hash; equal on gateways with equal rings."}),
		ringSwaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "ring_swaps_total",
			Help: "Rings swapped in."}),
		links: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "backend_up",
			Help: "1 when the control link to a backend is up."}, []string{"node"}),
		silent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "link_silence_drops_total",
			Help: "Backend links closed because nothing was heard on them for 3 keepalive intervals, by node."}, []string{"node"}),
		linkAuth: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "link_auth_failures_total",
			Help: "Backend links (data or control) closed because the backend did not prove it holds the cluster secret, by node."}, []string{"node"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejected_total",
			Help: "Clients refused or closed by an edge limit, by reason (docs/operations.md, Limits)."}, []string{"reason"}),
	}
	m.tlsReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tls_reloads_total",
		Help: "TLS certificate reloads (file change or SIGHUP) by result (ok, error: the old certificate stays)."}, []string{"result"})
	m.closesSent = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "closes_sent_total",
		Help: "Close frames the gateway sent to start closing a client, by close code (1001 shutdown, 1008 policy, 1011/1013 backend trouble, 1012 rebalance, or the backend's own code)."}, []string{"code"})
	m.upDials = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_connects_total",
		Help: "Connections to plain WebSocket upstreams, by result (ok, unavailable: refused or timed out, bad_handshake: not a WebSocket upgrade)."}, []string{"result"})
	m.migrations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "migrations_total",
		Help: "Sessions moved to a new node without closing the client (--rebalance migrate), by result (ok; lost: resumed without state, the old node gone; failed: closed with 1012 or 1011 instead)."}, []string{"result"})
	m.migrationSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "migration_pause_seconds",
		Help:    "The pause a migrated client saw: from the start of its migration (its input held) to its session resumed on the new node.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 1.25, 46)}) // to 2.8 s in 25% steps: bench rebalance --migrate reads quantiles from them
	m.hsOK = m.handshakes.WithLabelValues("ok")
	m.handshakeGraced = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "handshake_graced_total",
		Help: "Client handshakes given a second --handshake-timeout because their request waited unread in the socket when the first passed: the event loop was behind, not the client."})
	m.upDialsOK = m.upDials.WithLabelValues("ok")
	m.handshakeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "handshake_duration_seconds",
		Help:    "Time from accepting a client connection to its 101 (TLS handshake included), successful upgrades.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12)})
	m.linkRTT = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "link_rtt_seconds",
		Help:    "Round trip of keepalive Pings on backend links: through the links' write queues and the backends' read loops, so it grows with their load.",
		Buckets: linkRTTBuckets})
	m.rebalanceSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "rebalance_duration_seconds",
		Help:    "Time from a ring change to the last moved client closed (paced at --rebalance-rate).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)})
	m.relayRoundTrip = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "relay_roundtrip_seconds",
		Help: "Sampled, one client message in 64 per event loop: from relaying it to the backend to relaying the backend's next message to that client " +
			"(the backend's reply time plus both relays; for request/reply traffic).",
		Buckets: linkRTTBuckets})
	m.ringInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "ring_info",
		Help: "1 for the current ring, labelled with its version (hex content hash: equal on gateways with equal rings)."}, []string{"version"})
	m.rttWindow = newWindow(linkRTTBuckets, time.Minute)
	m.relayWindow = newWindow(linkRTTBuckets, time.Minute)
	reg.MustRegister(m.closesSent, m.upDials, m.migrations, m.migrationSeconds, m.handshakeGraced)
	reg.MustRegister(m.handshakeSeconds, m.linkRTT, m.rebalanceSeconds, m.relayRoundTrip, m.ringInfo, perNodeCollector{g})
	if g.tls != nil {
		reg.MustRegister(m.tlsReloads, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "tls_certificate_expiry_seconds",
			Help: "Unix time when the client listener's certificate expires."}, func() float64 { return float64(g.tls.notAfter.Load()) }))
	}
	for _, c := range g.cfg.Collectors {
		reg.MustRegister(c)
	}
	for name, up := range g.cfg.Health {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "dependency_up",
			Help: "1 when the dependency (redis, rabbitmq) is reachable.", ConstLabels: prometheus.Labels{"dependency": name}},
			func() float64 { return b2f(up()) }))
	}
	reg.MustRegister(m.handshakes, m.closes, m.rebalance, m.slow, m.ringMembers, m.ringVersion, m.ringSwaps, m.links, m.silent, m.rejected, m.linkAuth,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "connections",
			Help: "Open client WebSocket sessions."}, func() float64 { return float64(g.clients.Load()) }),
		f("messages_in_total", "Client messages relayed to backends.", func(s *loopStats) *atomic.Uint64 { return &s.msgsIn }),
		f("bytes_in_total", "Client payload bytes relayed to backends.", func(s *loopStats) *atomic.Uint64 { return &s.bytesIn }),
		f("messages_out_total", "Backend messages relayed to clients (per session).", func(s *loopStats) *atomic.Uint64 { return &s.msgsOut }),
		f("bytes_out_total", "Backend payload bytes relayed to clients.", func(s *loopStats) *atomic.Uint64 { return &s.bytesOut }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "outbound_queued_bytes",
			Help: "Bytes queued toward clients, gateway-wide (measured every janitor tick); bounded by --max-outbound-memory."},
			func() float64 { return float64(g.outboundTotal()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "held_connections",
			Help: "Client sockets held (handshaking, open or closing); bounded by --max-conns."}, func() float64 { return float64(g.held.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "max_connections",
			Help: "The --max-conns limit."}, func() float64 { return float64(g.cfg.MaxConns) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "broadcast_deliveries_total",
			Help: "Broadcast messages written to clients."}, func() float64 { return float64(g.bcasts.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handshakeOK()               { m.hsOK.Inc() }
func (m *metrics) handshakeFailed(why string) { m.handshakes.WithLabelValues(why).Inc() }
func (m *metrics) protocolClose(code uint16)  { m.closes.WithLabelValues(strconv.Itoa(int(code))).Inc() }
func (m *metrics) closeSent(code uint16)      { m.closesSent.WithLabelValues(strconv.Itoa(int(code))).Inc() }
func (m *metrics) rebalanceClose()            { m.rebalance.Inc() }

// migrated counts a migration's end; pause is its length for those that resumed.
func (m *metrics) migrated(result string, pause time.Duration) {
	m.migrations.WithLabelValues(result).Inc()
	if result != "failed" {
		m.migrationSeconds.Observe(pause.Seconds())
	}
}
func (m *metrics) slowClient()                { m.slow.Inc() }
func (m *metrics) linkAuthFailed(node string) { m.linkAuth.WithLabelValues(node).Inc() }
func (m *metrics) reject(reason string)       { m.rejected.WithLabelValues(reason).Inc() }
func (m *metrics) tlsReload(result string)    { m.tlsReloads.WithLabelValues(result).Inc() }
func (m *metrics) upstreamDial(result string) {
	if result == "ok" {
		m.upDialsOK.Inc() // per connect: no label lookup
		return
	}
	m.upDials.WithLabelValues(result).Inc()
}

// recordingRegistry is a registry that remembers what was registered, so
// that every metric name can be listed (Gather omits empty vectors).
type recordingRegistry struct {
	*prometheus.Registry
	all []prometheus.Collector
}

// MustRegister registers cs and remembers them.
func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	r.Registry.MustRegister(cs...)
	r.all = append(r.all, cs...)
}

// names lists the fully-qualified name of every registered metric.
func (r *recordingRegistry) names() []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range r.all {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// descName picks the name out of a Desc's String (the only way the client
// library shows it).
var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// perNodeCollector reports this gateway's open sessions per backend node.
type perNodeCollector struct{ g *Gateway }

var perNodeDesc = prometheus.NewDesc("wsgate_gateway_node_connections",
	"Open client sessions of this gateway per backend node.", []string{"node"}, nil)

func (perNodeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- perNodeDesc }

func (c perNodeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.g.memberSet() {
		ch <- prometheus.MustNewConstMetric(perNodeDesc, prometheus.GaugeValue, float64(c.g.nodeClients(n.ID).Load()), n.ID)
	}
}

// probeEvery: one client message in this many (per loop) starts a relay
// round-trip probe when none is running.
const probeEvery = 64

// probeExpiry: a probe with no reply by then is dropped, unobserved.
const probeExpiry = 10 * time.Second

// linkRTTBuckets: 50 µs to ~10 s.
var linkRTTBuckets = prometheus.ExponentialBuckets(50e-6, 2.5, 14)

// relayed records a sampled relay round trip.
func (m *metrics) relayed(d time.Duration) {
	m.relayRoundTrip.Observe(d.Seconds())
	m.relayWindow.observe(d.Seconds())
}

// linkPong records a keepalive round trip.
func (m *metrics) linkPong(rtt time.Duration) {
	m.linkRTT.Observe(rtt.Seconds())
	m.rttWindow.observe(rtt.Seconds())
}

// window counts observations in fixed buckets over the last period to two
// periods (the current and the previous period, rotated), for quantiles
// of recent values; a Prometheus histogram counts since the start. Safe
// for concurrent use; meant for rare observations (a mutex per one).
type window struct {
	bounds    []float64
	period    time.Duration
	mu        sync.Mutex
	cur, prev []uint64
	since     time.Time
}

func newWindow(bounds []float64, period time.Duration) *window {
	return &window{bounds: bounds, period: period, cur: make([]uint64, len(bounds)+1), prev: make([]uint64, len(bounds)+1), since: time.Now()}
}

func (w *window) rotateLocked(now time.Time) {
	if now.Sub(w.since) < w.period {
		return
	}
	if now.Sub(w.since) >= 2*w.period {
		clear(w.prev)
	} else {
		copy(w.prev, w.cur)
	}
	clear(w.cur)
	w.since = now
}

func (w *window) observe(v float64) {
	i := sort.SearchFloat64s(w.bounds, v) // first bound >= v; len(bounds) = +Inf
	w.mu.Lock()
	w.rotateLocked(time.Now())
	w.cur[i]++
	w.mu.Unlock()
}

// snapshot is the window as a cumulative histogram; nil when empty.
func (w *window) snapshot() *dto.Histogram {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rotateLocked(time.Now())
	var total uint64
	h := &dto.Histogram{}
	for i, b := range w.bounds {
		total += w.cur[i] + w.prev[i]
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(total)})
	}
	total += w.cur[len(w.bounds)] + w.prev[len(w.bounds)]
	if total == 0 {
		return nil
	}
	h.SampleCount = proto.Uint64(total)
	return h
}
func (m *metrics) linkSilent(node string)      { m.silent.WithLabelValues(node).Inc() }
func (m *metrics) linkUp(node string, up bool) { m.links.WithLabelValues(node).Set(b2f(up)) }
func (m *metrics) forgetNode(node string)      { m.links.DeleteLabelValues(node) }
func (m *metrics) ringSwapped(r *ring.Ring) {
	m.ringSwaps.Inc()
	m.ringMembers.Set(float64(r.Len()))
	m.ringVersion.Set(float64(r.Version() & (1<<52 - 1)))
	m.ringInfo.Reset()
	m.ringInfo.WithLabelValues(fmt.Sprintf("%016x", r.Version())).Set(1)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
