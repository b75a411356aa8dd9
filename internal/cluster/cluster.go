// Package cluster runs a whole wsgate cluster in one process: a gateway and
// demo backends joined by real loopback TCP links, with in-process
// membership. It is `wsgate dev`, and the harness of the end-to-end tests.
package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/fanout"
	"github.com/wsgate/wsgate/internal/membership"
)

// Config configures a dev cluster.
type Config struct {
	Backends int            // demo backends to start; default 3
	Gateway  gateway.Config // Members and Nodes are filled in by Start
	// Backend is the template of every demo backend's config: ID, Listen
	// and Logger are filled in; PingInterval defaults to Gateway.KeepAlive
	// so both ends of a link keep the same schedule.
	Backend backend.Config
	Logger  *slog.Logger // default slog.Default()
	// ClusterSecret authenticates the links (gateway and backends); default
	// a random one made by Start (the whole cluster is this process).
	ClusterSecret []byte
	// DrainTimeout bounds a removed backend's wait for its clients to move;
	// default 30s.
	DrainTimeout time.Duration
}

// Cluster is a running dev cluster. It implements gateway.NodeManager.
type Cluster struct {
	cfg Config
	bus *membership.Memory
	gw  *gateway.Gateway
	log *slog.Logger

	mu     sync.Mutex
	nodes  map[string]*backend.Node
	seq    int
	drains sync.WaitGroup
}

// Start starts the backends, then the gateway, and returns once clients can
// connect to every backend.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Backends == 0 {
		cfg.Backends = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if len(cfg.ClusterSecret) == 0 {
		cfg.ClusterSecret = make([]byte, 32)
		_, _ = rand.Read(cfg.ClusterSecret)
	}
	c := &Cluster{cfg: cfg, bus: membership.NewMemory(), log: cfg.Logger, nodes: make(map[string]*backend.Node)}
	for range cfg.Backends {
		if _, err := c.AddNode(); err != nil {
			c.closeNodes()
			return nil, err
		}
	}
	gc := cfg.Gateway
	gc.Members, gc.Nodes, gc.ClusterSecret = c.bus, c, cfg.ClusterSecret
	gc.Fanout = fanout.NewMemory() // presence: the gateway's own tables
	if gc.Logger == nil {
		gc.Logger = cfg.Logger
	}
	gw, err := gateway.New(gc)
	if err != nil {
		c.closeNodes()
		return nil, err
	}
	if err := gw.Start(context.Background()); err != nil {
		c.closeNodes()
		return nil, err
	}
	c.gw = gw
	return c, nil
}

// Gateway is the cluster's gateway.
func (c *Cluster) Gateway() *gateway.Gateway { return c.gw }

// Bus is the cluster's membership bus.
func (c *Cluster) Bus() *membership.Memory { return c.bus }

// Node returns the running backend with id, or nil.
func (c *Cluster) Node(id string) *backend.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// AddNode starts a demo backend on a random loopback port and announces it.
func (c *Cluster) AddNode() (string, error) {
	c.mu.Lock()
	c.seq++
	id := fmt.Sprintf("node-%d", c.seq)
	c.mu.Unlock()
	bc := c.cfg.Backend
	bc.ID, bc.Listen, bc.Logger, bc.ClusterSecret = id, "127.0.0.1:0", c.log, c.cfg.ClusterSecret
	if bc.PingInterval == 0 {
		bc.PingInterval = c.cfg.Gateway.KeepAlive
	}
	n, err := demo.NewNode(bc)
	if err != nil {
		return "", err
	}
	if err := n.Start(); err != nil {
		return "", fmt.Errorf("cluster: start %s: %w", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	if err := c.bus.Publish(context.Background(), membership.Event{Type: membership.Join,
		Node: membership.Node{ID: id, Addr: n.Addr()}}); err != nil {
		_ = n.Close()
		return "", err
	}
	c.log.Info("backend joined", "node", id, "addr", n.Addr())
	return id, nil
}

// RemoveNode announces that id leaves and drains it in the background: the
// gateway moves its clients, then the backend stops.
func (c *Cluster) RemoveNode(id string) error {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return gateway.ErrUnknownNode
	}
	if err := c.bus.Publish(context.Background(), membership.Event{Type: membership.Leave,
		Node: membership.Node{ID: id, Addr: n.Addr()}}); err != nil {
		return err
	}
	c.drains.Add(1)
	go func() {
		defer c.drains.Done()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DrainTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			c.log.Warn("backend drain incomplete", "node", id, "err", err)
		}
		c.log.Info("backend left", "node", id)
	}()
	return nil
}

// Shutdown closes every client with 1001, then stops the backends.
func (c *Cluster) Shutdown(ctx context.Context) error {
	var errs []error
	if c.gw != nil {
		errs = append(errs, c.gw.Shutdown(ctx))
	}
	c.closeNodes()
	c.drains.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) closeNodes() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.nodes {
		_ = n.Close()
		delete(c.nodes, id)
	}
}
