// Package cluster runs a whole wsgate cluster in one process: a gateway and
// backends joined by real loopback TCP links, with in-process membership.
// The backends come from a scaling driver (internal/scaler): demo backends
// in this process by default, or `wsgate backend` child processes. It is
// `wsgate dev`, and the harness of the end-to-end tests.
package devcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/fanout"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/scaler"
)

// Config configures a dev cluster.
type Config struct {
	Backends int            // backends to start; default 3
	Gateway  gateway.Config // Members and Nodes are filled in by Start
	// Backend is the template of every demo backend's config (dev driver):
	// ID, Listen and Logger are filled in; PingInterval defaults to
	// Gateway.KeepAlive so both ends of a link keep the same schedule.
	Backend backend.Config
	Logger  *slog.Logger // default slog.Default()
	// ClusterSecret authenticates the links (gateway and backends); default
	// a random one made by Start (hex: children of the process driver get
	// it in their environment).
	ClusterSecret []byte
	// DrainTimeout bounds a removed backend's wait for its clients to move;
	// default 30s.
	DrainTimeout time.Duration
	// Scaler, when set, makes the cluster's driver from its bus, its
	// secret and a Joined check (true once the gateway routes to the
	// node, or before the gateway runs); default: the dev driver
	// (scaler.Dev) with Backend, DrainTimeout and MaxBackends.
	Scaler func(bus membership.Publisher, secret []byte, joined func(id string) bool) (scaler.Scaler, error)
	// MaxBackends is the dev driver's maximum; default scaler.DefaultDevMax.
	MaxBackends int
}

// Cluster is a running dev cluster; its Scaler is the gateway's node manager.
type Cluster struct {
	cfg    Config
	bus    *membership.Memory
	gw     atomic.Pointer[gateway.Gateway]
	scaler scaler.Scaler
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
	if len(cfg.ClusterSecret) == 0 {
		// Text, so that a driver can hand it to child processes.
		var b [32]byte
		_, _ = rand.Read(b[:])
		cfg.ClusterSecret = []byte(hex.EncodeToString(b[:]))
	}
	c := &Cluster{cfg: cfg, bus: membership.NewMemory()}
	joined := func(id string) bool {
		g := c.gw.Load()
		return g == nil || scaler.OnRing(g, id)
	}
	if cfg.Scaler != nil {
		s, err := cfg.Scaler(c.bus, cfg.ClusterSecret, joined)
		if err != nil {
			return nil, err
		}
		c.scaler = s
	} else {
		bc := cfg.Backend
		if bc.PingInterval == 0 {
			bc.PingInterval = cfg.Gateway.KeepAlive
		}
		c.scaler = scaler.NewDev(scaler.DevConfig{Bus: c.bus, Backend: bc, ClusterSecret: cfg.ClusterSecret,
			DrainTimeout: cfg.DrainTimeout, Max: cfg.MaxBackends, Logger: cfg.Logger})
	}
	for range cfg.Backends {
		if _, err := c.scaler.AddNode(); err != nil {
			_ = c.scaler.Close(context.Background())
			return nil, err
		}
	}
	gc := cfg.Gateway
	gc.Members, gc.Nodes, gc.ClusterSecret = c.bus, c.scaler, cfg.ClusterSecret
	gc.Fanout = fanout.NewMemory() // presence: the gateway's own tables
	if gc.Logger == nil {
		gc.Logger = cfg.Logger
	}
	gw, err := gateway.New(gc)
	if err == nil {
		err = gw.Start(context.Background())
	}
	if err != nil {
		_ = c.scaler.Close(context.Background())
		return nil, err
	}
	c.gw.Store(gw)
	return c, nil
}

// Gateway is the cluster's gateway.
func (c *Cluster) Gateway() *gateway.Gateway { return c.gw.Load() }

// Bus is the cluster's membership bus.
func (c *Cluster) Bus() *membership.Memory { return c.bus }

// Scaler is the cluster's scaling driver (the gateway's node manager).
func (c *Cluster) Scaler() scaler.Scaler { return c.scaler }

// Node returns the running in-process backend with id, or nil (also for
// every node of a driver other than dev).
func (c *Cluster) Node(id string) *backend.Node {
	if d, ok := c.scaler.(*scaler.Dev); ok {
		return d.Node(id)
	}
	return nil
}

// AddNode starts a backend through the cluster's driver.
func (c *Cluster) AddNode() (string, error) { return c.scaler.AddNode() }

// RemoveNode drains and stops a backend through the cluster's driver.
func (c *Cluster) RemoveNode(id string) error { return c.scaler.RemoveNode(id) }

// Shutdown closes every client with 1001, then stops the backends.
func (c *Cluster) Shutdown(ctx context.Context) error {
	var errs []error
	if g := c.gw.Load(); g != nil {
		errs = append(errs, g.Shutdown(ctx))
	}
	errs = append(errs, c.scaler.Close(ctx))
	return errors.Join(errs...)
}
