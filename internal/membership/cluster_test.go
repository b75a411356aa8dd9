package membership

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/testutil"
)

// fakeRegistry and fakeBroker stand in for Redis and RabbitMQ so the
// reconcile rules can be tested exactly; the real ones are exercised by the
// process tests in cmd/wsgate.
type fakeRegistry struct {
	mu    sync.Mutex
	nodes map[string]Node
	left  map[string]bool // tombstones of deregistered nodes
	down  bool
	reads int
}

func (f *fakeRegistry) Nodes(context.Context) ([]Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.down {
		return nil, errors.New("registry down")
	}
	return NewTracker(mapValues(f.nodes)...).Set(), nil
}
func (f *fakeRegistry) Departed(context.Context) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("registry down")
	}
	return maps.Clone(f.left), nil
}
func (f *fakeRegistry) RegisterNode(_ context.Context, n Node, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.ID] = n
	delete(f.left, n.ID)
	return nil
}
func (f *fakeRegistry) DeregisterNode(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, id)
	if f.left == nil {
		f.left = map[string]bool{}
	}
	f.left[id] = true
	return nil
}
func (f *fakeRegistry) set(fn func()) { f.mu.Lock(); fn(); f.mu.Unlock() }

func mapValues(m map[string]Node) []Node {
	var out []Node
	for _, n := range m {
		out = append(out, n)
	}
	return out
}

type fakeBroker struct{ handle chan func([]byte) }

func (f *fakeBroker) Publish(context.Context, string, []byte, bool) error { return nil }
func (f *fakeBroker) Subscribe(ctx context.Context, _ string, handle func([]byte), ready func()) {
	f.handle <- handle
	ready()
	<-ctx.Done()
}

func ids(ns []Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

func TestClusterReconcile(t *testing.T) {
	a, b, c := Node{ID: "a", Addr: "h:1"}, Node{ID: "b", Addr: "h:2"}, Node{ID: "c", Addr: "h:3"}
	reg := &fakeRegistry{nodes: map[string]Node{"a": a, "b": b}}
	br := &fakeBroker{handle: make(chan func([]byte), 1)}
	var aliveMu sync.Mutex
	alive := map[string]bool{"a": true, "b": true}
	cl := &Cluster{Registry: reg, Broker: br, Exchange: "x", Reconcile: 5 * time.Millisecond,
		Alive: func(id string) bool { aliveMu.Lock(); defer aliveMu.Unlock(); return alive[id] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sets, err := cl.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	latest := ""
	go func() {
		for s := range sets {
			mu.Lock()
			latest = ids(s)
			mu.Unlock()
		}
	}()
	want := func(w string) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if latest != w {
				return fmt.Errorf("set %q, want %q", latest, w)
			}
			return nil
		})
	}
	want("a,b")
	handle := <-br.handle

	// A missed join heals at the next reconcile.
	reg.set(func() { reg.nodes["c"] = c })
	want("a,b,c")
	// The registry loses b (Redis restarted), but this gateway still reaches b: kept.
	reg.set(func() { delete(reg.nodes, "b") })
	waitReconciles(t, reg, 3)
	want("a,b,c")
	// b is really gone: dropped.
	aliveMu.Lock()
	alive["b"] = false
	aliveMu.Unlock()
	want("a,c")
	// A leave event removes at once, and Alive does not bring it back.
	aliveMu.Lock()
	alive["c"] = true
	aliveMu.Unlock()
	handle(EncodeEvent(Event{Type: Leave, Node: c}))
	reg.set(func() { delete(reg.nodes, "c") })
	want("a")
	// A leave whose deregistration failed: the registry still lists c,
	// but the leave keeps it off.
	handle(EncodeEvent(Event{Type: Join, Node: c}))
	reg.set(func() { reg.nodes["c"] = c })
	want("a,c")
	handle(EncodeEvent(Event{Type: Leave, Node: c}))
	want("a")
	waitReconciles(t, reg, 3)
	want("a")
	// Its next life (a join) brings it back.
	handle(EncodeEvent(Event{Type: Join, Node: c}))
	want("a,c")
	// A leave event lost (broker down), the node deregistered: its
	// tombstone drops it although its links are up while it drains.
	if err := reg.DeregisterNode(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	want("a")
	// A registry outage keeps the last set; a join event still applies.
	reg.set(func() { reg.down = true })
	handle(EncodeEvent(Event{Type: Join, Node: b}))
	want("a,b")
}

// waitReconciles waits until n more registry reads happened.
func waitReconciles(t *testing.T, reg *fakeRegistry, n int) {
	t.Helper()
	var reads int
	reg.set(func() { reads = reg.reads })
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		var now int
		reg.set(func() { now = reg.reads })
		if now < reads+n {
			return fmt.Errorf("%d reconciles", now-reads)
		}
		return nil
	})
}

func TestEventCodec(t *testing.T) {
	ev := Event{Type: Heartbeat, Node: Node{ID: "n", Addr: "h:9", Weight: 2}}
	got, err := DecodeEvent(EncodeEvent(ev))
	if err != nil || got != ev {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range []string{`{`, `{"v":2,"type":"join","node":{"id":"n","addr":"h:1"}}`,
		`{"v":1,"type":"explode","node":{"id":"n","addr":"h:1"}}`, `{"v":1,"type":"join","node":{"id":"","addr":"h:1"}}`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("DecodeEvent(%s) accepted", bad)
		}
	}
}
