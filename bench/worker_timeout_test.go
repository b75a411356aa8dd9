package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

// TestWorkerKeepsWhatItHolds: a broadcast worker whose connect phase times
// out with connections still unanswered (their upgrade requests held by a
// frozen proxy) reports the ones it holds, counts the rest as failed
// ("pending at the timeout"), and goes on answering its parent instead of
// quitting (which failed a whole 900,000-client run).
func TestWorkerKeepsWhatItHolds(t *testing.T) {
	g := startDev(t, gateway.Config{})
	const conns, first = 12, 4
	rl := holdingWorker(t, g, Config{Conns: conns, ConnectRate: 40, Timeout: 2 * time.Second}, first)
	if rl.Connected < first || rl.Connected >= conns || rl.Failures[failPending] != conns-rl.Connected {
		t.Fatalf("ready line: %d connected, failures %v; want %d..%d connected and the rest %q", rl.Connected, rl.Failures, first, conns-1, failPending)
	}
}

// TestWorkerDropsAndPending: connections that were welcomed and then
// closed count once, not as both welcomed and dropped. A worker whose
// drops outnumbered its unanswered connections thought none were pending
// when its connect phase timed out, and quit (a 1,000,000-client run lost
// its whole report that way, run L in docs/BENCHMARKS.md).
func TestWorkerDropsAndPending(t *testing.T) {
	// No pings and a 1 s idle timeout: each welcomed client is closed
	// (1001) about a second after its welcome.
	g := startDev(t, gateway.Config{PingInterval: -1, IdleTimeout: time.Second, HandshakeTimeout: time.Minute})
	const conns, first = 12, 8
	rl := holdingWorker(t, g, Config{Conns: conns, ConnectRate: 80, Timeout: 4 * time.Second}, first)
	welcomed := conns - rl.Failures[failPending]
	if rl.Failures[failPending] < 1 || welcomed < first || rl.Failures["after open: close 1001"] != welcomed || rl.Connected != 0 {
		t.Fatalf("ready line: %d connected, failures %v; want every welcomed client (at least %d) closed 1001 and the rest %q", rl.Connected, rl.Failures, first, failPending)
	}
}

// holdingWorker runs a broadcast worker (cfg's Conns, ConnectRate and
// Timeout) against g through a proxy that holds every upgrade request once
// g has first clients, and returns the worker's ready line. The worker must
// then return without error when its parent closes the control pipe.
func holdingWorker(t *testing.T, g *gateway.Gateway, cfg Config, first int) readyLine {
	t.Helper()
	p := testutil.NewProxy(t, g.Addr())
	t.Cleanup(func() { p.Freeze(testutil.ToTarget, false) })
	go func() {
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if g.Clients() >= first {
				p.Freeze(testutil.ToTarget, true) // the rest stay unanswered
				return
			}
		}
	}()
	ctrl, ctrlW := io.Pipe()
	reports := make(chan any, 4)
	done := make(chan error, 1)
	cfg.Scenario, cfg.Target, cfg.Addr, cfg.Admin, cfg.Sources = Broadcast, "wsgate", p.Addr(), g.AdminAddr(), 2
	cfg.Control, cfg.Report = ctrl, func(v any) { reports <- v }
	go func() {
		_, err := Run(context.Background(), cfg)
		done <- err
	}()
	var rl readyLine
	select {
	case v := <-reports:
		var ok bool
		if rl, ok = v.(readyLine); !ok {
			t.Fatalf("first report %T %+v, want the ready line", v, v)
		}
	case err := <-done:
		t.Fatalf("worker quit before its ready line: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line")
	}
	ctrlW.Close() // the parent is done: the worker returns
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not return")
	}
	return rl
}
