// Package membership tells gateways which backend nodes exist.
//
// Backends announce themselves with events (join, heartbeat, leave) on a Bus;
// gateways turn the event stream into member sets with a Tracker and rebuild
// their ring from each set. A set, not an event, is what a gateway consumes:
// the ring is a pure function of the set, so the order in which events arrive
// never matters, and a Source can be anything that yields sets (a static list,
// an in-process bus, RabbitMQ plus a Redis registry).
package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// EventType is what happened to a node.
type EventType string

// Event types.
const (
	Join      EventType = "join"      // a node started and accepts links
	Heartbeat EventType = "heartbeat" // a node is still alive; also joins a node not yet known
	Leave     EventType = "leave"     // a node is shutting down gracefully
)

// Node is a backend as gateways see it.
type Node struct {
	ID string `json:"id"`
	// Addr is host:port of a backend's link listener, or the ws:// URL of
	// a plain WebSocket upstream (Plain), which the gateway connects each
	// client to on its own connection.
	Addr   string `json:"addr"`
	Weight int    `json:"weight,omitempty"` // share of keys; 0 means 1
}

// PlainScheme starts the address of a plain WebSocket upstream.
const PlainScheme = "ws://"

// Plain reports whether n is a plain WebSocket upstream (its Addr is a
// ws:// URL) rather than a backend speaking the link protocol.
func (n Node) Plain() bool { return IsPlainAddr(n.Addr) }

// IsPlainAddr reports whether addr is a plain upstream's ws:// URL.
func IsPlainAddr(addr string) bool { return strings.HasPrefix(addr, PlainScheme) }

// UpstreamURL parses a plain upstream's address: ws://host:port with an
// optional path, no query, fragment or user info.
func UpstreamURL(addr string) (*url.URL, error) {
	if strings.HasPrefix(addr, "wss://") {
		return nil, fmt.Errorf("upstream %q: wss:// upstreams are not supported (the gateway speaks plain ws:// to upstreams; put TLS at the edge with --tls-cert)", addr)
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		return nil, fmt.Errorf("upstream %q: %v", addr, err)
	case u.Scheme != "ws":
		return nil, fmt.Errorf("upstream %q: want a ws:// URL", addr)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("upstream %q: want ws://host:port[/path], without user info, query or fragment", addr)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 || u.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: want ws://host:port with a port 1..65535", addr)
	}
	return u, nil
}

// Event is one membership announcement.
type Event struct {
	Type EventType `json:"type"`
	Node Node      `json:"node"`
}

// Publisher announces events; backends hold one.
type Publisher interface {
	Publish(ctx context.Context, ev Event) error
}

// Source yields member sets to a gateway. Watch sends the current set first
// and then every changed set, until ctx ends; the channel is then closed.
// Each set is sorted by ID and owned by the receiver.
type Source interface {
	Watch(ctx context.Context) (<-chan []Node, error)
}

// Validate reports what is wrong with n, naming the field.
func (n Node) Validate() error {
	if n.ID == "" {
		return errors.New("membership: node id is empty")
	}
	if len(n.ID) > 128 || strings.ContainsAny(n.ID, " \t\r\n/") {
		return fmt.Errorf("membership: node id %q: at most 128 characters, no spaces or '/'", n.ID)
	}
	if n.Plain() || strings.HasPrefix(n.Addr, "wss://") {
		if _, err := UpstreamURL(n.Addr); err != nil {
			return fmt.Errorf("membership: node %s: %v", n.ID, err)
		}
	} else if _, port, err := net.SplitHostPort(n.Addr); err != nil || port == "" {
		return fmt.Errorf("membership: node %s: addr %q is not host:port", n.ID, n.Addr)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("membership: node %s: addr %q: port must be 1..65535", n.ID, n.Addr)
	}
	if n.Weight < 0 || n.Weight > 100 {
		return fmt.Errorf("membership: node %s: weight %d out of range 0..100", n.ID, n.Weight)
	}
	return nil
}

// ParseNode parses "id=host:port" or "id=host:port,weight" as given to
// `wsgate gateway --backend`, or "id=ws://host:port[/path][,weight]" as
// given to --upstream.
func ParseNode(s string) (Node, error) {
	id, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Node{}, fmt.Errorf("membership: backend %q: want id=host:port[,weight]", s)
	}
	n := Node{ID: id, Addr: rest}
	if addr, w, ok := strings.Cut(rest, ","); ok {
		weight, err := strconv.Atoi(w)
		if err != nil {
			return Node{}, fmt.Errorf("membership: backend %q: weight %q is not a number", s, w)
		}
		n.Addr, n.Weight = addr, weight
	}
	return n, n.Validate()
}

// Tracker folds events into a member set. It is not safe for concurrent use.
type Tracker struct {
	nodes map[string]Node
}

// NewTracker returns a tracker holding the given initial members.
func NewTracker(initial ...Node) *Tracker {
	t := &Tracker{nodes: make(map[string]Node, len(initial))}
	for _, n := range initial {
		t.nodes[n.ID] = n
	}
	return t
}

// Apply folds ev into the set and reports whether the set changed.
// A heartbeat of an unknown node adds it (a missed join heals itself);
// a join or heartbeat with a new address or weight replaces the entry.
func (t *Tracker) Apply(ev Event) bool {
	old, had := t.nodes[ev.Node.ID]
	switch ev.Type {
	case Join, Heartbeat:
		if had && old == ev.Node {
			return false
		}
		t.nodes[ev.Node.ID] = ev.Node
		return true
	case Leave:
		delete(t.nodes, ev.Node.ID)
		return had
	}
	return false
}

// Set returns the current members sorted by ID, as a new slice.
func (t *Tracker) Set() []Node {
	out := make([]Node, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}
