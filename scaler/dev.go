package scaler

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
)

// DevConfig configures the dev driver.
type DevConfig struct {
	// Bus is where nodes are announced (join, leave): the dev cluster's
	// in-process membership bus. Required.
	Bus membership.Publisher
	// Backend is the template of every demo backend's config; ID, Listen,
	// Logger and ClusterSecret are filled in.
	Backend backend.Config
	// ClusterSecret authenticates the links.
	ClusterSecret []byte
	// DrainTimeout bounds a removed backend's wait for its clients to
	// move; default 30s.
	DrainTimeout time.Duration
	// Max is the most nodes at once; default DefaultDevMax.
	Max    int
	Logger *slog.Logger // default slog.Default()
}

// Dev runs demo backends inside this process on random loopback ports,
// announced on an in-process bus: wsgate dev's driver.
type Dev struct {
	cfg DevConfig

	mu     sync.Mutex
	nodes  map[string]*backend.Node
	seq    int
	drains sync.WaitGroup
}

// NewDev returns a dev driver with no nodes yet.
func NewDev(cfg DevConfig) *Dev {
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultDevMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dev{cfg: cfg, nodes: make(map[string]*backend.Node)}
}

// Name is "dev".
func (d *Dev) Name() string { return NameDev }

// Max is the most nodes at once.
func (d *Dev) Max() int { return d.cfg.Max }

// Node returns the running backend with id, or nil.
func (d *Dev) Node(id string) *backend.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[id]
}

// Nodes lists the running backends' ids, sorted.
func (d *Dev) Nodes(context.Context) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.nodes))
	for id := range d.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// AddNode starts a demo backend (node-1, node-2, ...) on a random loopback
// port and announces it.
func (d *Dev) AddNode() (string, error) {
	d.mu.Lock()
	if len(d.nodes) >= d.cfg.Max {
		n := len(d.nodes)
		d.mu.Unlock()
		return "", maxError(NameDev, n, d.cfg.Max)
	}
	d.seq++
	id := fmt.Sprintf("node-%d", d.seq)
	d.mu.Unlock()
	bc := d.cfg.Backend
	bc.ID, bc.Listen, bc.Logger, bc.ClusterSecret = id, "127.0.0.1:0", d.cfg.Logger, d.cfg.ClusterSecret
	n, err := demo.NewNode(bc)
	if err != nil {
		return "", err
	}
	if err := n.Start(); err != nil {
		return "", fmt.Errorf("scaler: start %s: %w", id, err)
	}
	d.mu.Lock()
	d.nodes[id] = n
	d.mu.Unlock()
	if err := d.cfg.Bus.Publish(context.Background(), membership.Event{Type: membership.Join,
		Node: membership.Node{ID: id, Addr: n.Addr()}}); err != nil {
		d.mu.Lock()
		delete(d.nodes, id)
		d.mu.Unlock()
		_ = n.Close()
		return "", err
	}
	d.cfg.Logger.Info("backend joined", "node", id, "addr", n.Addr())
	return id, nil
}

// RemoveNode announces that id leaves and drains it in the background: the
// gateway moves its clients, then the backend stops.
func (d *Dev) RemoveNode(id string) error {
	d.mu.Lock()
	n := d.nodes[id]
	delete(d.nodes, id)
	d.mu.Unlock()
	if n == nil {
		return gateway.ErrUnknownNode
	}
	if err := d.cfg.Bus.Publish(context.Background(), membership.Event{Type: membership.Leave,
		Node: membership.Node{ID: id, Addr: n.Addr()}}); err != nil {
		return err
	}
	d.drains.Add(1)
	go func() {
		defer d.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			d.cfg.Logger.Warn("backend drain incomplete", "node", id, "err", err)
		}
		d.cfg.Logger.Info("backend left", "node", id)
	}()
	return nil
}

// Close stops every backend at once and waits for the drains under way.
func (d *Dev) Close(context.Context) error {
	d.mu.Lock()
	for id, n := range d.nodes {
		_ = n.Close()
		delete(d.nodes, id)
	}
	d.mu.Unlock()
	d.drains.Wait()
	return nil
}
