package backend

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/wire"
)

// budgetHandler echoes nothing, closes sessions when told to, and on every
// Push checks the reassembly accounts of the (single) link on its reader
// goroutine, which owns them.
type budgetHandler struct {
	t *testing.T
	n *Node
}

func (h *budgetHandler) OnOpen(*Session) {}
func (h *budgetHandler) OnMessage(s *Session, _ bool, data []byte) {
	if string(data) == "close" {
		_ = s.Close(4000, "")
	}
}
func (h *budgetHandler) OnClose(*Session, uint16, string) {}
func (h *budgetHandler) OnPush(string, []byte) int {
	h.n.mu.RLock()
	defer h.n.mu.RUnlock()
	for l := range h.n.links {
		sum := 0
		for s := range l.rheld {
			if cap(s.rbuf) == 0 {
				h.t.Errorf("session %d held without a buffer", s.id)
			}
			sum += cap(s.rbuf)
		}
		l.smu.Lock()
		for _, s := range l.sessions {
			if _, ok := l.rheld[s]; cap(s.rbuf) > 0 && !ok {
				h.t.Errorf("session %d has a %d-byte buffer not accounted", s.id, cap(s.rbuf))
			}
		}
		l.smu.Unlock()
		if sum != l.rbytes || l.rbytes > h.n.cfg.MaxLinkReassembly {
			h.t.Errorf("rbytes %d, buffers %d, budget %d", l.rbytes, sum, h.n.cfg.MaxLinkReassembly)
		}
	}
	return 0
}

// TestReassemblyAccounts drives random interleaved fragments, completions,
// gateway closes, service closes (in and out of handlers) and over-budget
// sheds, and checks after each step that the link's reassembly total is
// exactly the capacity of the buffers it holds and within the budget.
func TestReassemblyAccounts(t *testing.T) {
	h := &budgetHandler{t: t}
	n, err := NewNode(Config{ID: "a", Listen: "127.0.0.1:0", MaxMessage: 64 << 10, MaxLinkReassembly: 200 << 10,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, h)
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	const steps = 3000
	g := gwtest.Dial(t, n.Addr(), "gw")
	done := make(chan struct{})
	go func() { // drain what the node sends; done at the last PushResult
		for {
			f, err := g.TryNextRaw()
			if err != nil {
				return
			}
			if f.Type == wire.TypeError {
				t.Errorf("node closed the link: %q", f.Body)
			}
			if f.Type == wire.TypePushResult && f.Session == steps {
				close(done)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	const ids = 40
	open := map[uint32]bool{}
	// Slots of session ids; a session the service closed gets a new id
	// (a gateway reuses an id only after the node's Close).
	var slot [ids]uint32
	for i := range slot {
		slot[i] = uint32(i + 1)
	}
	next := uint32(ids + 1)
	inMsg := map[uint32]int{} // bytes sent of the message in progress
	for step := range steps {
		k := rng.IntN(ids)
		id := slot[k]
		var b []byte
		switch {
		case !open[id]:
			b = wire.AppendOpen(nil, id, false, fmt.Appendf(nil, "k%d", id), nil, nil)
			open[id] = true
		case rng.IntN(20) == 0:
			b = wire.AppendClose(nil, id, 1000, nil)
			open[id] = false
			delete(inMsg, id)
		case rng.IntN(20) == 0 && !inProgress(inMsg, id):
			b = wire.AppendFrame(nil, wire.TypeMessage, 0, id, []byte("close"))
			open[id] = false // the node ignores what follows
		case rng.IntN(30) == 0:
			if s := n.sessionForTest(id); s != nil {
				_ = s.Close(4001, "") // from outside a handler: the reader does not see it
			}
			slot[k], next = next, next+1
			continue
		default:
			size := rng.IntN(24 << 10)
			flags := wire.FlagMore
			if _, ok := inMsg[id]; ok {
				flags |= wire.FlagContinuation
			}
			if rng.IntN(4) == 0 {
				flags &^= wire.FlagMore
			}
			b = wire.AppendFrame(nil, wire.TypeMessage, flags, id, make([]byte, size))
			if flags&wire.FlagMore != 0 {
				inMsg[id] += size
			} else {
				delete(inMsg, id)
			}
		}
		g.Write(b, wire.AppendPush(nil, uint32(step), nil, nil))
		if t.Failed() {
			t.Fatalf("step %d", step)
		}
	}
	g.Write(wire.AppendPush(nil, steps, nil, nil))
	select {
	case <-done:
	case <-time.After(gwtest.Timeout):
		t.Fatal("no answer to the last Push")
	}
	if st := n.Stats(); st.SessionsReassemblyShed == 0 || st.Links != 1 {
		t.Fatalf("the workload must reach the budget on one link: %+v", st)
	}
}

func inProgress(m map[uint32]int, id uint32) bool {
	_, ok := m[id]
	return ok
}

// sessionForTest returns the open session id of the node's only link.
func (n *Node) sessionForTest(id uint32) *Session {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for l := range n.links {
		return l.lookup(id)
	}
	return nil
}
