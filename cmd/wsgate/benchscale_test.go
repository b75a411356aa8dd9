package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBenchScale: `wsgate bench scale` at a small size builds its cluster
// (a backend and a gateway joined through Redis and RabbitMQ under private
// names), connects every client once from two worker processes, paced,
// then measures idle, broadcasts and pushes to random users held by
// either worker, with no failure, and writes the report's JSON with the
// memory figures.
func TestBenchScale(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "scale.json")
	p := start(t, "bench", "scale", "--conns", "300", "--backends", "1", "--procs", "2", "--connect-rate", "1000",
		"--pushes", "60", "--broadcasts", "2", "--duration", "1s", "--json", file, "--out", dir, "--quiet")
	if err := p.cmd.Wait(); err != nil {
		p.log.mu.Lock()
		t.Fatalf("bench scale: %v\n%s", err, p.log.all.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Conns, Gateways int
		GatewayRSS      int64 `json:"gateway_rss_bytes_per_conn"`
		Limits          []string
		Results         []struct {
			Scenario  string
			Connected int
			Failures  map[string]int
			Missing   int
			Delivered int
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if rep.Conns != 300 || rep.Gateways != 1 || rep.GatewayRSS <= 0 {
		t.Fatalf("report %+v", rep)
	}
	if !slices.ContainsFunc(rep.Limits, func(l string) bool { return strings.HasPrefix(l, "links warmed before the run") }) {
		t.Errorf("no warm-up before the run in the report's notes %q", rep.Limits)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Scenario] = true
		if len(r.Failures) > 0 || r.Missing > 0 {
			t.Errorf("%s: failures %v, missing %d", r.Scenario, r.Failures, r.Missing)
		}
		if want := map[string]int{"connect": 300}[r.Scenario]; r.Connected != want {
			t.Errorf("%s: connected %d, want %d", r.Scenario, r.Connected, want)
		}
		if want := map[string]int{"push": 60, "broadcast": 600}[r.Scenario]; r.Delivered != want {
			t.Errorf("%s: delivered %d, want %d", r.Scenario, r.Delivered, want)
		}
	}
	for _, s := range []string{"connect", "idle", "broadcast", "push"} {
		if !seen[s] {
			t.Errorf("no %s result in the report", s)
		}
	}
}
