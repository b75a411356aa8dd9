// Package fanout carries broadcasts to every gateway of a cluster: each
// gateway subscribes, and a message published on any gateway reaches every
// subscriber once (RabbitMQ fanout exchange, or in-process).
package fanout

import (
	"context"
	"encoding/json"
	"sync"
)

// Version is the version of the broadcast payload (docs/protocol.md).
const Version = 1

// Message is one broadcast.
type Message struct {
	V      int    `json:"v"`
	Origin string `json:"origin"` // gateway id that accepted it
	Text   string `json:"message"`
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
}

// Publish sends msg to every gateway (confirmed by the broker).
func (r *Rabbit) Publish(ctx context.Context, msg []byte) error {
	body, _ := json.Marshal(Message{V: Version, Origin: r.Origin, Text: string(msg)})
	return r.Broker.Publish(ctx, r.Exchange, body, true)
}

// Subscribe calls handle with each broadcast's message until ctx ends.
func (r *Rabbit) Subscribe(ctx context.Context, handle func([]byte)) {
	r.Broker.Subscribe(ctx, r.Exchange, func(body []byte) {
		var m Message
		if json.Unmarshal(body, &m) != nil || m.V != Version {
			return
		}
		handle([]byte(m.Text))
	}, nil)
}
