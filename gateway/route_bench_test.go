package gateway

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkRoute measures the routing step of an upgrade (onBeforeUpgrade:
// origin check, ring lookup, and with a balance factor the bounded-load
// walk, its reservation and the release) for keyed clients on a
// three-node ring. With the factor on, the gateway first holds 30,000
// clients with Zipf-distributed keys, so hot keys' owners are full and
// their walks go on.
func BenchmarkRoute(b *testing.B) {
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.1, 1, 1_000_000-1)
	keys := make([][]byte, 1<<12)
	for i := range keys {
		keys[i] = []byte("user-" + strconv.FormatUint(z.Uint64(), 10))
	}
	for _, f := range []float64{0, 1.25} {
		b.Run("factor="+strconv.FormatFloat(f, 'f', -1, 64), func(b *testing.B) {
			l := testLoop(b, func(c *Config) { c.BalanceFactor = f })
			g, h := l.g, &l.hs
			g.storeLoads(g.ring.Load())
			if f != 0 {
				for i := range 30_000 {
					if _, res := g.routeBounded(keys[i&(len(keys)-1)]); res != nil {
						g.reserved.Add(-1)
						g.clients.Add(1)
					}
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				h.key, h.keyless = keys[i&(len(keys)-1)], false
				if _, err := h.onBeforeUpgrade(); err != nil || h.member == nil {
					b.Fatal(err)
				}
				g.release(h.placed)
				i++
			}
		})
	}
}
