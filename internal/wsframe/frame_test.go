package wsframe

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func TestParseHeaderValid(t *testing.T) {
	mk := [4]byte{1, 2, 3, 4}
	tests := []struct {
		name string
		in   []byte
		want Header
		n    int
	}{
		{"text 7-bit 5", []byte{0x81, 0x05}, Header{Fin: true, Op: OpText, Length: 5}, 2},
		{"binary 7-bit 0", []byte{0x82, 0x00}, Header{Fin: true, Op: OpBinary}, 2},
		{"binary 7-bit 125", []byte{0x82, 125}, Header{Fin: true, Op: OpBinary, Length: 125}, 2},
		{"text no fin", []byte{0x01, 0x03}, Header{Op: OpText, Length: 3}, 2},
		{"continuation", []byte{0x00, 0x03}, Header{Op: OpContinuation, Length: 3}, 2},
		{"continuation fin", []byte{0x80, 0x03}, Header{Fin: true, Op: OpContinuation, Length: 3}, 2},
		{"16-bit 126", []byte{0x82, 126, 0x00, 126}, Header{Fin: true, Op: OpBinary, Length: 126}, 4},
		{"16-bit 256", []byte{0x82, 126, 0x01, 0x00}, Header{Fin: true, Op: OpBinary, Length: 256}, 4},
		{"16-bit 65535", []byte{0x82, 126, 0xff, 0xff}, Header{Fin: true, Op: OpBinary, Length: 65535}, 4},
		{"64-bit 65536", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, Header{Fin: true, Op: OpBinary, Length: 65536}, 10},
		{"64-bit 1<<32", []byte{0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0}, Header{Fin: true, Op: OpBinary, Length: 1 << 32}, 10},
		{"64-bit max", []byte{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Header{Fin: true, Op: OpBinary, Length: math.MaxInt64}, 10},
		{"masked 7-bit", []byte{0x81, 0x85, 1, 2, 3, 4}, Header{Fin: true, Op: OpText, Masked: true, Mask: mk, Length: 5}, 6},
		{"masked 7-bit 0", []byte{0x81, 0x80, 1, 2, 3, 4}, Header{Fin: true, Op: OpText, Masked: true, Mask: mk}, 6},
		{"masked 16-bit", []byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}, Header{Fin: true, Op: OpBinary, Masked: true, Mask: mk, Length: 256}, 8},
		{"masked 64-bit", []byte{0x02, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, Header{Op: OpBinary, Masked: true, Mask: mk, Length: 65536}, 14},
		{"close empty", []byte{0x88, 0x00}, Header{Fin: true, Op: OpClose}, 2},
		{"close 125 masked", []byte{0x88, 0x80 | 125, 1, 2, 3, 4}, Header{Fin: true, Op: OpClose, Masked: true, Mask: mk, Length: 125}, 6},
		{"ping", []byte{0x89, 0x04}, Header{Fin: true, Op: OpPing, Length: 4}, 2},
		{"pong masked", []byte{0x8a, 0x84, 1, 2, 3, 4}, Header{Fin: true, Op: OpPong, Masked: true, Mask: mk, Length: 4}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseHeader(tt.in)
			if err != nil || n != tt.n || h != tt.want {
				t.Fatalf("ParseHeader(% x) = %+v, %d, %v; want %+v, %d, nil", tt.in, h, n, err, tt.want, tt.n)
			}
			// Trailing payload bytes do not change the result.
			withPayload := append(append([]byte(nil), tt.in...), 0xff, 0x81, 0x7f, 0x00)
			if h2, n2, err := ParseHeader(withPayload); err != nil || n2 != n || h2 != h {
				t.Fatalf("with payload: %+v, %d, %v", h2, n2, err)
			}
			// Every strict prefix means "need more".
			for k := 0; k < len(tt.in); k++ {
				if h, n, err := ParseHeader(tt.in[:k]); err != nil || n != 0 || h != (Header{}) {
					t.Fatalf("prefix %d: %+v, %d, %v; want need more", k, h, n, err)
				}
			}
		})
	}
	if h, n, err := ParseHeader(nil); err != nil || n != 0 || h != (Header{}) {
		t.Fatalf("nil: %+v, %d, %v", h, n, err)
	}
}

func TestParseHeaderViolations(t *testing.T) {
	type tc struct {
		name string
		in   []byte
		want *Error
	}
	tests := []tc{
		{"rsv1", []byte{0x80 | 0x40 | 0x1, 0x00}, ErrReservedBits},
		{"rsv2", []byte{0x80 | 0x20 | 0x1, 0x00}, ErrReservedBits},
		{"rsv3", []byte{0x80 | 0x10 | 0x2, 0x00}, ErrReservedBits},
		{"rsv all", []byte{0xf1, 0x00}, ErrReservedBits},
		{"rsv on control", []byte{0xc8, 0x00}, ErrReservedBits},
		{"control len 126", []byte{0x88, 126, 0x00, 0x7e}, ErrControlTooLong},
		{"control len 127", []byte{0x89, 127, 0, 0, 0, 0, 0, 1, 0, 0}, ErrControlTooLong},
		{"masked control len 126", []byte{0x8a, 0x80 | 126}, ErrControlTooLong},
		{"16-bit length 0", []byte{0x82, 126, 0x00, 0x00}, ErrNonMinimalLength},
		{"16-bit length 124", []byte{0x82, 126, 0x00, 124}, ErrNonMinimalLength},
		{"16-bit length 125", []byte{0x82, 126, 0x00, 125}, ErrNonMinimalLength},
		{"masked 16-bit length 125", []byte{0x82, 0x80 | 126, 0x00, 125}, ErrNonMinimalLength},
		{"64-bit length 0", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0}, ErrNonMinimalLength},
		{"64-bit length 125", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 125}, ErrNonMinimalLength},
		{"64-bit length 126", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 126}, ErrNonMinimalLength},
		{"64-bit length 65535", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, ErrNonMinimalLength},
		{"masked 64-bit length 65535", []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, ErrNonMinimalLength},
		{"64-bit msb", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrLengthMSB},
		{"64-bit all ones", []byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrLengthMSB},
		{"masked 64-bit msb", []byte{0x02, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, ErrLengthMSB},
	}
	for op := 0x3; op <= 0xF; op++ {
		if op >= 0x8 && op <= 0xA {
			continue
		}
		tests = append(tests,
			tc{"reserved opcode " + OpCode(op).String(), []byte{0x80 | byte(op), 0x00}, ErrReservedOpcode},
			tc{"reserved opcode no fin " + OpCode(op).String(), []byte{byte(op), 0x80}, ErrReservedOpcode})
	}
	for _, op := range []OpCode{OpClose, OpPing, OpPong} {
		tests = append(tests,
			tc{"fragmented " + op.String(), []byte{byte(op), 0x00}, ErrFragmentedControl},
			tc{"fragmented masked " + op.String(), []byte{byte(op), 0x80, 1, 2, 3, 4}, ErrFragmentedControl},
			tc{"long " + op.String(), []byte{0x80 | byte(op), 126, 0x00, 126}, ErrControlTooLong})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseHeader(tt.in)
			if err != tt.want || n != 0 || h != (Header{}) {
				t.Fatalf("ParseHeader(% x) = %+v, %d, %v; want %v", tt.in, h, n, err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CloseProtocolError {
				t.Fatalf("error %v is not a 1002 *Error", err)
			}
			if len(e.Reason) > MaxCloseReason {
				t.Fatalf("reason too long: %q", e.Reason)
			}
			// More bytes (mask key, payload) give the same error.
			more := append(append([]byte(nil), tt.in...), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
			if _, _, err := ParseHeader(more); err != tt.want {
				t.Fatalf("with more bytes: %v", err)
			}
			// Shorter than the 2-byte fixed header is need more.
			if h, n, err := ParseHeader(tt.in[:1]); err != nil || n != 0 || h != (Header{}) {
				t.Fatalf("1 byte: %+v, %d, %v", h, n, err)
			}
		})
	}
}

func TestParseHeaderEveryPrefix(t *testing.T) {
	// Exhaustive over the first two bytes: whatever they are, a 1-byte
	// prefix is need more, and errors come only from the listed sentinels.
	sentinels := map[error]bool{
		ErrReservedBits: true, ErrReservedOpcode: true, ErrControlTooLong: true,
		ErrFragmentedControl: true, ErrLengthMSB: true, ErrNonMinimalLength: true,
	}
	buf := make([]byte, MaxHeaderLen)
	for b0 := 0; b0 < 256; b0++ {
		for b1 := 0; b1 < 256; b1++ {
			buf[0], buf[1] = byte(b0), byte(b1)
			for i := 2; i < len(buf); i++ {
				buf[i] = 0x01
			}
			h, n, err := ParseHeader(buf)
			if err != nil {
				if !sentinels[err] {
					t.Fatalf("% x: unexpected error %v", buf, err)
				}
				continue
			}
			if n < MinHeaderLen || n > MaxHeaderLen {
				t.Fatalf("% x: n = %d", buf, n)
			}
			for k := 0; k < n; k++ {
				if h2, n2, err2 := ParseHeader(buf[:k]); err2 != nil || n2 != 0 || h2 != (Header{}) {
					t.Fatalf("% x prefix %d: %+v, %d, %v", buf, k, h2, n2, err2)
				}
			}
			_ = h
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	lengths := []int{0, 1, 124, 125, 126, 127, 1000, 65534, 65535, 65536, 1 << 20, 1<<32 - 1, 1 << 32, math.MaxInt64}
	ops := []OpCode{OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong}
	for _, op := range ops {
		for _, fin := range []bool{false, true} {
			if op.IsControl() && !fin {
				continue
			}
			for _, length := range lengths {
				if op.IsControl() && length > MaxControlPayload {
					continue
				}
				for _, masked := range []bool{false, true} {
					var b []byte
					want := Header{Fin: fin, Op: op, Masked: masked, Length: int64(length)}
					if masked {
						want.Mask = testMask
						b = AppendMaskedHeader([]byte("prefix"), fin, op, length, testMask)
						if got := MaskedHeaderLen(length); got != len(b)-6 {
							t.Fatalf("MaskedHeaderLen(%d) = %d, encoded %d", length, got, len(b)-6)
						}
					} else {
						b = AppendHeader([]byte("prefix"), fin, op, length)
						if got := HeaderLen(length); got != len(b)-6 {
							t.Fatalf("HeaderLen(%d) = %d, encoded %d", length, got, len(b)-6)
						}
					}
					if string(b[:6]) != "prefix" {
						t.Fatalf("dst prefix clobbered: %q", b)
					}
					h, n, err := ParseHeader(b[6:])
					if err != nil || n != len(b)-6 || h != want {
						t.Fatalf("round trip %+v: got %+v, %d, %v", want, h, n, err)
					}
				}
			}
		}
	}
}

func TestHeaderLen(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {math.MaxInt64, 10},
	} {
		if got := HeaderLen(c.n); got != c.want {
			t.Errorf("HeaderLen(%d) = %d, want %d", c.n, got, c.want)
		}
		if got := MaskedHeaderLen(c.n); got != c.want+4 {
			t.Errorf("MaskedHeaderLen(%d) = %d, want %d", c.n, got, c.want+4)
		}
	}
}

func TestAppendHeaderNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for negative length")
		}
	}()
	AppendHeader(nil, true, OpBinary, -1)
}

func TestAppendFrame(t *testing.T) {
	for _, size := range []int{0, 5, 125, 126, 70000} {
		payload := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		orig := append([]byte(nil), payload...)

		f := AppendFrame(nil, true, OpBinary, payload)
		h, n, err := ParseHeader(f)
		if err != nil || h.Masked || h.Length != int64(size) || !bytes.Equal(f[n:], payload) {
			t.Fatalf("AppendFrame %d: %+v %d %v", size, h, n, err)
		}

		f = AppendMaskedFrame(nil, false, OpText, payload, testMask)
		if !bytes.Equal(payload, orig) {
			t.Fatal("AppendMaskedFrame modified payload")
		}
		h, n, err = ParseHeader(f)
		if err != nil || !h.Masked || h.Fin || h.Op != OpText || h.Mask != testMask || h.Length != int64(size) {
			t.Fatalf("AppendMaskedFrame %d: %+v %d %v", size, h, n, err)
		}
		MaskBytes(f[n:], h.Mask, 0)
		if !bytes.Equal(f[n:], payload) {
			t.Fatalf("AppendMaskedFrame %d: payload does not unmask", size)
		}
	}
}

func TestOpCode(t *testing.T) {
	for op := OpCode(0); op < 16; op++ {
		if got, want := op.IsControl(), op >= 8; got != want {
			t.Errorf("%v.IsControl() = %v", op, got)
		}
	}
	if OpText.String() != "text" || OpPong.String() != "pong" || OpCode(0xB).String() != "opcode(0x0b)" {
		t.Errorf("String: %q %q %q", OpText, OpPong, OpCode(0xB))
	}
}

func TestErrorString(t *testing.T) {
	if got := ErrReservedOpcode.Error(); got != "wsframe: reserved opcode (close 1002)" {
		t.Errorf("Error() = %q", got)
	}
	for _, e := range []*Error{
		ErrReservedBits, ErrReservedOpcode, ErrControlTooLong, ErrFragmentedControl, ErrLengthMSB,
		ErrNonMinimalLength, ErrUnmaskedFrame, ErrMaskedFrame, ErrUnexpectedContinuation,
		ErrExpectedContinuation, ErrInvalidUTF8, ErrTooBig, ErrCloseLength, ErrCloseCode, ErrCloseReason,
	} {
		if !strings.HasPrefix(e.Error(), "wsframe: ") || len(e.Reason) > MaxCloseReason || !ValidCloseCode(e.Code) {
			t.Errorf("bad error %#v", e)
		}
	}
}

func TestFragmentation(t *testing.T) {
	type step struct {
		h      Header
		wantOp OpCode
		err    error
		open   bool
	}
	hdr := func(fin bool, op OpCode) Header { return Header{Fin: fin, Op: op} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"single", []step{{hdr(true, OpText), OpText, nil, false}, {hdr(true, OpBinary), OpBinary, nil, false}}},
		{"fragmented with control", []step{
			{hdr(false, OpBinary), OpBinary, nil, true},
			{hdr(true, OpPing), OpPing, nil, true},
			{hdr(false, OpContinuation), OpBinary, nil, true},
			{hdr(true, OpClose), OpClose, nil, true},
			{hdr(true, OpContinuation), OpBinary, nil, false},
			{hdr(true, OpText), OpText, nil, false},
		}},
		{"continuation first", []step{{hdr(true, OpContinuation), 0, ErrUnexpectedContinuation, false}}},
		{"continuation after end", []step{
			{hdr(false, OpText), OpText, nil, true},
			{hdr(true, OpContinuation), OpText, nil, false},
			{hdr(false, OpContinuation), 0, ErrUnexpectedContinuation, false},
		}},
		{"interleaved", []step{
			{hdr(false, OpText), OpText, nil, true},
			{hdr(true, OpBinary), 0, ErrExpectedContinuation, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fragmentation
			for i, s := range tt.steps {
				op, err := f.Next(s.h)
				if err != s.err || (err == nil && op != s.wantOp) || f.InMessage() != s.open {
					t.Fatalf("step %d %+v: got %v, %v, open %v", i, s.h, op, err, f.InMessage())
				}
			}
			f.Reset()
			if f.InMessage() {
				t.Fatal("Reset left a message open")
			}
		})
	}
}

func TestHeaderParseInto(t *testing.T) {
	stale := Header{Fin: true, Rsv: 5, Op: OpPing, Masked: true, Mask: [4]byte{9, 9, 9, 9}, Length: 77}
	// Need more and errors leave h unchanged.
	for _, in := range [][]byte{nil, {0x81}, {0x81, 0x85, 1, 2}, {0x83, 0x00}, {0x82, 126, 0, 1}} {
		h := stale
		if _, _ = h.Parse(in); h != stale {
			t.Fatalf("% x: h changed to %+v", in, h)
		}
	}
	// Success overwrites every field, including a stale mask.
	h := stale
	n, err := h.Parse([]byte{0x02, 126, 0x01, 0x00})
	if want := (Header{Op: OpBinary, Length: 256}); err != nil || n != 4 || h != want {
		t.Fatalf("got %+v, %d, %v; want %+v", h, n, err, want)
	}
}
