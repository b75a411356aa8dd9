package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// EventVersion is the version of the JSON event payload (docs/protocol.md).
const EventVersion = 1

// Registry is the authoritative list of live nodes with a TTL (Redis).
type Registry interface {
	Nodes(ctx context.Context) ([]Node, error)
	// Departed lists the nodes that deregistered lately (graceful leave).
	Departed(ctx context.Context) (map[string]bool, error)
	RegisterNode(ctx context.Context, n Node, ttl time.Duration) error
	DeregisterNode(ctx context.Context, id string) error
}

// leaveMemory is how long a leave event keeps its node off the ring
// against a registry that still lists it (its deregistration failed, or
// the entry is stale until its TTL passes). A join or heartbeat event of
// the node (a new life) ends it sooner.
const leaveMemory = time.Minute

// Broker carries events between processes (RabbitMQ): Publish to a fanout
// exchange, optionally waiting for the broker's confirm; Subscribe receives
// everything published after it, calling ready after each (re)subscription.
type Broker interface {
	Publish(ctx context.Context, exchange string, body []byte, confirm bool) error
	Subscribe(ctx context.Context, exchange string, handle func([]byte), ready func())
}

// payload is an event on the wire.
type payload struct {
	V    int       `json:"v"`
	Type EventType `json:"type"`
	Node Node      `json:"node"`
	At   int64     `json:"at"`            // unix ms at the sender
	Seq  uint64    `json:"seq,omitempty"` // signed events: the sender's sequence (sign.go)
	MAC  string    `json:"mac,omitempty"` // signed events: base64 HMAC-SHA256 (sign.go)
}

// event checks a decoded payload's version, type and node.
func (p *payload) event() (Event, error) {
	if p.V != EventVersion {
		return Event{}, fmt.Errorf("membership: event version %d, want %d", p.V, EventVersion)
	}
	switch p.Type {
	case Join, Heartbeat, Leave:
	default:
		return Event{}, fmt.Errorf("membership: unknown event type %q", p.Type)
	}
	if err := p.Node.Validate(); err != nil {
		return Event{}, err
	}
	return Event{Type: p.Type, Node: p.Node}, nil
}

// EncodeEvent returns ev as its versioned JSON payload.
func EncodeEvent(ev Event) []byte {
	b, _ := json.Marshal(payload{V: EventVersion, Type: ev.Type, Node: ev.Node, At: time.Now().UnixMilli()})
	return b
}

// DecodeEvent parses a payload; unknown versions and invalid nodes are errors.
func DecodeEvent(b []byte) (Event, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return Event{}, fmt.Errorf("membership: bad event: %w", err)
	}
	return p.event()
}

// Cluster is the production Source: the Redis registry gives the first set
// and is reconciled against every Reconcile (and after every broker
// reconnect), so a missed event heals itself and a crashed node drops out
// once its TTL passes; broker events apply changes in between at once.
//
// A registry read can be wrong both ways. After a Redis restart or an
// outage longer than the TTL, live nodes are missing until their next
// heartbeat: so a reconcile only drops a node the registry lacks when Alive
// (the gateway's own link to it) says it is gone too, or when it left
// (a leave event, or a tombstone in the registry: a draining node's links
// are up). And a node that left may still be listed (its deregistration
// failed): a leave event keeps it off for leaveMemory.
type Cluster struct {
	Registry  Registry
	Broker    Broker
	Exchange  string
	Reconcile time.Duration        // default 2s
	Alive     func(id string) bool // optional: a direct liveness check of a node
	// Verify, when set, checks signed events (NewVerifier with the cluster
	// secret): unsigned, forged, stale and replayed events are dropped.
	Verify *Verifier
	Log    *slog.Logger
}

// Watch implements Source. The first registry read must succeed.
func (c *Cluster) Watch(ctx context.Context) (<-chan []Node, error) {
	if c.Reconcile <= 0 {
		c.Reconcile = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	initial, err := c.Registry.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("membership: read registry: %w", err)
	}
	events := make(chan Event, 256)
	resync := make(chan struct{}, 1)
	poke := func() {
		select {
		case resync <- struct{}{}:
		default:
		}
	}
	decode := DecodeEvent
	if c.Verify != nil {
		decode = c.Verify.Decode
	}
	go c.Broker.Subscribe(ctx, c.Exchange, func(b []byte) {
		ev, err := decode(b)
		if err != nil {
			c.Log.Warn("ignoring membership event", "err", err)
			return
		}
		select {
		case events <- ev:
		case <-ctx.Done():
		}
	}, poke)

	out := make(chan []Node, 1)
	out <- initial
	go func() {
		defer close(out)
		tracker := NewTracker(initial...)
		left := map[string]time.Time{} // when a node announced its leave
		tick := time.NewTicker(c.Reconcile)
		defer tick.Stop()
		for {
			changed := false
			select {
			case <-ctx.Done():
				return
			case ev := <-events:
				changed = tracker.Apply(ev)
				if ev.Type == Leave {
					left[ev.Node.ID] = time.Now()
				} else {
					delete(left, ev.Node.ID)
				}
			case <-tick.C:
				changed = c.reconcile(ctx, &tracker, left)
			case <-resync:
				changed = c.reconcile(ctx, &tracker, left)
			}
			if changed {
				sendLatest(ctx, out, tracker.Set())
			}
		}
	}()
	return out, nil
}

// reconcile replaces the tracker's set with the registry's, less nodes
// that left, plus nodes the registry lacks but Alive vouches for; on a
// registry outage it keeps the current set.
func (c *Cluster) reconcile(ctx context.Context, t **Tracker, left map[string]time.Time) bool {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nodes, err := c.Registry.Nodes(rctx)
	var departed map[string]bool
	if err == nil && c.Verify == nil {
		// With a cluster secret the unsigned tombstones are not trusted:
		// one forged tombstone and a removed registry entry would evict a
		// live node. Only a signed leave event (left) overrides Alive then;
		// a node whose leave was missed goes when its links close.
		departed, err = c.Registry.Departed(rctx)
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			c.Log.Warn("registry unreachable; keeping the last member set", "err", err)
		}
		return false
	}
	for id, at := range left {
		if time.Since(at) > leaveMemory {
			delete(left, id)
		}
	}
	fresh := NewTracker()
	for _, n := range nodes {
		if _, gone := left[n.ID]; !gone {
			fresh.nodes[n.ID] = n
		}
	}
	if c.Alive != nil {
		for _, n := range (*t).Set() {
			_, listed := fresh.nodes[n.ID]
			_, gone := left[n.ID]
			if !listed && !gone && !departed[n.ID] && c.Alive(n.ID) {
				fresh.nodes[n.ID] = n
			}
		}
	}
	if equalSets((*t).Set(), fresh.Set()) {
		return false
	}
	*t = fresh
	return true
}

func equalSets(a, b []Node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sendLatest hands set to a consumer that may be busy: an unread older set
// is replaced, since a set supersedes the ones before it.
func sendLatest(ctx context.Context, out chan []Node, set []Node) {
	for {
		select {
		case out <- set:
			return
		case <-ctx.Done():
			return
		default:
		}
		select {
		case <-out: // drop the stale set
		default:
		}
	}
}

// Announcer makes a backend a member: registered with a TTL, join and
// leave published with confirms, heartbeats (registry refresh + event)
// every Interval.
type Announcer struct {
	Registry Registry
	Broker   Broker
	Exchange string
	Node     Node
	Interval time.Duration // default 2s
	TTL      time.Duration // default 3x Interval
	// Sign, when set, signs every event (NewSigner with the cluster secret).
	Sign *Signer
	Log  *slog.Logger

	stop chan struct{}
	done chan struct{}
}

// Join registers the node, publishes join (confirmed) and starts the
// heartbeat. Both must succeed at start.
func (a *Announcer) Join(ctx context.Context) error {
	if a.Interval <= 0 {
		a.Interval = 2 * time.Second
	}
	if a.TTL <= 0 {
		a.TTL = 3 * a.Interval
	}
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if err := a.Registry.RegisterNode(ctx, a.Node, a.TTL); err != nil {
		return fmt.Errorf("membership: register %s: %w", a.Node.ID, err)
	}
	if err := a.Broker.Publish(ctx, a.Exchange, a.encode(Join), true); err != nil {
		return fmt.Errorf("membership: publish join of %s: %w", a.Node.ID, err)
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.beat()
	return nil
}

func (a *Announcer) beat() {
	defer close(a.done)
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.Interval)
		if err := a.Registry.RegisterNode(ctx, a.Node, a.TTL); err != nil {
			a.Log.Warn("heartbeat: registry refresh failed", "err", err)
		}
		if err := a.Broker.Publish(ctx, a.Exchange, a.encode(Heartbeat), false); err != nil {
			a.Log.Debug("heartbeat: publish failed", "err", err)
		}
		cancel()
	}
}

// encode is the payload of the node's event of type t, signed with Sign.
func (a *Announcer) encode(t EventType) []byte {
	ev := Event{Type: t, Node: a.Node}
	if a.Sign != nil {
		return a.Sign.Encode(ev)
	}
	return EncodeEvent(ev)
}

// Leave stops the heartbeat, deregisters and publishes leave (confirmed).
// Gateways then move the node's clients away.
func (a *Announcer) Leave(ctx context.Context) error {
	if a.stop != nil {
		close(a.stop)
		select {
		case <-a.done:
		case <-ctx.Done(): // a heartbeat stuck on the network: leave anyway
		}
		a.stop = nil
	}
	err := a.Registry.DeregisterNode(ctx, a.Node.ID)
	if perr := a.Broker.Publish(ctx, a.Exchange, a.encode(Leave), true); perr != nil {
		err = errors.Join(err, perr)
	}
	return err
}
