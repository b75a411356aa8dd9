package presence

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
)

// These tests use the machine's Redis (127.0.0.1:6379, started by
// scripts/services.sh), each with a key prefix of its own.

var seq atomic.Int64

func dialTest(t *testing.T) *Redis {
	t.Helper()
	prefix := fmt.Sprintf("wsgate-test-presence-%d-%d", os.Getpid(), seq.Add(1))
	r, err := Dial(context.Background(), "redis://127.0.0.1:6379/0", prefix)
	if err != nil {
		t.Fatalf("%v (run scripts/services.sh)", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := r.rdb.Keys(ctx, prefix+":*").Result()
		if len(keys) > 0 {
			r.rdb.Del(ctx, keys...)
		}
		r.Close()
	})
	return r
}

func TestDialErrors(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"http://x", "redis://:s3cret@host:6x79/0", "redis://u:s3cret@host:6379/db"} {
		_, err := Dial(ctx, bad, "p")
		if err == nil || !strings.Contains(err.Error(), "--redis") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Dial(%q): %v; want an error naming --redis, without the password", bad, err)
		}
	}
	// A port nothing listens on (the listener is closed at once).
	p := testutil.NewProxy(t, "127.0.0.1:1")
	p.SetDown(true)
	if _, err := Dial(ctx, "redis://"+p.Addr()+"/0", "p"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable Redis: %v", err)
	}
}

func TestRegistry(t *testing.T) {
	r := dialTest(t)
	ctx := context.Background()
	a := membership.Node{ID: "a", Addr: "10.0.0.1:9000", Weight: 2}
	b := membership.Node{ID: "b", Addr: "10.0.0.2:9000"}
	if err := r.RegisterNode(ctx, b, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.RegisterNode(ctx, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	nodes, err := r.Nodes(ctx)
	if err != nil || !reflect.DeepEqual(nodes, []membership.Node{a, b}) {
		t.Fatalf("Nodes = %v %v, want a, b sorted", nodes, err)
	}
	// A node whose TTL passes without a refresh drops out.
	if err := r.RegisterNode(ctx, b, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		nodes, err := r.Nodes(ctx)
		if err != nil || !reflect.DeepEqual(nodes, []membership.Node{a}) {
			return fmt.Errorf("Nodes = %v %v, want only a", nodes, err)
		}
		return nil
	})
	if err := r.DeregisterNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if nodes, err := r.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("after deregister: %v %v", nodes, err)
	}
	// A graceful leave leaves a tombstone; registering again ends it.
	if gone, err := r.Departed(ctx); err != nil || !reflect.DeepEqual(gone, map[string]bool{"a": true}) {
		t.Fatalf("Departed = %v %v, want a", gone, err)
	}
	if err := r.RegisterNode(ctx, a, time.Minute); err != nil {
		t.Fatal(err)
	}
	if gone, err := r.Departed(ctx); err != nil || len(gone) != 0 {
		t.Fatalf("Departed after re-registering = %v %v", gone, err)
	}
}

func TestPresence(t *testing.T) {
	r := dialTest(t)
	ctx := context.Background()
	alive := func(gw string, ttl time.Duration, counts map[string]int, wantRevived bool) {
		t.Helper()
		revived, err := r.GatewayAlive(ctx, gw, ttl, counts)
		if err != nil || revived != wantRevived {
			t.Fatalf("GatewayAlive(%s) = %v, %v; want revived %v", gw, revived, err, wantRevived)
		}
	}
	for _, gw := range []string{"gw1", "gw2"} {
		alive(gw, time.Minute, map[string]int{"a": 1, "b": 2}, true) // first beat
		alive(gw, time.Minute, map[string]int{"a": 1, "b": 2}, false)
	}
	err := r.Apply(ctx, "gw1", []Change{
		{Add: true, User: "alice", Session: "0.1", Node: "a"},
		{Add: true, User: "alice", Session: "0.2", Node: "b"},
		{Add: true, User: "bob", Session: "1.1", Node: "a"},
		{Add: false, User: "alice", Session: "0.2", Node: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, "gw2", []Change{{Add: true, User: "alice", Session: "0.1", Node: "b"}}); err != nil {
		t.Fatal(err)
	}
	where := func(user string) []Location {
		locs, err := r.Where(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		sortLocations(locs)
		return locs
	}
	want := []Location{{"gw1", "0.1", "a"}, {"gw2", "0.1", "b"}}
	if got := where("alice"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Where(alice) = %v, want %v", got, want)
	}
	if online, err := r.Online(ctx); err != nil || !reflect.DeepEqual(online, map[string]int{"a": 2, "b": 4}) {
		t.Fatalf("Online = %v %v", online, err)
	}

	// gw2 stops refreshing: its sessions vanish from Where at once and
	// are removed by a reap.
	alive("gw2", time.Millisecond, nil, false)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := where("alice"); len(got) != 1 || got[0].Gateway != "gw1" {
			return fmt.Errorf("Where(alice) = %v, want only gw1's session", got)
		}
		return nil
	})
	dead, err := r.ReapGateways(ctx)
	if err != nil || !reflect.DeepEqual(dead, []string{"gw2"}) {
		t.Fatalf("ReapGateways = %v %v", dead, err)
	}
	if n, _ := r.rdb.HLen(ctx, r.key("user", "alice")).Result(); n != 1 {
		t.Fatalf("alice has %d entries after the reap, want 1", n)
	}
	if n, _ := r.rdb.Exists(ctx, r.key("gw", "gw2"), r.key("counts", "gw2")).Result(); n != 0 {
		t.Fatalf("%d of gw2's keys left after the reap", n)
	}
	// A reaped gateway that beats again learns it must rewrite its presence.
	alive("gw2", time.Minute, nil, true)
	// So does one whose entry Redis lost (a restart).
	r.rdb.Del(ctx, r.key("gateways"))
	alive("gw1", time.Minute, nil, true)

	// A resync starts from a clean slate.
	if err := r.ResetGateway(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if got := where("alice"); len(got) != 0 {
		t.Fatalf("after reset: %v", got)
	}
	if got := where("bob"); len(got) != 0 {
		t.Fatalf("after reset: %v", got)
	}
}

func sortLocations(ls []Location) {
	slices.SortFunc(ls, func(a, b Location) int { return strings.Compare(a.Gateway+a.Session, b.Gateway+b.Session) })
}
