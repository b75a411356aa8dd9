package wsframe

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// maskRef is the RFC 6455 5.3 definition, one byte at a time.
func maskRef(b []byte, mask [4]byte, pos int) int {
	for i := range b {
		b[i] ^= mask[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestMaskBytesMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 4096, 16384 + 3}
	for _, n := range sizes {
		data := randBytes(r, n)
		for pos := 0; pos < 8; pos++ {
			got := append([]byte(nil), data...)
			want := append([]byte(nil), data...)
			gp := MaskBytes(got, testMask, pos)
			wp := maskRef(want, testMask, pos)
			if gp != wp || !bytes.Equal(got, want) {
				t.Fatalf("n=%d pos=%d: offset %d want %d, equal=%v", n, pos, gp, wp, bytes.Equal(got, want))
			}
			// Masking twice is the identity.
			MaskBytes(got, testMask, pos)
			if !bytes.Equal(got, data) {
				t.Fatalf("n=%d pos=%d: mask twice is not identity", n, pos)
			}
		}
	}
}

func TestMaskBytesPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 80; n++ {
		data := randBytes(r, n)
		whole := append([]byte(nil), data...)
		MaskBytes(whole, testMask, 0)
		// Every two-piece split and every three-piece split.
		for i := 0; i <= n; i++ {
			for j := i; j <= n; j++ {
				got := append([]byte(nil), data...)
				pos := MaskBytes(got[:i], testMask, 0)
				pos = MaskBytes(got[i:j], testMask, pos)
				pos = MaskBytes(got[j:], testMask, pos)
				if pos != n%4 || !bytes.Equal(got, whole) {
					t.Fatalf("n=%d split %d,%d: offset %d, equal=%v", n, i, j, pos, bytes.Equal(got, whole))
				}
			}
		}
	}
	// Large payload in random pieces, as a socket would deliver it.
	data := randBytes(r, 1<<20)
	whole := append([]byte(nil), data...)
	MaskBytes(whole, testMask, 0)
	got := append([]byte(nil), data...)
	pos := 0
	for rest := got; len(rest) > 0; {
		k := min(len(rest), 1+r.IntN(5000))
		pos = MaskBytes(rest[:k], testMask, pos)
		rest = rest[k:]
	}
	if !bytes.Equal(got, whole) {
		t.Fatal("random pieces differ from whole")
	}
}
