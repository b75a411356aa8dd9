package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/gateway"
)

// serveBackendAdmin serves /healthz and /metrics (namespace wsgate_backend)
// for a backend node, and /debug/pprof with withPprof (the caller allows
// that on a loopback addr only: this listener has no authentication); addr
// "-" disables it. It returns a stop function.
func serveBackendAdmin(addr string, node *backend.Node, d *deps, log *slog.Logger, withPprof bool) (func(), error) {
	if addr == "-" {
		return func() {}, nil
	}
	const ns = "wsgate_backend"
	reg := prometheus.NewRegistry()
	counter := func(name, help string, v func(backend.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help},
			func() float64 { return float64(v(node.Stats())) })
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "sessions",
			Help: "Client sessions on this node, over all gateway links."}, func() float64 { return float64(node.SessionCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "links",
			Help: "Gateway links to this node."}, func() float64 { return float64(node.Stats().Links) }),
		counter("messages_in_total", "Client messages received (whole, reassembled).", func(s backend.Stats) uint64 { return s.MessagesIn }),
		counter("bytes_in_total", "Payload bytes of client messages received.", func(s backend.Stats) uint64 { return s.BytesIn }),
		counter("messages_out_total", "Messages sent to clients (per session reached).", func(s backend.Stats) uint64 { return s.MessagesOut }),
		counter("bytes_out_total", "Payload bytes sent to clients (per session reached).", func(s backend.Stats) uint64 { return s.BytesOut }),
		counter("link_silence_drops_total", "Gateway links dropped because nothing was heard on them for 3 keepalive intervals.",
			func(s backend.Stats) uint64 { return s.LinksSilent }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for reason := range (backend.LinksRejected{}).ByReason() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "links_rejected_total",
			Help:        "Connections to the link port closed before they became links, by reason (docs/operations.md, Limits).",
			ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(node.Stats().LinksRejected.ByReason()[reason]) }))
	}
	if d != nil {
		for name, up := range d.health() {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "dependency_up",
				Help: "1 when the dependency (redis, rabbitmq) is reachable.", ConstLabels: prometheus.Labels{"dependency": name}},
				func() float64 {
					if up() {
						return 1
					}
					return 0
				}))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"status\":\"ok\",\"id\":%q,\"sessions\":%d}\n", node.ID(), node.SessionCount())
	})
	if withPprof {
		// The listener has no authentication: loopback only (checked
		// below, after the name is resolved) and a loopback Host.
		pp := http.NewServeMux()
		gateway.HandlePprof(pp)
		mux.Handle("/debug/pprof/", gateway.LoopbackHostOnly(pp))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend: --admin %s: %w", addr, err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); withPprof && (!ok || !a.IP.IsLoopback()) {
		_ = ln.Close()
		return nil, usageError{fmt.Errorf("--pprof with --admin %s: it listens on %s, not loopback", addr, ln.Addr())}
	}
	// WriteTimeout also bounds a CPU profile or a trace (?seconds=).
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	log.Info("backend admin listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
