package gateway

import (
	"context"
	"time"

	"github.com/wsgate/wsgate/internal/presence"
)

// localPresence answers presence questions from the loops' own session
// tables. It is the Presence of a gateway with no shared store (static
// backends, dev mode): one gateway knows every session already, so keeping
// a second per-user index would only cost memory (about 460 B per idle
// client). Writes are no-ops; reads visit each loop once.
type localPresence struct{ g *Gateway }

// Apply implements Presence: nothing to store.
func (localPresence) Apply(context.Context, string, []presence.Change) error { return nil }

// GatewayAlive implements Presence: never revived, so never resynced.
func (localPresence) GatewayAlive(context.Context, string, time.Duration, map[string]int) (bool, error) {
	return false, nil
}

// ResetGateway implements Presence: nothing to reset.
func (localPresence) ResetGateway(context.Context, string) error { return nil }

// ReapGateways implements Presence: there are no other gateways.
func (localPresence) ReapGateways(context.Context) ([]string, error) { return nil, nil }

// Where lists the open sessions of user, asking each loop on its goroutine.
func (p localPresence) Where(ctx context.Context, user string) ([]presence.Location, error) {
	g := p.g
	out := []presence.Location{}
	for _, l := range g.loopList() {
		ch := make(chan []presence.Location, 1)
		if l.exec(func() {
			var locs []presence.Location
			for s := range l.keySessions(user) {
				if s.state != stOpen && s.state != stMigrating {
					continue
				}
				if node := s.node(); node != "" {
					locs = append(locs, presence.Location{Gateway: g.cfg.ID, Session: l.sessionName(s), Node: node})
				}
				if mg := l.migrations[s]; mg != nil && mg.to != nil { // and where it is going
					locs = append(locs, presence.Location{Gateway: g.cfg.ID, Session: l.sessionName(s), Node: mg.to.node})
				}
			}
			ch <- locs
		}) != nil {
			continue // the loop is gone (shutting down)
		}
		select {
		case locs := <-ch:
			out = append(out, locs...)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// Online implements Presence: this gateway's clients per node.
func (p localPresence) Online(context.Context) (map[string]int, error) {
	return p.g.nodeCounts(), nil
}

// Gateways implements gatewayLister: this gateway alone.
func (p localPresence) Gateways(context.Context) (map[string]map[string]int, error) {
	return map[string]map[string]int{p.g.cfg.ID: p.g.nodeCounts()}, nil
}
