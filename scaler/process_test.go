package scaler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/scaler"
)

// TestProcessCluster: two real `wsgate backend` children join a real
// gateway through RabbitMQ and Redis; a client lands on one; removing that
// one moves the client to the other; the maximum holds; no child survives.
func TestProcessCluster(t *testing.T) {
	name := clusterName(t)
	secret := []byte("process-driver-test-secret-0123456789")
	var gp atomic.Pointer[gateway.Gateway]
	p, err := scaler.NewProcess(scaler.ProcessConfig{Binary: binary(), AMQP: amqpURL, Redis: redisURL,
		Exchange: name, RedisPrefix: name, ClusterSecret: secret, Joined: joinedOn(&gp), IDPrefix: "pt",
		Args: []string{"--heartbeat", "200ms", "--node-ttl", "1s"}, Max: 2, DrainTimeout: 10 * time.Second,
		Stderr: newLogWriter(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	t.Cleanup(func() {
		_ = p.Close(context.Background())
		for _, pid := range pids {
			if !gone(pid) {
				t.Errorf("child %d survived Close", pid)
			}
		}
	})
	gp.Store(startGateway(t, name, secret, p))
	g := gp.Load()

	for range 2 {
		id, err := p.AddNode()
		if err != nil {
			t.Fatal(err)
		}
		// AddNode returned: the node is on the ring with its link up.
		if !scaler.OnRing(g, id) {
			t.Fatalf("AddNode returned %s before it joined", id)
		}
		pids = append(pids, p.PID(id))
	}
	if ids := nodesOf(t, p); !slices.Equal(ids, []string{"pt-1", "pt-2"}) {
		t.Fatalf("Nodes = %v", ids)
	}
	if _, err := p.AddNode(); !errors.Is(err, scaler.ErrMax) {
		t.Fatalf("third AddNode with Max 2: %v, want ErrMax", err)
	}

	// A client lands on one child; find a key for each.
	byNode := map[string]*client{}
	for i := 0; len(byNode) < 2 && i < 64; i++ {
		c := connect(t, g.Addr(), fmt.Sprintf("user-%d", i))
		if byNode[c.node] == nil {
			byNode[c.node] = c
		}
	}
	if byNode["pt-1"] == nil || byNode["pt-2"] == nil {
		t.Fatalf("clients landed on %v, want pt-1 and pt-2", byNode)
	}
	moved := byNode["pt-1"]
	code := make(chan int, 1)
	go func() { code <- moved.closed(t) }()
	if err := p.RemoveNode("pt-1"); err != nil {
		t.Fatal(err)
	}
	if !gone(pids[0]) {
		t.Fatalf("pt-1 (pid %d) still runs after RemoveNode", pids[0])
	}
	if c := <-code; c != websocket.CloseServiceRestart {
		t.Fatalf("client of the removed node closed with %d, want 1012 (rebalance)", c)
	}
	// It reconnects with its key and lands on the node that is left.
	again := connect(t, g.Addr(), moved.key)
	if again.node != "pt-2" {
		t.Fatalf("client moved to %s, want pt-2", again.node)
	}
	if err := p.RemoveNode("pt-1"); !errors.Is(err, gateway.ErrUnknownNode) {
		t.Fatalf("second RemoveNode: %v, want ErrUnknownNode", err)
	}
	// The place is free again.
	id, err := p.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	pids = append(pids, p.PID(id))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Fatalf("child %d survived Close", pid)
		}
	}
	if ids := nodesOf(t, p); len(ids) != 0 {
		t.Fatalf("Nodes after Close = %v", ids)
	}
}

// TestProcessDev: wsgate dev with --scaler process; the driver announces
// its children on the dev cluster's in-process bus.
func TestProcessDev(t *testing.T) {
	var pids []int
	c, err := devcluster.Start(devcluster.Config{Backends: 2, Logger: testLogger(t),
		Gateway: gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", CloseTimeout: time.Second, DrainTimeout: 3 * time.Second},
		Scaler: func(bus membership.Publisher, secret []byte, joined func(string) bool) (scaler.Scaler, error) {
			return scaler.NewProcess(scaler.ProcessConfig{Binary: binary(), Announce: bus, ClusterSecret: secret,
				Joined: joined, IDPrefix: "dev", Max: 3, DrainTimeout: 10 * time.Second, Logger: testLogger(t)})
		}})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Scaler().(*scaler.Process)
	for _, id := range nodesOf(t, p) {
		pids = append(pids, p.PID(id))
	}
	t.Cleanup(func() { _ = c.Shutdown(context.Background()) })
	g := c.Gateway()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := g.Ring().Len(); n != 2 {
			return fmt.Errorf("ring has %d members, want 2", n)
		}
		return nil
	})
	id, err := c.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	pids = append(pids, p.PID(id))
	if !scaler.OnRing(g, id) {
		t.Fatalf("%s not on the ring after AddNode", id)
	}
	if _, err := c.AddNode(); !errors.Is(err, scaler.ErrMax) {
		t.Fatalf("AddNode beyond Max 3: %v", err)
	}
	ws := connect(t, g.Addr(), "someone")
	code := make(chan int, 1)
	go func() { code <- ws.closed(t) }()
	if err := c.RemoveNode(ws.node); err != nil {
		t.Fatal(err)
	}
	if cc := <-code; cc != websocket.CloseServiceRestart {
		t.Fatalf("close %d, want 1012", cc)
	}
	if again := connect(t, g.Addr(), "someone"); again.node == ws.node {
		t.Fatalf("client back on the removed node %s", ws.node)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Fatalf("child %d survived the cluster's shutdown", pid)
		}
	}
}

// TestProcessRetriesAChildThatExitsAtOnce: a child that exits as soon as
// it starts (as one whose port another process took between the driver's
// choice and its bind does) is started again on other ports, a bounded
// number of times; then AddNode fails and says why.
func TestProcessRetriesAChildThatExitsAtOnce(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "starts")
	script := filepath.Join(dir, "wsgate")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho x >> "+count+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := scaler.NewProcess(scaler.ProcessConfig{Binary: script, Announce: membership.NewMemory(),
		Joined: func(string) bool { return false }, IDPrefix: "r", Max: 3, JoinTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := p.AddNode(); err == nil || !strings.Contains(err.Error(), "exited before it joined") {
		t.Fatalf("AddNode = %v, want the child's early exit", err)
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "x"); n != 3 {
		t.Fatalf("the child was started %d times, want 3", n)
	}
}
