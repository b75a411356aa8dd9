package scaler_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/scaler"
)

// TestDev: wsgate dev's default driver, in-process demo backends, through
// the dev cluster: add up to the maximum, remove one and see its client
// move.
func TestDev(t *testing.T) {
	c, err := devcluster.Start(devcluster.Config{Backends: 2, MaxBackends: 3, Logger: testLogger(t), DrainTimeout: 10 * time.Second,
		Gateway: gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", CloseTimeout: time.Second, DrainTimeout: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	s := c.Scaler()
	if s.Name() != scaler.NameDev || s.Max() != 3 {
		t.Fatalf("driver %s max %d", s.Name(), s.Max())
	}
	id, err := s.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	if id != "node-3" || c.Node(id) == nil {
		t.Fatalf("AddNode = %q", id)
	}
	if _, err := s.AddNode(); !errors.Is(err, scaler.ErrMax) {
		t.Fatalf("AddNode beyond Max 3: %v", err)
	}
	if ids := nodesOf(t, s); !slices.Equal(ids, []string{"node-1", "node-2", "node-3"}) {
		t.Fatalf("Nodes = %v", ids)
	}
	g := c.Gateway()
	cl := connect(t, g.Addr(), "dev-user")
	code := make(chan int, 1)
	go func() { code <- cl.closed(t) }()
	if err := s.RemoveNode(cl.node); err != nil {
		t.Fatal(err)
	}
	if cc := <-code; cc != websocket.CloseServiceRestart {
		t.Fatalf("close %d, want 1012", cc)
	}
	if again := connect(t, g.Addr(), cl.key); again.node == cl.node {
		t.Fatalf("client back on removed %s", cl.node)
	}
	if err := s.RemoveNode(cl.node); !errors.Is(err, gateway.ErrUnknownNode) {
		t.Fatalf("second RemoveNode: %v", err)
	}
}
