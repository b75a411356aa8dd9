package gateway

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wire"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// These came from an independent review of migrate.go; each failed before
// its fix.

// keyOwnedBy is the first key k0, k1, ... that r gives to node.
func keyOwnedBy(r *ring.Ring, node string) string {
	for i := 0; ; i++ {
		if key := "k" + strconv.Itoa(i); r.LookupString(key).ID == node {
			return key
		}
	}
}

func migrateLoop(t *testing.T) *loop {
	l := testLoop(t, func(c *Config) { c.Rebalance = RebalanceMigrate })
	for _, k := range l.links {
		k.migrate = true
	}
	return l
}

// listed reports whether s is still in its key's list.
func listed(l *loop, s *session) bool {
	for x := range l.keySessions(s.key) {
		if x == s {
			return true
		}
	}
	return false
}

// TestOrphanLeavesKeyList: an orphan (its link died) that then ends, by
// the client leaving or by its wait running out, leaves l.byKey.
func TestOrphanLeavesKeyList(t *testing.T) {
	for _, end := range []string{"client leaves", "wait runs out"} {
		t.Run(end, func(t *testing.T) {
			l := migrateLoop(t)
			s, _ := openSession(l, "u1")
			l.opens[s] = "x"
			l.linkFailed(s.link, wsframe.CloseInternalError, "backend link lost")
			if s.state != stMigrating {
				t.Fatalf("state %d, want migrating (an orphan)", s.state)
			}
			if end == "wait runs out" {
				l.sweepMigrations(1 << 62)
			}
			l.onClose(s)
			if _, ok := l.sessions[s.id]; ok || listed(l, s) || len(l.migrations) != 0 {
				t.Fatalf("ended orphan still held: in sessions %v, listed %v, migrations %d", ok, listed(l, s), len(l.migrations))
			}
		})
	}
}

// TestMidMessageVictimsWait: clients in mid-message wait for a later tick
// without holding up the other victims (a hostile client can stay in
// mid-message as long as it likes).
func TestMidMessageVictimsWait(t *testing.T) {
	l := migrateLoop(t)
	var good, bad []*session
	for i := 0; len(good) < 3 || len(bad) < 2; i++ {
		key := "k" + strconv.Itoa(i)
		if l.g.ring.Load().LookupString(key).ID != "a" {
			continue
		}
		s, _ := openSession(l, key)
		l.opens[s] = "x"
		if len(good) < 3 {
			good = append(good, s)
		} else {
			s.op = wsframe.OpText // a fragmented message in progress
			bad = append(bad, s)
		}
	}
	// Node a leaves: every session on it moves.
	r, err := ring.New([]ring.Member{{ID: "b", Addr: "127.0.0.1:2"}, {ID: "c", Addr: "127.0.0.1:3"}})
	if err != nil {
		t.Fatal(err)
	}
	l.g.ring.Store(r)
	l.links["a"].retired = true
	l.victims = append(append(l.victims, good...), bad...)
	for range 5 {
		l.closeVictims(2)
	}
	for _, s := range good {
		if s.state != stMigrating {
			t.Errorf("session %d: state %d, want migrating", s.id, s.state)
		}
	}
	for _, s := range bad {
		if s.state != stOpen {
			t.Errorf("mid-message session %d: state %d, want open (waiting)", s.id, s.state)
		}
	}
	if len(l.victims) != len(bad) {
		t.Errorf("%d victims left, want the %d in mid-message", len(l.victims), len(bad))
	}
}

// TestSendKeyNotFromNewNodeDuringMove: a SendKey from the new node does
// not reach a session still moving to it (the new node does not count it;
// the old one still reaches it), so no push arrives twice.
func TestSendKeyNotFromNewNodeDuringMove(t *testing.T) {
	l := migrateLoop(t)
	key := keyOwnedBy(l.g.ring.Load(), "b")
	_, c1 := openSession(l, key) // on b
	s2, c2 := openSession(l, key)
	s2.link.sessions-- // s2 on a, placed by an older ring
	s2.link = l.links["a"]
	s2.link.sessions++
	l.opens[s2] = "x"
	if !l.migrateTo(s2, l.g.ring.Load().Member("b")) {
		t.Fatal("no migration")
	}
	body := append([]byte{0, byte(len(key))}, key...)
	body = append(body, "push"...)
	h := wire.Header{Type: wire.TypeSendKey, BodyLen: len(body)}
	for _, node := range []string{"a", "b"} { // a counts s2, b counts the other
		if err := l.linkFrame(l.links[node], h, body); err != nil {
			t.Fatal(err)
		}
	}
	if len(c2.out) != len(c1.out) {
		t.Errorf("the moving session got %d bytes, the other %d: a push twice", len(c2.out), len(c1.out))
	}
}

// FuzzMigrationFrames feeds arbitrary frames from the backends of a loop
// with sessions in every migration phase: a hostile or broken backend may
// get its link closed, but must not crash the gateway or corrupt its
// counts (every session is on at most one link, counted once).
func FuzzMigrationFrames(f *testing.F) {
	f.Add([]byte{0, byte(wire.TypeReady), 0, 1, 0})
	f.Add([]byte{1, byte(wire.TypeState), 0, 1, 3, 'a', 'b', 'c'})
	f.Add([]byte{0, byte(wire.TypeState), wire.FlagLost, 2, 0, 1, byte(wire.TypeClose), 0, 2, 2, 3, 232})
	f.Add([]byte{2, byte(wire.TypeSendKey), 0, 0, 4, 0, 2, 'k', '1'})
	f.Fuzz(func(t *testing.T, in []byte) {
		l := migrateLoop(t)
		var ss []*session
		for i := range 4 {
			s, _ := openSession(l, "k"+strconv.Itoa(i))
			l.opens[s] = "x"
			ss = append(ss, s)
		}
		r := l.g.ring.Load()
		for i, s := range ss[:3] { // three migrations, in different phases
			to := r.MemberAt((i + 1) % r.Len())
			if to.ID == s.link.node {
				to = r.MemberAt((i + 2) % r.Len())
			}
			l.migrateTo(s, to)
		}
		l.migrationReady(l.migrations[ss[1]].to, ss[1].id)
		l.linkFailed(ss[3].link, wsframe.CloseInternalError, "backend link lost") // an orphan
		nodes := []string{"a", "b", "c"}
		for len(in) >= 5 {
			k := l.links[nodes[int(in[0])%3]]
			n := min(int(in[4]), len(in)-5)
			h := wire.Header{Type: wire.Type(in[1]), Flags: in[2], Session: uint32(in[3]), BodyLen: n}
			body := in[5 : 5+n]
			in = in[5+n:]
			if k == nil || k.closed || !h.Type.Known() {
				continue
			}
			if err := l.linkFrame(k, h, body); err != nil {
				l.linkFailed(k, wsframe.CloseInternalError, "backend link lost")
			}
		}
		l.sweepMigrations(1 << 62)
		per := map[*link]int{}
		for _, s := range l.sessions {
			if s.link != nil && s.state != stClosed {
				per[s.link]++
			}
		}
		for _, mg := range l.migrations {
			if mg.to != nil {
				per[mg.to]++
			}
		}
		for k, n := range per {
			if !k.closed && k.sessions != n {
				t.Fatalf("link %s counts %d sessions, %d are on it", k.node, k.sessions, n)
			}
		}
	})
}

// TestNewNodeDiesAfterHandover: when the new node's link dies after the
// old node was asked to hand the session over, the state it hands over is
// taken to the next owner instead of the client being closed.
func TestNewNodeDiesAfterHandover(t *testing.T) {
	l := migrateLoop(t)
	// After b dies the ring is a and c; the key belongs to c then.
	r, err := ring.New([]ring.Member{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "c", Addr: "127.0.0.1:3"}})
	if err != nil {
		t.Fatal(err)
	}
	key := keyOwnedBy(r, "c")
	s, _ := openSession(l, key)
	s.link.sessions-- // on a, placed by an older ring
	s.link = l.links["a"]
	s.link.sessions++
	l.opens[s] = "open-body"
	l.links["c"].conn.(*fakeConn).keep = true
	if !l.migrateTo(s, l.g.ring.Load().Member("b")) {
		t.Fatal("no migration")
	}
	l.migrationReady(l.links["b"], s.id) // Handover sent to a
	l.g.ring.Store(r)                    // b leaves the ring as its link dies
	l.linkFailed(l.links["b"], wsframe.CloseInternalError, "backend link lost")
	if mg := l.migrations[s]; s.state != stMigrating || mg == nil || mg.phase != mgPark {
		t.Fatalf("state %d, migration %+v: want it parked", s.state, mg)
	}
	c := l.links["c"]
	if err := l.migrationState(l.links["a"], wire.Header{Type: wire.TypeState, Session: s.id}, []byte("42")); err != nil {
		t.Fatal(err)
	}
	mg := l.migrations[s]
	if mg == nil || mg.to != c || mg.phase != mgReady || s.link != nil {
		t.Fatalf("after the State: migration %+v, link %v; want a resume Open sent to c", mg, s.link)
	}
	l.migrationReady(c, s.id)
	if s.state != stOpen || s.link != c {
		t.Fatalf("state %d on %v, want open on c", s.state, s.link)
	}
	out := c.conn.(*fakeConn).out
	if want := wire.AppendFrame(nil, wire.TypeState, 0, s.id, []byte("42")); !bytes.HasSuffix(out, want) {
		t.Fatalf("c got %x, want it to end with the State carrying the handed-over 42", out)
	}
}

// TestNewNodeDiesBeforeHandover: when the new node's link dies before the
// old node was asked for the session, the session stays open on its old
// node and is listed to move again.
func TestNewNodeDiesBeforeHandover(t *testing.T) {
	l := migrateLoop(t)
	key := keyOwnedBy(l.g.ring.Load(), "a")
	s, _ := openSession(l, key)
	l.opens[s] = "open-body"
	if !l.migrateTo(s, l.g.ring.Load().Member("b")) {
		t.Fatal("no migration")
	}
	l.linkFailed(l.links["b"], wsframe.CloseInternalError, "backend link lost") // before its Ready
	if s.state != stOpen || s.link != l.links["a"] || len(l.migrations) != 0 || len(l.victims) != 1 || l.victims[0] != s {
		t.Fatalf("state %d on %v, %d migrations, victims %v: want open on a, listed again", s.state, s.link, len(l.migrations), l.victims)
	}
	if n := l.links["a"].sessions; n != 1 {
		t.Fatalf("link a counts %d sessions, want 1", n)
	}
}

// TestHeldInputBounded: the input held for migrating clients is bounded
// gateway-wide (a quarter of --max-outbound-memory): the client whose
// input goes over is closed with 1013, and what it held is given back.
func TestHeldInputBounded(t *testing.T) {
	l := testLoop(t, func(c *Config) { c.Rebalance, c.MaxOutboundMemory = RebalanceMigrate, 1<<20 }) // 256 KiB for held input
	for _, k := range l.links {
		k.migrate = true
	}
	var conns []*fakeConn
	var ss []*session
	for i := range 2 {
		key := "k" + strconv.Itoa(i)
		s, c := openSession(l, key)
		l.opens[s] = "x"
		to := l.g.ring.Load().MemberAt(0)
		if to.ID == s.link.node {
			to = l.g.ring.Load().MemberAt(1)
		}
		if !l.migrateTo(s, to) {
			t.Fatal("no migration")
		}
		conns, ss = append(conns, c), append(ss, s)
	}
	conns[0].in = make([]byte, 200<<10)
	if act := l.onTraffic(ss[0], conns[0]); act != 0 || ss[0].state != stMigrating {
		t.Fatalf("200 KiB held: action %v, state %d; want it held", act, ss[0].state)
	}
	conns[1].in = make([]byte, 100<<10)
	l.onTraffic(ss[1], conns[1])
	// A close frame: opcode 0x88, payload length, then the code 1013 (0x03f5).
	if ss[1].state == stMigrating || len(conns[1].out) < 4 || conns[1].out[0] != 0x88 || !bytes.Equal(conns[1].out[2:4], []byte{0x03, 0xf5}) {
		t.Fatalf("over the gateway-wide bound: state %d, out %x; want closed with 1013", ss[1].state, conns[1].out)
	}
	if got := l.g.heldInput.Load(); got != 200<<10 {
		t.Fatalf("held %d bytes after the close, want the first client's %d", got, 200<<10)
	}
	l.onClose(ss[0])
	if got := l.g.heldInput.Load(); got != 0 {
		t.Fatalf("held %d bytes after both left, want 0", got)
	}
}
