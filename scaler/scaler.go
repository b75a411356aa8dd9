// Package scaler starts and stops backend nodes on request: the drivers
// behind the admin API's POST /api/nodes and DELETE /api/nodes/{id}
// (docs/operations.md, "Scaling drivers"), chosen with --scaler.
//
//   - dev: demo backends inside this process (wsgate dev)
//   - process: `wsgate backend` child processes on loopback ports
//   - docker: containers of a backend image, through the Docker Engine API
//   - kubernetes: the replicas of a Deployment, through its scale subresource
//
// Every driver enforces a maximum and refuses beyond it with ErrMax.
package scaler

import (
	"context"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/gateway"
)

// Driver names, as given to --scaler.
const (
	NameDev        = "dev"
	NameProcess    = "process"
	NameDocker     = "docker"
	NameKubernetes = "kubernetes"
)

// Defaults shared by the drivers.
const (
	// DefaultMax is the most nodes a process, docker or kubernetes driver
	// runs at once (--scaler-max).
	DefaultMax = 16
	// DefaultDevMax is the dev driver's maximum: wsgate dev's --backends
	// limit.
	DefaultDevMax = 64
	// DefaultJoinTimeout bounds AddNode's wait for a new node to join.
	DefaultJoinTimeout = 30 * time.Second
	// DefaultStopTimeout bounds RemoveNode's wait for a node to drain and
	// exit; then it is killed.
	DefaultStopTimeout = 40 * time.Second
)

// Scaler is a scaling driver. Its methods are safe for concurrent use.
type Scaler interface {
	// AddNode starts a backend and returns its id once it has joined
	// (kubernetes: once the new replica count is accepted; see Kubernetes).
	// At the maximum it fails with ErrMax.
	AddNode() (string, error)
	// RemoveNode stops the backend id gracefully (it leaves, its clients
	// move, it exits); gateway.ErrUnknownNode if the driver did not start
	// it.
	RemoveNode(id string) error
	// Name is the driver's name as given to --scaler.
	Name() string
	// Nodes lists the ids of the nodes the driver started that still run.
	Nodes(ctx context.Context) ([]string, error)
	// Max is the most nodes the driver runs at once.
	Max() int
	// Close stops what must not outlive the driver (dev and process: every
	// node it started; docker and kubernetes leave theirs running), within
	// ctx.
	Close(ctx context.Context) error
}

// A Scaler is what gateway.Config.Nodes wants.
var _ gateway.NodeManager = Scaler(nil)

// ErrMax is returned (wrapped) by AddNode when the driver runs its maximum.
// It is gateway.ErrNodeLimit, which the admin API answers with 409.
var ErrMax = gateway.ErrNodeLimit

// maxError is ErrMax with the numbers an operator needs.
func maxError(name string, running, limit int) error {
	return fmt.Errorf("%w: the %s driver runs %d of at most %d nodes (--scaler-max)", ErrMax, name, running, limit)
}

// pollUntil calls done every `every` until it reports true, fails, or
// timeout passes; what is waited for is named in the timeout error.
func pollUntil(ctx context.Context, timeout, every time.Duration, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scaler: %s: not within %v", what, timeout)
		case <-t.C:
		}
	}
}

// OnRing reports whether node id is on g's ring and g's control link to it
// is up: the node has joined as far as g's clients are concerned. It is
// the usual Joined check of the process and docker drivers.
func OnRing(g *gateway.Gateway, id string) bool {
	return g != nil && g.Ring().Member(id) != nil && g.NodeAlive(id)
}

// defaultLimits fills the zero limits a driver config shares: the most
// nodes (DefaultMax), how long a new node may take to join
// (DefaultJoinTimeout), its drain on removal (30 s) and how long a stop may
// take before the node is killed (the drain plus 10 s).
func defaultLimits(max *int, join, drain, stop *time.Duration) {
	if *max == 0 {
		*max = DefaultMax
	}
	if *join == 0 {
		*join = DefaultJoinTimeout
	}
	if *drain == 0 {
		*drain = 30 * time.Second
	}
	if *stop == 0 {
		*stop = *drain + 10*time.Second
	}
}
