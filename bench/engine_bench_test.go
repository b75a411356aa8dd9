package bench

import (
	"testing"

	"github.com/wsgate/wsgate/internal/wsframe"
)

// countHandler counts messages; the engine's hot path calls it per frame.
type countHandler struct{ n int }

func (h *countHandler) OnOpen(*Conn)                                  {}
func (h *countHandler) OnMessage(_ *Conn, _ wsframe.OpCode, p []byte) { h.n += len(p) }
func (h *countHandler) OnClose(*Conn, int, string)                    {}

// BenchmarkProcessFrames is the client's per-read work: parse 64 server
// frames of 64 bytes from one read buffer and hand each to the handler.
func BenchmarkProcessFrames(b *testing.B) {
	h := &countHandler{}
	e := &Engine{h: h}
	l := &loop{e: e, conns: map[int]*Conn{}}
	c := &Conn{l: l, state: stOpen, fd: -1}
	payload := make([]byte, 64)
	var buf []byte
	for range 64 {
		buf = wsframe.AppendFrame(buf, true, wsframe.OpText, payload)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if rest := l.process(h, c, buf); len(rest) != 0 {
			b.Fatal("frames left over")
		}
	}
}

// BenchmarkStamp is the echo scenario's per-message timestamp write and read.
func BenchmarkStamp(b *testing.B) {
	p := make([]byte, 64)
	b.ReportAllocs()
	var sum int64
	for i := 0; b.Loop(); i++ {
		putStamp(p, int64(i))
		t, _ := stamp(p)
		sum += t
	}
	_ = sum
}

// BenchmarkRecord is one latency sample into the histogram.
func BenchmarkRecord(b *testing.B) {
	h := newHist()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		recordNanos(h, int64(i%5000)*1000)
	}
}
