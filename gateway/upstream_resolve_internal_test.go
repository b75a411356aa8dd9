package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/wsgate/wsgate/internal/ring"
)

// TestResolveTargets: a plain upstream's name is resolved when it joins;
// one that failed is retried by the refresh and then routes; a refresh
// that fails keeps the last good address; one whose address changed is
// followed.
func TestResolveTargets(t *testing.T) {
	var answer atomic.Pointer[string] // "" = the name does not resolve
	orig := lookupIP
	t.Cleanup(func() { lookupIP = orig })
	lookupIP = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if a := answer.Load(); a != nil && *a != "" {
			return []netip.Addr{netip.MustParseAddr(*a)}, nil
		}
		return nil, errors.New("no such host")
	}
	g := &Gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.targets.Store(&map[string]*upTarget{})
	const url = "ws://app.internal:9000/chat"
	members := []ring.Member{{ID: "app", Addr: url}, {ID: "b", Addr: "127.0.0.1:9001"}}
	set := func(a string) { answer.Store(&a) }
	addr := func() string {
		tg := g.target(url)
		if tg == nil || tg.err != nil {
			return ""
		}
		return tg.tcp.String()
	}

	set("")
	g.resolveTargets(members, false) // joins while its name does not resolve (its container is not up)
	if addr() != "" || g.target(url) == nil {
		t.Fatalf("unresolvable name: target %+v", g.target(url))
	}
	if len(*g.targets.Load()) != 1 {
		t.Fatalf("targets hold %d entries, want only the plain upstream", len(*g.targets.Load()))
	}
	set("10.0.0.5")
	g.resolveTargets(members, false) // a rebuild does not retry it (it could wait on DNS under ringMu)
	if addr() != "" {
		t.Fatal("a rebuild resolved a known name again")
	}
	g.resolveTargets(members, true) // the periodic refresh does
	if addr() != "10.0.0.5:9000" || g.target(url).host != "app.internal:9000" || g.target(url).path != "/chat" {
		t.Fatalf("after the refresh: %+v", g.target(url))
	}
	set("")
	g.resolveTargets(members, true) // DNS fails for a moment: keep the good address
	if addr() != "10.0.0.5:9000" {
		t.Fatalf("a failed refresh lost the address: %q", addr())
	}
	set("10.0.0.6")
	g.resolveTargets(members, true) // the upstream moved
	if addr() != "10.0.0.6:9000" {
		t.Fatalf("the new address was not picked up: %q", addr())
	}
}
