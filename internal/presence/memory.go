package presence

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Memory is an in-process presence store with the same behaviour as Redis,
// for `wsgate dev` and a gateway run with a static backend list. Safe for
// concurrent use.
type Memory struct {
	mu       sync.Mutex
	users    map[string]map[string]string // user -> "{gw}/{session}" -> node
	gateways map[string]time.Time         // gateway -> expiry
	counts   map[string]map[string]int    // gateway -> node -> clients
}

// NewMemory returns an empty store.
func NewMemory() *Memory {
	return &Memory{users: map[string]map[string]string{}, gateways: map[string]time.Time{}, counts: map[string]map[string]int{}}
}

// Apply implements the gateway's presence store.
func (m *Memory) Apply(_ context.Context, gw string, changes []Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		field := gw + "/" + c.Session
		if c.Add {
			if m.users[c.User] == nil {
				m.users[c.User] = map[string]string{}
			}
			m.users[c.User][field] = c.Node
		} else if u := m.users[c.User]; u != nil {
			delete(u, field)
			if len(u) == 0 {
				delete(m.users, c.User)
			}
		}
	}
	return nil
}

// Where returns every session of user on live gateways.
func (m *Memory) Where(_ context.Context, user string) ([]Location, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Location{}
	now := time.Now()
	for field, node := range m.users[user] {
		gw, sess, _ := strings.Cut(field, "/")
		if m.gateways[gw].After(now) {
			out = append(out, Location{Gateway: gw, Session: sess, Node: node})
		}
	}
	return out, nil
}

// GatewayAlive refreshes gw and its per-node counts; revived reports that
// gw was not listed (see Redis.GatewayAlive).
func (m *Memory) GatewayAlive(_ context.Context, gw string, ttl time.Duration, counts map[string]int) (revived bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, listed := m.gateways[gw]
	m.gateways[gw] = time.Now().Add(ttl)
	m.counts[gw] = counts
	return !listed, nil
}

// ResetGateway forgets every session of gw.
func (m *Memory) ResetGateway(_ context.Context, gw string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset(gw)
	return nil
}

func (m *Memory) reset(gw string) {
	prefix := gw + "/"
	for user, fields := range m.users {
		for f := range fields {
			if strings.HasPrefix(f, prefix) {
				delete(fields, f)
			}
		}
		if len(fields) == 0 {
			delete(m.users, user)
		}
	}
	delete(m.counts, gw)
}

// ReapGateways forgets gateways whose TTL passed.
func (m *Memory) ReapGateways(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var dead []string
	now := time.Now()
	for gw, exp := range m.gateways {
		if !exp.After(now) {
			m.reset(gw)
			delete(m.gateways, gw)
			dead = append(dead, gw)
		}
	}
	return dead, nil
}

// Online sums the per-node counts of live gateways.
func (m *Memory) Online(context.Context) (map[string]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	now := time.Now()
	for gw, counts := range m.counts {
		if m.gateways[gw].After(now) {
			for n, c := range counts {
				out[n] += c
			}
		}
	}
	return out, nil
}
