package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
)

// TestScenariosAgainstDevCluster runs every scenario with a few hundred
// connections through an in-process dev cluster.
func TestScenariosAgainstDevCluster(t *testing.T) {
	g := startDev(t, gateway.Config{Pprof: true}) // the probe forces GCs through pprof
	base := Config{Target: "wsgate", Addr: g.Addr(), Admin: g.AdminAddr(), Probe: Probe{Admin: g.AdminAddr()},
		Conns: 300, Sources: 4, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
		Pushes: 200, Rounds: 2, Timeout: 20 * time.Second}
	for _, s := range Scenarios {
		t.Run(s, func(t *testing.T) {
			cfg := base
			cfg.Scenario = s
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Failures != nil {
				t.Errorf("failures: %v", r.Failures)
			}
			switch s {
			case Connect:
				if r.Connected != cfg.Conns || r.HandshakeRate <= 0 || r.Handshake == nil {
					t.Errorf("connect: %+v", r)
				}
			case Idle:
				// The cluster shares this process, so memory figures are
				// noise here; check that the scenario measured.
				if r.Connected != cfg.Conns || r.MemPerConn == 0 || r.IdleCPU < 0 {
					t.Errorf("idle: %+v", r)
				}
			case Echo:
				if r.Messages == 0 || r.Latency == nil || r.Latency.Count != r.Messages {
					t.Errorf("echo: %+v", r)
				}
			case Push, Broadcast:
				if r.Missing != 0 || r.Delivered == 0 || r.Delivery == nil {
					t.Errorf("%s: %+v", s, r)
				}
			case Rebalance:
				if len(r.Steps) != 2 {
					t.Fatalf("rebalance steps: %+v", r.Steps)
				}
				for _, st := range r.Steps {
					if st.NeedlessClose != 0 || st.Missed != 0 || st.Moved == 0 {
						t.Errorf("rebalance %+v", st)
					}
				}
			}
		})
	}
}

// startDev starts a 3-backend dev cluster whose gateway has cfg (on free
// ports) and shuts it down when the test ends.
func startDev(t *testing.T, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	c, err := devcluster.Start(devcluster.Config{Backends: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Gateway: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
	})
	return c.Gateway()
}

// TestEchoAgainstPlainServer drives the demo's plain WebSocket listener
// (what nginx and HAProxy front in comparisons) in rate mode.
func TestEchoAgainstPlainServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := demo.NewNode(backend.Config{ID: "p1", Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := demo.ServePlain(ln, node, log)
	defer s.Close()
	r, err := Run(context.Background(), Config{Scenario: Echo, Addr: ln.Addr().String(), Conns: 100,
		Rate: 50, Size: 128, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// 100 connections at 50/s for 0.4 s: about 2,000 echoes.
	if r.Messages < 1000 || r.Messages > 3000 || r.Failures != nil {
		t.Fatalf("echo: %d messages, failures %v", r.Messages, r.Failures)
	}
}

// TestRebalanceMigrate runs the rebalance scenario against a dev cluster
// with --rebalance migrate: nobody is closed, every count holds, and each
// step reports its migrations and pauses.
func TestRebalanceMigrate(t *testing.T) {
	g := startDev(t, gateway.Config{Rebalance: gateway.RebalanceMigrate})
	r, err := Run(context.Background(), Config{Scenario: Rebalance, Migrate: true, Target: "wsgate", Addr: g.Addr(),
		Admin: g.AdminAddr(), Conns: 300, Sources: 4, Rate: 20, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failures != nil || r.Drops != 0 || len(r.Steps) != 2 {
		t.Fatalf("failures %v, drops %d, steps %+v", r.Failures, r.Drops, r.Steps)
	}
	for _, st := range r.Steps {
		if st.Moved == 0 || st.Migrated != st.Moved || st.BadCounts != 0 || st.PauseMs == nil || st.PauseMs.Count != int64(st.Moved) ||
			st.RoundTrip == nil || st.NeedlessClose != 0 {
			t.Errorf("%s: %+v (pause %+v)", st.Change, st, st.PauseMs)
		}
	}
}

// TestPauseBetween: quantiles from two samples of the pause histogram.
func TestPauseBetween(t *testing.T) {
	a := parseMigrations([]byte(`wsgate_gateway_migration_pause_seconds_bucket{le="0.001"} 5
wsgate_gateway_migration_pause_seconds_bucket{le="0.002"} 5
wsgate_gateway_migration_pause_seconds_bucket{le="0.004"} 5
wsgate_gateway_migration_pause_seconds_bucket{le="+Inf"} 5
wsgate_gateway_migration_pause_seconds_sum 0.004
wsgate_gateway_migrations_total{result="ok"} 5
`))
	b := parseMigrations([]byte(`wsgate_gateway_migration_pause_seconds_bucket{le="0.001"} 5
wsgate_gateway_migration_pause_seconds_bucket{le="0.002"} 105
wsgate_gateway_migration_pause_seconds_bucket{le="0.004"} 205
wsgate_gateway_migration_pause_seconds_bucket{le="+Inf"} 205
wsgate_gateway_migration_pause_seconds_sum 0.504
wsgate_gateway_migrations_total{result="ok"} 200
wsgate_gateway_migrations_total{result="lost"} 3
`))
	l := pauseBetween(a, b)
	if l == nil || l.Count != 200 || l.P50 != 2 || l.Max != 4 || l.Mean != 2.5 || l.P99 <= 3.9 || l.P99 > 4 {
		t.Fatalf("pause %+v", l)
	}
	if b.byResult["ok"] != 200 || b.byResult["lost"] != 3 {
		t.Fatalf("results %v", b.byResult)
	}
	if pauseBetween(b, b) != nil {
		t.Fatal("no migration between two equal samples, want nil")
	}
}
