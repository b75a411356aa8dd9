package gateway

import (
	"testing"
	"time"
)

func TestWindowQuantile(t *testing.T) {
	w := newWindow([]float64{0.001, 0.01, 0.1, 1}, time.Hour)
	if w.snapshot() != nil {
		t.Fatal("an empty window has a snapshot")
	}
	for range 98 {
		w.observe(0.0005)
	}
	w.observe(0.05)
	w.observe(0.5)
	h := w.snapshot()
	if got := quantile(h, 0.5); got != 0.001 {
		t.Errorf("p50 = %v, want 0.001", got)
	}
	if got := quantile(h, 0.99); got != 0.1 {
		t.Errorf("p99 = %v, want 0.1", got)
	}
	if got := quantile(h, 1); got != 1 {
		t.Errorf("p100 = %v, want 1", got)
	}
	// Two periods later everything has rotated out.
	w.since = w.since.Add(-3 * time.Hour)
	if w.snapshot() != nil {
		t.Error("old observations stayed in the window")
	}
}

func TestDeltas(t *testing.T) {
	got := deltas(map[string]float64{"a": 3, "b": 1, "c": 5}, map[string]float64{"a": 1, "c": 5})
	if got != "a ×2, b ×1" {
		t.Errorf("deltas = %q", got)
	}
}

func TestHistory(t *testing.T) {
	h := history[int]{max: 3}
	for i := range 5 {
		h.push(i)
	}
	if got := h.all(); len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Errorf("all = %v, want [2 3 4]", got)
	}
}
