package wsframe

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"unicode/utf8"
)

func FuzzParseHeader(f *testing.F) {
	seeds := [][]byte{
		{}, {0x81}, {0x81, 0x05}, {0x82, 126, 0x01, 0x00}, {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x81, 0x85, 1, 2, 3, 4}, {0x02, 0xfe, 0x01, 0x00, 1, 2, 3, 4},
		{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4, 0xaa},
		{0x88, 0x00}, {0x08, 0x00}, {0x89, 126, 0, 126}, {0xc1, 0x00}, {0x83, 0x00},
		{0x82, 126, 0, 5}, {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Code != CloseProtocolError || n != 0 || h != (Header{}) {
				t.Fatalf("% x: %+v, %d, %v", b, h, n, err)
			}
			// Errors depend only on bytes already seen.
			more := append(append([]byte(nil), b...), make([]byte, MaxHeaderLen)...)
			if _, _, err2 := ParseHeader(more); err2 != err {
				t.Fatalf("% x: error %v became %v with more input", b, err, err2)
			}
			return
		}
		if n == 0 {
			if h != (Header{}) || len(b) >= MaxHeaderLen {
				t.Fatalf("% x: need more with %+v, len %d", b, h, len(b))
			}
			return
		}
		if n < MinHeaderLen || n > MaxHeaderLen || n > len(b) {
			t.Fatalf("% x: n = %d", b, n)
		}
		if h.Rsv != 0 || h.Length < 0 || (h.Op.IsControl() && (!h.Fin || h.Length > MaxControlPayload)) {
			t.Fatalf("% x: accepted invalid header %+v", b, h)
		}
		if h.Length > math.MaxInt {
			return // cannot re-encode through an int on this platform
		}
		var enc []byte
		if h.Masked {
			enc = AppendMaskedHeader(nil, h.Fin, h.Op, int(h.Length), h.Mask)
		} else {
			enc = AppendHeader(nil, h.Fin, h.Op, int(h.Length))
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("re-encoding %+v: % x, want % x", h, enc, b[:n])
		}
		if h2, n2, err2 := ParseHeader(enc); err2 != nil || n2 != n || h2 != h {
			t.Fatalf("re-parse: %+v, %d, %v", h2, n2, err2)
		}
		for k := 0; k < n; k++ {
			if h2, n2, err2 := ParseHeader(b[:k]); err2 != nil || n2 != 0 || h2 != (Header{}) {
				t.Fatalf("% x prefix %d: %+v, %d, %v", b, k, h2, n2, err2)
			}
		}
	})
}

func FuzzUTF8(f *testing.F) {
	for _, s := range utf8Cases {
		f.Add([]byte(s), uint16(len(s)/3), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, p []byte, s1, s2 uint16) {
		i := int(s1) % (len(p) + 1)
		j := i + int(s2)%(len(p)-i+1)
		checkUTF8(t, p, i, j)
		// Two pieces, and a one-byte-at-a-time feed.
		want := utf8.Valid(p)
		if got, _ := feedPieces(p, i, len(p)); got != want {
			t.Fatalf("% x split %d: got %v, want %v", p, i, got, want)
		}
		var u UTF8
		ok := true
		for k := range p {
			ok = u.Feed(p[k:k+1]) && ok
		}
		if got := ok && u.Complete(); got != want {
			t.Fatalf("% x bytewise: got %v, want %v", p, got, want)
		}
	})
}

func FuzzParseClosePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03})
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte("\x03\xe9bye"))
	f.Add([]byte("\x03\xed"))
	f.Add([]byte("\x0f\xa0\xff"))
	f.Add([]byte("\x13\x87κόσμε"))
	f.Fuzz(func(t *testing.T, p []byte) {
		code, reason, err := ParseClosePayload(p)
		// Expected outcome, written out independently.
		var wantErr error
		switch {
		case len(p) == 0:
		case len(p) == 1 || len(p) > 125:
			wantErr = ErrCloseLength
		case !closeCodeAllowed(binary.BigEndian.Uint16(p)):
			wantErr = ErrCloseCode
		case !utf8.Valid(p[2:]):
			wantErr = ErrCloseReason
		}
		if err != wantErr {
			t.Fatalf("% x: err %v, want %v", p, err, wantErr)
		}
		if err != nil {
			if code != 0 || reason != nil {
				t.Fatalf("% x: %d %q with error", p, code, reason)
			}
			return
		}
		if len(p) == 0 {
			if code != CloseNoStatus || reason != nil {
				t.Fatalf("empty: %d %q", code, reason)
			}
			return
		}
		if code != binary.BigEndian.Uint16(p) || !bytes.Equal(reason, p[2:]) {
			t.Fatalf("% x: %d %q", p, code, reason)
		}
		// Round trip through a close frame.
		frame := AppendClose(nil, code, string(reason))
		h, n, err := ParseHeader(frame)
		if err != nil || n == 0 || h.Op != OpClose || int(h.Length) != len(frame)-n {
			t.Fatalf("AppendClose(%d, %q) = % x: %+v %v", code, reason, frame, h, err)
		}
		c2, r2, err := ParseClosePayload(frame[n:])
		if err != nil || c2 != code || !bytes.Equal(r2, reason) {
			t.Fatalf("round trip %d %q: %d %q %v", code, reason, c2, r2, err)
		}
	})
}

func FuzzMaskBytes(f *testing.F) {
	f.Add([]byte("hello, websocket"), uint32(0x37fa213d), uint8(0), uint16(3), uint16(7))
	f.Add(make([]byte, 100), uint32(0xffffffff), uint8(3), uint16(33), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, key uint32, pos uint8, s1, s2 uint16) {
		var mask [4]byte
		binary.LittleEndian.PutUint32(mask[:], key)
		p := int(pos)
		want := append([]byte(nil), data...)
		wantPos := maskRef(want, mask, p)

		whole := append([]byte(nil), data...)
		if got := MaskBytes(whole, mask, p); got != wantPos || !bytes.Equal(whole, want) {
			t.Fatalf("whole: offset %d want %d", got, wantPos)
		}

		i := int(s1) % (len(data) + 1)
		j := i + int(s2)%(len(data)-i+1)
		got := append([]byte(nil), data...)
		q := MaskBytes(got[:i], mask, p)
		q = MaskBytes(got[i:j], mask, q)
		q = MaskBytes(got[j:], mask, q)
		if q != wantPos || !bytes.Equal(got, want) {
			t.Fatalf("pieces %d,%d: offset %d want %d", i, j, q, wantPos)
		}
		MaskBytes(got, mask, p)
		if !bytes.Equal(got, data) {
			t.Fatal("masking twice is not the identity")
		}
	})
}
