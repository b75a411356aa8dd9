package wsframe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// validPrefix reports whether p can be extended to valid UTF-8: it is valid,
// or its unfinished last code point can be finished with 1-3 more bytes.
// The first added byte is tried as 0x80, 0x90 and 0xA0, which covers every
// second-byte range (80..BF, A0..BF after E0, 80..9F after ED, 90..BF after
// F0, 80..8F after F4); later bytes may be any continuation byte.
func validPrefix(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	q := make([]byte, len(p), len(p)+3)
	copy(q, p)
	for _, c := range []byte{0x80, 0x90, 0xA0} {
		r := append(q[:len(p)], c)
		for k := 0; k < 3; k++ {
			if utf8.Valid(r) {
				return true
			}
			r = append(r, 0x80)
		}
	}
	return false
}

// feedPieces feeds p split at i and j (clamped) and returns the message
// verdict and the Feed result after each piece.
func feedPieces(p []byte, i, j int) (valid bool, feeds [3]bool) {
	i = min(i, len(p))
	j = min(max(j, i), len(p))
	var u UTF8
	feeds[0] = u.Feed(p[:i])
	feeds[1] = u.Feed(p[i:j])
	feeds[2] = u.Feed(p[j:])
	return feeds[2] && u.Complete(), feeds
}

// checkUTF8 checks UTF8 against utf8.Valid for p fed whole and split at i, j.
func checkUTF8(t *testing.T, p []byte, i, j int) {
	t.Helper()
	want := utf8.Valid(p)
	var u UTF8
	if got := u.Feed(p) && u.Complete(); got != want {
		t.Fatalf("whole % x: got %v, utf8.Valid %v", p, got, want)
	}
	got, feeds := feedPieces(p, i, j)
	if got != want {
		t.Fatalf("% x split %d,%d: got %v, utf8.Valid %v", p, i, j, got, want)
	}
	// Feed must fail exactly when the input so far stops being a valid
	// prefix ("false as soon as p cannot be a prefix of valid UTF-8").
	i = min(i, len(p))
	j = min(max(j, i), len(p))
	for k, end := range []int{i, j, len(p)} {
		if vp := validPrefix(p[:end]); feeds[k] != vp {
			t.Fatalf("% x split %d,%d: Feed #%d = %v, valid prefix %v", p, i, j, k, feeds[k], vp)
		}
	}
}

var utf8Cases = []string{
	"",
	"hello",
	"hello, world, this is longer than sixteen bytes of ASCII text!!",
	"κόσμε",
	"Hello-µ@ßöäüàá-UTF-8!!",
	"日本語のテキスト、そして more ASCII after it to hit the word loop",
	"\U0001F600\U0001F601 emoji \U0010FFFF max",
	"\u0080\u07FF\u0800\uFFFF\U00010000",
	"\uD7FF\uE000",
	"\xed\xa0\x80",     // U+D800 surrogate
	"\xed\xbf\xbf",     // U+DFFF surrogate
	"\xc0\x80",         // overlong NUL
	"\xc1\xbf",         // overlong
	"\xe0\x80\x80",     // overlong 3-byte
	"\xe0\x9f\xbf",     // overlong 3-byte
	"\xf0\x80\x80\x80", // overlong 4-byte
	"\xf0\x8f\xbf\xbf", // overlong 4-byte
	"\xf4\x90\x80\x80", // U+110000
	"\xf5\x80\x80\x80", // > U+10FFFF lead
	"\xff",             // never valid
	"\x80",             // lone continuation
	"abc\xbf",          // stray continuation after ASCII
	"\xe2\x82",         // truncated €
	"\xf0\x9f\x98",     // truncated emoji
	"ab\xce",           // truncated 2-byte
	"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", // autobahn 6.x style
	strings.Repeat("a", 100) + "\xe2\x82\xac" + strings.Repeat("b", 100),
	strings.Repeat("a", 100) + "\xe2\x82" + strings.Repeat("b", 100),
	strings.Repeat("a", 31) + "\x80" + strings.Repeat("b", 32),
	strings.Repeat("Ω", 50) + strings.Repeat("x", 40) + "\xf4\x8f\xbf\xbf",
}

func TestUTF8Cases(t *testing.T) {
	for _, s := range utf8Cases {
		p := []byte(s)
		for i := 0; i <= len(p); i++ {
			for j := i; j <= len(p); j++ {
				// Every pair for short inputs; for long ones, middle
				// pieces of up to 4 bytes and every two-piece split.
				if len(p) <= 64 || j-i <= 4 || j == len(p) {
					checkUTF8(t, p, i, j)
				}
			}
		}
	}
}

func TestUTF8StickyAndReset(t *testing.T) {
	var u UTF8
	if u.Feed([]byte("\xff")) {
		t.Fatal("accepted 0xff")
	}
	if u.Feed([]byte("ok")) || u.Complete() {
		t.Fatal("failure not sticky")
	}
	u.Reset()
	if !u.Feed([]byte("ok")) || !u.Complete() {
		t.Fatal("Reset did not clear failure")
	}
	if !u.Feed([]byte("\xe2")) || u.Complete() {
		t.Fatal("unfinished code point reported complete")
	}
	u.Reset()
	if !u.Complete() {
		t.Fatal("Reset did not clear partial code point")
	}
}

// TestUTF8Exhaustive compares with utf8.Valid for every 1- and 2-byte input,
// every 3-byte input with a lead byte at or above 0xC0, and every 4-byte
// input with a 4-byte lead and continuation bytes at range edges. Each input
// is fed whole (DFA path for short input), with ASCII padding (whole code
// point path) and one byte at a time, and 2-byte inputs also between ASCII
// runs so they are reached from the word fast path.
func TestUTF8Exhaustive(t *testing.T) {
	var padded []byte
	check := func(p []byte) {
		want := utf8.Valid(p)
		var u UTF8
		if got := u.Feed(p) && u.Complete(); got != want {
			t.Fatalf("% x: got %v, want %v", p, got, want)
		}
		// With ASCII after it, every lead byte has 4 bytes in view, so
		// the whole-code-point path is taken instead of the DFA.
		padded = append(append(padded[:0], p...), "abcd"...)
		u.Reset()
		if got := u.Feed(padded) && u.Complete(); got != want {
			t.Fatalf("% x: got %v, want %v", padded, got, want)
		}
		u.Reset()
		ok := true
		for i := range p {
			ok = u.Feed(p[i:i+1]) && ok
		}
		if got := ok && u.Complete(); got != want {
			t.Fatalf("% x bytewise: got %v, want %v", p, got, want)
		}
	}
	var buf [4]byte
	for a := 0; a < 256; a++ {
		buf[0] = byte(a)
		check(buf[:1])
		for b := 0; b < 256; b++ {
			buf[1] = byte(b)
			check(buf[:2])
		}
	}
	if testing.Short() {
		return
	}
	for a := 0xC0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			for c := 0; c < 256; c++ {
				buf[0], buf[1], buf[2] = byte(a), byte(b), byte(c)
				check(buf[:3])
			}
		}
	}
	edges := []byte{0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff}
	for a := 0xF0; a < 0xF8; a++ {
		for b := 0; b < 256; b++ {
			for _, c := range edges {
				for _, d := range edges {
					buf = [4]byte{byte(a), byte(b), c, d}
					check(buf[:])
				}
			}
		}
	}
	long := []byte(strings.Repeat("x", 37))
	for a := 0x80; a < 256; a++ {
		for b := 0; b < 256; b++ {
			p := append(append(long[:37:37], byte(a), byte(b)), long...)
			check(p)
		}
	}
}
