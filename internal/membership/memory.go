package membership

import (
	"context"
	"sync"
)

// Memory is an in-process bus and registry: backends Publish, gateways Watch.
// It is what `wsgate dev` runs on. Safe for concurrent use.
//
// Watchers receive sets, not events, and a slow watcher skips intermediate
// sets and gets the latest one: nothing is queued without bound and nothing
// that matters is lost, because a set supersedes the ones before it.
type Memory struct {
	mu       sync.Mutex
	tracker  *Tracker
	watchers map[chan struct{}]struct{}
}

// NewMemory returns an empty bus.
func NewMemory() *Memory {
	return &Memory{tracker: NewTracker(), watchers: make(map[chan struct{}]struct{})}
}

// Publish applies ev and wakes every watcher if the set changed.
func (m *Memory) Publish(_ context.Context, ev Event) error {
	if err := ev.Node.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tracker.Apply(ev) {
		for w := range m.watchers {
			select {
			case w <- struct{}{}:
			default: // already woken; it will read the latest set
			}
		}
	}
	return nil
}

// Members returns the current set.
func (m *Memory) Members() []Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tracker.Set()
}

// Watch implements Source.
func (m *Memory) Watch(ctx context.Context) (<-chan []Node, error) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{} // deliver the current set first
	m.mu.Lock()
	m.watchers[wake] = struct{}{}
	m.mu.Unlock()
	out := make(chan []Node)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.watchers, wake)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			select {
			case out <- m.Members():
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
