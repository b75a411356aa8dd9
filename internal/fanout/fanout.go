// Package fanout carries broadcasts to every gateway of a cluster: each
// gateway subscribes, and a message published on any gateway reaches every
// subscriber once (RabbitMQ fanout exchange, or in-process).
package fanout

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/internal/seal"
)

// Version is the version of the broadcast payload (docs/protocol.md).
const Version = 1

// Message is one broadcast.
type Message struct {
	V      int    `json:"v"`
	Origin string `json:"origin"` // gateway id that accepted it
	Text   string `json:"message"`
	// With a cluster secret (Rabbit.Secret): the sender's time (unix ms),
	// its sequence and the HMAC over them (docs/protocol.md 9.2).
	At  int64  `json:"at,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	MAC string `json:"mac,omitempty"`
}

// Window is how far a signed broadcast's time may be from the receiver's.
const Window = 30 * time.Second

func (m *Message) mac(secret []byte) string {
	return seal.MAC(secret, "wsgate-broadcast-v1", []string{m.Origin, m.Text}, uint64(m.At), m.Seq)
}

// Memory is an in-process fanout. Safe for concurrent use.
type Memory struct {
	mu   sync.Mutex
	subs map[*func([]byte)]struct{}
}

// NewMemory returns an empty in-process fanout.
func NewMemory() *Memory { return &Memory{subs: map[*func([]byte)]struct{}{}} }

// Publish calls every subscriber with msg, synchronously.
func (m *Memory) Publish(_ context.Context, msg []byte) error {
	m.mu.Lock()
	subs := make([]func([]byte), 0, len(m.subs))
	for f := range m.subs {
		subs = append(subs, *f)
	}
	m.mu.Unlock()
	for _, f := range subs {
		f(msg)
	}
	return nil
}

// Subscribe calls handle for every message until ctx ends.
func (m *Memory) Subscribe(ctx context.Context, handle func([]byte)) {
	m.mu.Lock()
	m.subs[&handle] = struct{}{}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	delete(m.subs, &handle)
	m.mu.Unlock()
}

// Broker is the part of a RabbitMQ client a Rabbit fanout needs.
type Broker interface {
	Publish(ctx context.Context, exchange string, body []byte, confirm bool) error
	Subscribe(ctx context.Context, exchange string, handle func([]byte), ready func())
}

// Rabbit is a fanout over a RabbitMQ fanout exchange.
type Rabbit struct {
	Broker   Broker
	Exchange string // e.g. "wsgate.broadcast"
	Origin   string // this gateway's id
	// Secret, when set (the cluster secret), signs every broadcast and
	// drops, counting by reason, those that are unsigned, forged, stale or
	// replayed: publishing on the exchange is then not enough to message
	// every client.
	Secret []byte

	once  sync.Once
	seq   atomic.Uint64
	guard *seal.Guard // sequences by origin; drops by reason
}

func (r *Rabbit) init() {
	r.once.Do(func() {
		r.seq.Store(seal.FirstSeq())
		r.guard = seal.NewGuard(Window)
	})
}

// Publish sends msg to every gateway (confirmed by the broker).
func (r *Rabbit) Publish(ctx context.Context, msg []byte) error {
	r.init()
	m := Message{V: Version, Origin: r.Origin, Text: string(msg)}
	if len(r.Secret) > 0 {
		m.At, m.Seq = time.Now().UnixMilli(), r.seq.Add(1)
		m.MAC = m.mac(r.Secret)
	}
	body, _ := json.Marshal(m)
	return r.Broker.Publish(ctx, r.Exchange, body, true)
}

// Subscribe calls handle with each broadcast's message until ctx ends.
func (r *Rabbit) Subscribe(ctx context.Context, handle func([]byte)) {
	r.init()
	r.Broker.Subscribe(ctx, r.Exchange, func(body []byte) {
		var m Message
		if json.Unmarshal(body, &m) != nil || m.V != Version {
			r.guard.Drop("invalid")
			return
		}
		if len(r.Secret) > 0 {
			if !r.check(&m) {
				return
			}
		}
		handle([]byte(m.Text))
	}, nil)
}

// check accepts a signed broadcast, or counts why it is refused.
func (r *Rabbit) check(m *Message) bool {
	why := ""
	switch {
	case m.MAC == "":
		why = "unsigned"
	case !seal.Equal(m.MAC, m.mac(r.Secret)):
		why = "forged"
	case r.guard.Off(m.At, 0) != 0:
		why = "stale"
	default:
		return r.guard.Next(m.Origin, m.Seq, "replayed")
	}
	r.guard.Drop(why)
	return false
}

// Dropped returns the broadcasts dropped, by reason ("unsigned", "forged",
// "stale", "replayed", "invalid").
func (r *Rabbit) Dropped() map[string]uint64 {
	r.init()
	return r.guard.Dropped()
}
