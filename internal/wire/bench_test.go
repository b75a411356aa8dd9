package wire

import (
	"testing"
)

func BenchmarkAppendFrame(b *testing.B) {
	payload := make([]byte, 128)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(HeaderSize + len(payload)))
	for b.Loop() {
		buf = AppendFrame(buf[:0], TypeMessage, FlagBinary, 42, payload)
	}
}

func BenchmarkParseHeader(b *testing.B) {
	hdr := AppendHeader(nil, TypeMessage, FlagBinary, 42, 128)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(hdr, DefaultMaxBody); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader serves the same stream over and over.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func benchmarkReadFrame(b *testing.B, size int) {
	var stream []byte
	for range 64 {
		stream = AppendFrame(stream, TypeMessage, 0, 7, make([]byte, size))
	}
	r := NewReader(&loopReader{b: stream}, 0)
	b.ReportAllocs()
	b.SetBytes(int64(HeaderSize + size))
	for b.Loop() {
		if _, _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderReadFrame(b *testing.B) {
	b.Run("128B", func(b *testing.B) { benchmarkReadFrame(b, 128) })
	b.Run("64KiB", func(b *testing.B) { benchmarkReadFrame(b, 64<<10) })
}

// BenchmarkLinkMAC is the link authentication's cost: two of these per
// link (one each way) at the handshake, none per frame afterwards.
func BenchmarkLinkMAC(b *testing.B) {
	secret := []byte("cluster-secret-0123456789abcdef")
	ng, nb := NewNonce(), NewNonce()
	b.ReportAllocs()
	for range b.N {
		_ = LinkMAC(secret, RoleBackend, "gateway-1", "backend-7", ng, nb)
	}
}
