package gateway

import (
	"testing"

	"github.com/wsgate/wsgate/internal/wire"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// BenchmarkRelayClientToBackend measures the gateway's work for one 64-byte
// masked client text frame: parse, unmask, validate UTF-8, frame for the
// link, write. Sockets are fakes, so this is the gateway's own cost.
func BenchmarkRelayClientToBackend(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(sizeName(size), func(b *testing.B) {
			// The frame-rate check runs, with a rate this loop cannot reach.
			l := testLoop(b, func(c *Config) { c.MaxFrameRate = 1 << 30 })
			s, c := openSession(l, "bench")
			c.keep = false
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = 'a' + byte(i%26)
			}
			mask := [4]byte{1, 2, 3, 4}
			tmpl := wsframe.AppendMaskedHeader(nil, true, wsframe.OpText, size, mask)
			start := len(tmpl)
			tmpl = append(tmpl, payload...)
			wsframe.MaskBytes(tmpl[start:], mask, 0)
			buf := make([]byte, len(tmpl))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				copy(buf, tmpl) // unmasking works in place, so refill
				c.in = buf
				l.onTraffic(s, c)
			}
			if s.state != stOpen || l.stats.msgsIn.Load() != uint64(b.N) {
				b.Fatalf("state %d, relayed %d of %d", s.state, l.stats.msgsIn.Load(), b.N)
			}
		})
	}
}

// BenchmarkRelayBackendToClient measures one 64-byte wire Message from a
// backend link to its client: parse, look up the session, frame, write.
func BenchmarkRelayBackendToClient(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(sizeName(size), func(b *testing.B) {
			l := testLoop(b, nil)
			s, c := openSession(l, "bench")
			c.keep = false
			k := s.link
			in := wire.AppendFrame(nil, wire.TypeMessage, 0, s.id, make([]byte, size))
			lc := &fakeConn{}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				lc.in = in
				l.linkTraffic(k, lc)
			}
			if l.stats.msgsOut.Load() != uint64(b.N) {
				b.Fatalf("relayed %d of %d", l.stats.msgsOut.Load(), b.N)
			}
		})
	}
}

// BenchmarkBroadcastFanout measures a backend Broadcast to 1,000 sessions
// of one link: framed once, written to each.
func BenchmarkBroadcastFanout(b *testing.B) {
	l := testLoop(b, nil)
	var k *link
	for i := 0; i < 3000 && (k == nil || k.sessions < 1000); i++ {
		s, c := openSession(l, "user-"+itoa(i))
		c.keep = false
		if s.link.node == "a" {
			k = s.link
		}
	}
	in := wire.AppendFrame(nil, wire.TypeBroadcast, 0, 0, make([]byte, 64))
	lc := &fakeConn{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		lc.in = in
		l.linkTraffic(k, lc)
	}
	b.ReportMetric(float64(k.sessions), "clients")
}

func sizeName(n int) string { return itoa(n) + "B" }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
