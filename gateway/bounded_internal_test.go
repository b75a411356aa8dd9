package gateway

import (
	"strconv"
	"testing"

	"github.com/wsgate/wsgate/internal/ring"
)

// TestBoundedScanAcrossChanges drives a loop's rebalance by hand with the
// factor on: victims listed for one change wait through the next (each
// checked against the ring it was listed under), a change undone before
// their turn closes none of them, and two changes in a row close exactly
// the clients the pair displaces.
func TestBoundedScanAcrossChanges(t *testing.T) {
	l := testLoop(t, func(c *Config) { c.BalanceFactor = 1.25 })
	g := l.g
	base := g.ring.Load()
	var sessions []*session
	node := map[*session]string{}
	for i := range 600 {
		s, _ := openSession(l, "user-"+strconv.Itoa(i))
		sessions = append(sessions, s)
		node[s] = s.link.node
	}
	withD, err := base.With(ring.Member{ID: "d", Addr: "127.0.0.1:4"})
	if err != nil {
		t.Fatal(err)
	}
	withDE, err := withD.With(ring.Member{ID: "e", Addr: "127.0.0.1:5"})
	if err != nil {
		t.Fatal(err)
	}
	displaced := func(from, to *ring.Ring) int {
		n := 0
		for _, s := range sessions {
			if ring.Displaced(from, to, s.key, node[s]) {
				n++
			}
		}
		return n
	}
	change := func(prev, r *ring.Ring) {
		g.ring.Store(r)
		l.scan(prev, r)
	}

	// d joins and leaves again before any victim's turn: nobody moves.
	change(base, withD)
	if got, want := l.pending.Load(), int64(displaced(base, withD)); got != want || want == 0 {
		t.Fatalf("d joined: %d victims, %d displaced", got, want)
	}
	change(withD, base)
	if got := l.pending.Load(); got != int64(displaced(base, withD)) {
		t.Fatalf("d left: %d victims waiting, want the %d listed before", got, displaced(base, withD))
	}
	l.closeVictims(1 << 20)
	if n := g.rebalanced.Load(); n != 0 || l.pending.Load() != 0 {
		t.Fatalf("undone change: %d closed, %d pending", n, l.pending.Load())
	}

	// d joins, then e, before the victims' turn: exactly the clients that
	// base -> d+e displaces close.
	change(base, withD)
	change(withD, withDE)
	l.closeVictims(1 << 20)
	if got, want := g.rebalanced.Load(), int64(displaced(base, withDE)); got != want || want <= int64(displaced(base, withD)) {
		t.Fatalf("d then e: %d closed, want %d (d alone: %d)", got, want, displaced(base, withD))
	}
	for _, s := range sessions {
		if closed := s.state != stOpen; closed != ring.Displaced(base, withDE, s.key, node[s]) {
			t.Errorf("%s on %s: closed %v", s.key, node[s], closed)
		}
	}
}
