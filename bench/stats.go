package bench

import (
	"sort"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 60 s at 3 significant digits.
const (
	histMin = 1
	histMax = 60_000_000
	histSig = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// recordNanos records a duration given in nanoseconds (clamped to the range).
func recordNanos(h *hdrhistogram.Histogram, ns int64) {
	us := ns / 1000
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	_ = h.RecordValue(us)
}

// Latency is a latency distribution's summary, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// merged returns one histogram holding every value of hs.
func merged(hs ...*hdrhistogram.Histogram) *hdrhistogram.Histogram {
	all := newHist()
	for _, h := range hs {
		if h != nil {
			all.Merge(h)
		}
	}
	return all
}

// summarize merges hs and summarizes the result; nil if nothing was recorded.
func summarize(hs ...*hdrhistogram.Histogram) *Latency {
	all := merged(hs...)
	if all.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return &Latency{
		Count: all.TotalCount(),
		Mean:  all.Mean() / 1000,
		P50:   ms(all.ValueAtQuantile(50)),
		P90:   ms(all.ValueAtQuantile(90)),
		P99:   ms(all.ValueAtQuantile(99)),
		P999:  ms(all.ValueAtQuantile(99.9)),
		Max:   ms(all.Max()),
	}
}

// failures counts failures by reason; safe for concurrent use.
type failures struct {
	mu sync.Mutex
	m  map[string]int
}

func (f *failures) add(reason string) { f.addN(reason, 1) }

// addN counts n failures of reason.
func (f *failures) addN(reason string, n int) {
	f.mu.Lock()
	if f.m == nil {
		f.m = make(map[string]int)
	}
	f.m[reason] += n
	f.mu.Unlock()
}

// snapshot returns a copy (nil when empty).
func (f *failures) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) == 0 {
		return nil
	}
	out := make(map[string]int, len(f.m))
	for k, v := range f.m {
		out[k] = v
	}
	return out
}

// median of xs (0 for none); xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}
