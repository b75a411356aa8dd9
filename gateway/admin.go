package gateway

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsgate/wsgate/internal/membership"
)

// adminServer is the gateway's HTTP API (JSON unless said otherwise).
type adminServer struct {
	srv  *http.Server
	addr string
}

// NodeStatus is one entry of GET /api/nodes.
type NodeStatus struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Clients int    `json:"clients"` // this gateway's clients on the node
	Online  int    `json:"online"`  // clients on the node over all gateways (presence)
	Healthy bool   `json:"healthy"` // the control link is up; for a plain upstream, this gateway's last connect to it succeeded (or none was tried)
	Kind    string `json:"kind"`    // "link" (a backend of the link protocol) or "plain" (a plain WebSocket upstream)
	OnRing  bool   `json:"onRing"`  // false while marked down locally
	Weight  int    `json:"weight"`
	// Share is the node's expected share of the keys: its weight over the
	// weights of the nodes on the ring (0 when off the ring).
	Share float64 `json:"share"`
}

func startAdmin(g *Gateway, addr string) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errors.New("gateway: --admin " + addr + ": " + err.Error())
	}
	a := &adminServer{addr: ln.Addr().String()}
	a.srv = &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *adminServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// dashboardHTML is the dashboard at GET / on the admin listener: nodes and
// their clients, push and broadcast forms, test clients opened by the
// browser, and (dev mode) adding and removing backends. Plain HTML and
// script, no build step; everything it does goes through the API below.
//
//go:embed dashboard.html
var dashboardHTML []byte

// Info is GET /api/info: what the dashboard shows in its header.
type Info struct {
	ID          string `json:"id"`
	Listen      string `json:"listen"` // the client WebSocket listener
	TLS         bool   `json:"tls"`    // the listener speaks wss://
	Clients     int    `json:"clients"`
	RingMembers int    `json:"ringMembers"`
	RingVersion string `json:"ringVersion"`         // hex; equal on gateways with equal rings
	NodeManager bool   `json:"nodeManager"`         // POST/DELETE /api/nodes work (a scaling driver is set)
	Scaler      string `json:"scaler,omitempty"`    // the scaling driver: dev, process, docker, kubernetes
	ScalerMax   int    `json:"scalerMax,omitempty"` // its maximum number of nodes
	// BalanceFactor is --balance-factor (bounded loads); 0: off.
	BalanceFactor float64 `json:"balanceFactor,omitempty"`
}

// Info describes this gateway.
func (g *Gateway) Info() Info {
	in := Info{ID: g.cfg.ID, Listen: g.Addr(), TLS: g.tls != nil, Clients: g.Clients(), NodeManager: g.cfg.Nodes != nil,
		BalanceFactor: g.cfg.BalanceFactor}
	if si, ok := g.cfg.Nodes.(ScalerInfo); ok {
		in.Scaler, in.ScalerMax = si.Name(), si.Max()
	}
	if r := g.ring.Load(); r != nil {
		in.RingMembers, in.RingVersion = r.Len(), fmt.Sprintf("%016x", r.Version())
	}
	return in
}

// HandlePprof serves the runtime's profiles under /debug/pprof/ on mux:
// the index and named profiles (heap, goroutine, allocs, ...), a CPU
// profile and an execution trace. A CPU profile or a trace costs the
// process CPU for as long as it is asked to run, so the caller puts this
// behind its admin listener's trust rules.
func HandlePprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// AdminHandler returns the admin API: the dashboard at /, /healthz,
// /readyz, /metrics, /count and /api/* (and /debug/pprof with Pprof),
// behind the trust rules of guardAdmin.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if g.engineDown.Load() {
			writeError(w, http.StatusServiceUnavailable, "unhealthy: the event loops stopped; restart the process")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if r := g.ring.Load(); r == nil || r.Len() == 0 || g.draining.Load() {
			writeError(w, http.StatusServiceUnavailable, "not ready: no backend on the ring, or draining")
			return
		}
		if why := g.saturated(); why != "" {
			writeError(w, http.StatusServiceUnavailable, "not ready: "+why)
			return
		}
		deps := map[string]bool{}
		for name, up := range g.cfg.Health {
			deps[name] = up()
		}
		// A broker or Redis outage degrades (the last ring keeps routing),
		// so readiness reports it without failing.
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "dependencies": deps})
	})
	mux.HandleFunc("POST /api/broadcast", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Message string `json:"message"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if err := g.Broadcast(r.Context(), []byte(body.Message)); err != nil {
			writeError(w, http.StatusServiceUnavailable, "broadcast not published: "+err.Error())
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "published"})
	})
	mux.HandleFunc("GET /api/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		user := r.PathValue("id")
		locs, err := g.cfg.Presence.Where(r.Context(), user)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "presence unavailable: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"userId": user, "online": len(locs) > 0, "sessions": locs})
	})
	if g.cfg.Pprof {
		HandlePprof(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.Clients())
	})
	mux.HandleFunc("POST /api/send", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			UserID  string `json:"userId"`
			Message string `json:"message"`
		}
		if !readJSON(w, r, &body) {
			return
		}
		if body.UserID == "" {
			writeError(w, http.StatusBadRequest, "field userId is required")
			return
		}
		n, err := g.Push(r.Context(), body.UserID, []byte(body.Message))
		if err != nil {
			writeError(w, http.StatusBadGateway, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"delivered": n})
	})
	mux.HandleFunc("GET /api/ring", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			writeError(w, http.StatusBadRequest, "query parameter key is required")
			return
		}
		owner := ""
		if m := g.ownerNow(key); m != nil { // with bounded loads, where a new client of key would go now
			owner = m.ID
		}
		if owner == "" {
			writeError(w, http.StatusServiceUnavailable, "no backend on the ring")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"key": key, "owner": owner})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(dashboardHTML)
	})
	mux.HandleFunc("GET /api/console", g.serveConsole)
	mux.HandleFunc("GET /api/console/stream", g.serveStream)
	mux.HandleFunc("GET /api/info", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.Info())
	})
	mux.HandleFunc("GET /api/nodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.Nodes(r.Context()))
	})
	mux.HandleFunc("POST /api/nodes", func(w http.ResponseWriter, _ *http.Request) {
		if g.cfg.Nodes == nil {
			writeError(w, http.StatusMethodNotAllowed, "adding nodes needs a node manager (wsgate dev); start backends with wsgate backend")
			return
		}
		id, err := g.cfg.Nodes.AddNode()
		switch {
		case errors.Is(err, ErrNodeLimit):
			writeError(w, http.StatusConflict, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
	})
	mux.HandleFunc("DELETE /api/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Nodes == nil {
			writeError(w, http.StatusMethodNotAllowed, "removing nodes needs a node manager (wsgate dev); stop the backend process instead")
			return
		}
		id := r.PathValue("id")
		switch err := g.cfg.Nodes.RemoveNode(id); {
		case errors.Is(err, ErrUnknownNode):
			writeError(w, http.StatusNotFound, "unknown node "+id)
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "draining"})
		}
	})
	return g.guardAdmin(mux)
}

// Nodes lists the members with this gateway's and the cluster's client
// counts and the health of each control link.
func (g *Gateway) Nodes(ctx context.Context) []NodeStatus {
	online, _ := g.cfg.Presence.Online(ctx) // nil on an outage: counts read 0
	r := g.ring.Load()
	out := []NodeStatus{}
	total := 0
	for _, m := range r.Members() {
		total += max(1, m.Weight)
	}
	for _, n := range g.memberSet() {
		st := NodeStatus{ID: n.ID, Addr: n.Addr, Clients: g.NodeClients(n.ID), Online: online[n.ID], OnRing: r.Member(n.ID) != nil, Weight: max(1, n.Weight)}
		if st.OnRing && total > 0 {
			st.Share = float64(st.Weight) / float64(total)
		}
		st.Kind = "link"
		if n.Plain() {
			st.Kind, st.Healthy = "plain", g.plainHealthy(n.ID)
		} else if c := g.control(n.ID); c != nil {
			st.Healthy = c.healthy.Load()
		}
		out = append(out, st)
	}
	return out
}

// Push delivers data to every session of key: through the key's ring
// owner and every other node presence knows a session of key on, and
// returns how many sessions it reached.
//
// A push that reaches no session while a node says a session of the key
// is between nodes (a migration: wire.FlagMoving) is tried again, against
// the ring and presence of the moment, until it reaches one or ctx (at
// most 5 s) ends: a push sent during a move is not lost. (It may arrive
// twice when the old node delivers just before the handover and the new
// one just after: at least once, docs/protocol.md 4.10.)
func (g *Gateway) Push(ctx context.Context, key string, data []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	wait := time.Millisecond
	for {
		n, moving, err := g.pushOnce(ctx, key, data)
		if n > 0 || !moving || err != nil && ctx.Err() != nil {
			return n, err
		}
		select {
		case <-ctx.Done():
			return 0, errors.New("gateway: the user's session was moving between nodes and did not land in time")
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// pushOnce is one round of Push. moving: a node answered that a session
// of key is between nodes.
func (g *Gateway) pushOnce(ctx context.Context, key string, data []byte) (total int, moving bool, _ error) {
	nodes := map[string]bool{}
	if m := g.ring.Load().LookupString(key); m != nil {
		nodes[m.ID] = true
	}
	// Presence adds the nodes of the key's sessions elsewhere (placed by an
	// older ring); while it is down (it answers at once), the ring owner only.
	if locs, err := g.cfg.Presence.Where(ctx, key); err == nil {
		for _, l := range locs {
			nodes[l.Node] = true
		}
	}
	if len(nodes) == 0 {
		return 0, false, errors.New("gateway: no backend on the ring")
	}
	var errs []error
	for id := range nodes {
		c := g.control(id)
		if c == nil {
			if m := g.ring.Load().Member(id); m != nil && membership.IsPlainAddr(m.Addr) {
				total += g.pushPlain(ctx, key, id, data)
				continue
			}
			// Presence names a node that left. With migration, if this
			// gateway still has clients on it they are being moved off it
			// (it drains): try again once they have landed.
			moving = moving || g.cfg.Rebalance == RebalanceMigrate && g.NodeClients(id) > 0
			continue
		}
		r, err := c.push(ctx, key, data)
		total += int(r.n)
		moving = moving || r.moving
		if errors.Is(err, errNotConnected) && g.cfg.Rebalance == RebalanceMigrate {
			moving = true // a node that just joined, its control link not up yet: sessions may be landing on it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", id, err))
		}
	}
	if total == 0 && len(errs) > 0 {
		return 0, moving, errors.Join(errs...)
	}
	return total, moving, nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
