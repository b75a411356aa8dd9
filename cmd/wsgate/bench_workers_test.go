package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBenchBroadcastWorkers: `wsgate bench` runs the broadcast scenario
// over worker processes (the parent arms them, calls the admin API, and
// takes the latest delivery of any worker), with nothing missing.
func TestBenchBroadcastWorkers(t *testing.T) {
	p := start(t, "dev", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--pprof")
	m := p.waitLog(t, `gateway started.* listen=(\S+) admin=(\S+)`)
	out, err := exec.Command(binary, "bench", "--addr", m[1], "--admin", m[2], "--scenario", "broadcast",
		"--conns", "600", "--procs", "3", "--broadcasts", "2", "--sources", "2", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var row string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "| "+m[1]) {
			row = l
		}
	}
	cells := strings.Split(row, "|")
	if len(cells) < 8 || strings.TrimSpace(cells[len(cells)-2]) != "0" {
		t.Fatalf("broadcast over 3 workers: want 0 missing, got %q\n%s", row, out)
	}
}
