package wsframe

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	sinkHeader Header
	sinkInt    int
	sinkBool   bool
)

func BenchmarkParseHeader(b *testing.B) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"7bit", []byte{0x81, 0x05}},
		{"7bit-masked", []byte{0x81, 0x85, 1, 2, 3, 4}},
		{"16bit-masked", []byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}},
		{"64bit-masked", []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, n, err := ParseHeader(c.in)
				if err != nil {
					b.Fatal(err)
				}
				sinkInt = n + int(h.Length) + int(h.Op) + int(h.Mask[0])
			}
		})
	}
	// Copying the whole returned Header at once (e.g. into connection
	// state) pays a store-forwarding stall; see Header.Parse.
	b.Run("7bit-masked-copy", func(b *testing.B) {
		in := []byte{0x81, 0x85, 1, 2, 3, 4}
		b.ReportAllocs()
		for b.Loop() {
			h, n, err := ParseHeader(in)
			if err != nil {
				b.Fatal(err)
			}
			sinkHeader, sinkInt = h, n
		}
	})
	b.Run("Parse-7bit-masked", func(b *testing.B) {
		in := []byte{0x81, 0x85, 1, 2, 3, 4}
		var h Header
		b.ReportAllocs()
		for b.Loop() {
			n, err := h.Parse(in)
			if err != nil {
				b.Fatal(err)
			}
			sinkInt = n + int(h.Length)
		}
	})
	b.Run("error", func(b *testing.B) {
		in := []byte{0x83, 0x00}
		b.ReportAllocs()
		for b.Loop() {
			_, _, err := ParseHeader(in)
			if err == nil {
				b.Fatal("no error")
			}
		}
	})
}

func BenchmarkAppendHeader(b *testing.B) {
	dst := make([]byte, 0, MaxHeaderLen)
	for _, n := range []int{64, 1024, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendHeader(dst[:0], true, OpBinary, n)
			}
		})
	}
	b.Run("masked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst = AppendMaskedHeader(dst[:0], true, OpBinary, 1024, testMask)
		}
	})
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func BenchmarkMaskBytes(b *testing.B) {
	for _, n := range []int{64, 16 << 10} {
		buf := make([]byte, n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				sinkInt = MaskBytes(buf, testMask, 1)
			}
		})
	}
}

func BenchmarkUTF8(b *testing.B) {
	inputs := []struct {
		name string
		p    []byte
	}{
		{"ascii-64B", []byte(strings.Repeat("0123456789abcdef", 4))},
		{"ascii-16KiB", []byte(strings.Repeat("0123456789abcdef", 1024))},
		// Mixed: Cyrillic/Greek 2-byte, CJK 3-byte, emoji 4-byte, ASCII.
		{"mixed-64B", []byte(repeatTo("Привет, κόσμε! 日本語 \U0001F600 ok ", 64))},
		{"mixed-16KiB", []byte(repeatTo("Привет, κόσμε! 日本語 \U0001F600 ok ", 16<<10))},
	}
	for _, in := range inputs {
		b.Run(in.name+"/Feed", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.p)))
			var u UTF8
			for b.Loop() {
				u.Reset()
				sinkBool = u.Feed(in.p) && u.Complete()
			}
			if !sinkBool {
				b.Fatal("rejected valid input")
			}
		})
		b.Run(in.name+"/utf8.Valid", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.p)))
			for b.Loop() {
				sinkBool = utf8.Valid(in.p)
			}
		})
	}
}

func BenchmarkParseClosePayload(b *testing.B) {
	p := []byte("\x03\xe9server going away for maintenance")
	b.ReportAllocs()
	for b.Loop() {
		c, _, err := ParseClosePayload(p)
		if err != nil {
			b.Fatal(err)
		}
		sinkInt = int(c)
	}
}

// repeatTo repeats s to exactly n bytes, then drops a code point split at
// the end, so the result is valid UTF-8 of n-3..n bytes.
func repeatTo(s string, n int) string {
	r := strings.Repeat(s, n/len(s)+1)[:n]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	return r
}
