package wsframe

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// closeCodeAllowed is the IANA-registry rule written out independently of
// ValidCloseCode.
func closeCodeAllowed(c uint16) bool {
	switch c {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014:
		return true
	}
	return c >= 3000 && c <= 4999
}

// parseCloseFrame parses a whole close frame made by AppendClose or
// AppendMaskedClose.
func parseCloseFrame(t *testing.T, f []byte) (uint16, []byte, error) {
	t.Helper()
	h, n, err := ParseHeader(f)
	if err != nil || n == 0 || h.Op != OpClose || !h.Fin || int64(len(f)-n) != h.Length {
		t.Fatalf("close frame % x: %+v, %d, %v", f, h, n, err)
	}
	p := append([]byte(nil), f[n:]...)
	if h.Masked {
		MaskBytes(p, h.Mask, 0)
	}
	return ParseClosePayload(p)
}

func TestValidCloseCodeAll(t *testing.T) {
	for c := 0; c <= 0xFFFF; c++ {
		code := uint16(c)
		if got, want := ValidCloseCode(code), closeCodeAllowed(code); got != want {
			t.Fatalf("ValidCloseCode(%d) = %v", c, got)
		}
		var p [2]byte
		p[0], p[1] = byte(code>>8), byte(code)
		gc, reason, err := ParseClosePayload(p[:])
		if closeCodeAllowed(code) {
			if err != nil || gc != code || len(reason) != 0 {
				t.Fatalf("ParseClosePayload(%d) = %d, %q, %v", c, gc, reason, err)
			}
		} else if err != ErrCloseCode || gc != 0 || reason != nil {
			t.Fatalf("ParseClosePayload(%d) = %d, %q, %v; want ErrCloseCode", c, gc, reason, err)
		}
	}
	for _, c := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535} {
		if ValidCloseCode(c) {
			t.Errorf("ValidCloseCode(%d) = true", c)
		}
	}
}

func TestParseClosePayload(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		code   uint16
		reason string
		err    *Error
	}{
		{"empty", nil, CloseNoStatus, "", nil},
		{"empty non-nil", []byte{}, CloseNoStatus, "", nil},
		{"one byte", []byte{0x03}, 0, "", ErrCloseLength},
		{"code only", []byte{0x03, 0xe8}, CloseNormal, "", nil},
		{"code and reason", []byte("\x03\xe9bye"), CloseGoingAway, "bye", nil},
		{"utf-8 reason", []byte("\x0f\xa0κόσμε"), 4000, "κόσμε", nil},
		{"125 bytes", append([]byte{0x03, 0xe8}, strings.Repeat("r", 123)...), CloseNormal, strings.Repeat("r", 123), nil},
		{"126 bytes", append([]byte{0x03, 0xe8}, strings.Repeat("r", 124)...), 0, "", ErrCloseLength},
		{"1005 on wire", []byte{0x03, 0xed}, 0, "", ErrCloseCode},
		{"1006 on wire", []byte{0x03, 0xee}, 0, "", ErrCloseCode},
		{"0 on wire", []byte{0x00, 0x00}, 0, "", ErrCloseCode},
		{"invalid utf-8", []byte("\x03\xe8\xff"), 0, "", ErrCloseReason},
		{"truncated utf-8", []byte("\x03\xe8ab\xe2\x82"), 0, "", ErrCloseReason},
		{"surrogate", []byte("\x03\xe8\xed\xa0\x80"), 0, "", ErrCloseReason},
		{"bad code wins over bad utf-8", []byte("\x00\x01\xff"), 0, "", ErrCloseCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, err := ParseClosePayload(tt.in)
			if code != tt.code || string(reason) != tt.reason || (tt.err == nil && err != nil) || (tt.err != nil && err != tt.err) {
				t.Fatalf("got %d, %q, %v; want %d, %q, %v", code, reason, err, tt.code, tt.reason, tt.err)
			}
			if tt.err != nil {
				wantCode := CloseProtocolError
				if tt.err == ErrCloseReason {
					wantCode = CloseInvalidPayload
				}
				if err.(*Error).Code != wantCode {
					t.Fatalf("error code %d, want %d", err.(*Error).Code, wantCode)
				}
			}
		})
	}
}

func TestAppendCloseRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		name   string
		code   uint16
		reason string
		want   string // reason after truncation
	}{
		{"normal no reason", CloseNormal, "", ""},
		{"going away", CloseGoingAway, "server shutting down", "server shutting down"},
		{"private", 4999, "custom", "custom"},
		{"123 bytes", CloseNormal, long[:123], long[:123]},
		{"124 bytes", CloseNormal, long[:124], long[:123]},
		{"long", CloseTooBig, long, long[:123]},
		// 2-byte runes: 61*2 = 122 bytes fit, the 62nd would end at 124.
		{"2-byte boundary", ClosePolicyViolation, strings.Repeat("é", 100), strings.Repeat("é", 61)},
		// 'a' + 30 4-byte runes = 121 bytes, the 31st would end at 125.
		{"4-byte boundary", CloseInternalError, "a" + strings.Repeat("\U0001F600", 40), "a" + strings.Repeat("\U0001F600", 30)},
		// 'ab' + 30 4-byte runes = 122; the 31st ends at 126, cut 3 bytes back.
		{"4-byte boundary 2", CloseInternalError, "ab" + strings.Repeat("\U0001F600", 40), "ab" + strings.Repeat("\U0001F600", 30)},
		{"3-byte exact", CloseServiceRestart, strings.Repeat("€", 41), strings.Repeat("€", 41)},
		{"3-byte boundary", CloseServiceRestart, strings.Repeat("€", 42), strings.Repeat("€", 41)},
		{"invalid reason dropped", CloseTryAgainLater, "bad\xffreason", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, masked := range []bool{false, true} {
				var f []byte
				if masked {
					f = AppendMaskedClose([]byte("xx"), tt.code, tt.reason, testMask)
				} else {
					f = AppendClose([]byte("xx"), tt.code, tt.reason)
				}
				if string(f[:2]) != "xx" {
					t.Fatal("dst clobbered")
				}
				code, reason, err := parseCloseFrame(t, f[2:])
				if err != nil || code != tt.code || string(reason) != tt.want {
					t.Fatalf("masked=%v: got %d, %q, %v; want %d, %q", masked, code, reason, err, tt.code, tt.want)
				}
				if len(reason) > MaxCloseReason || !utf8.Valid(reason) {
					t.Fatalf("bad reason %q", reason)
				}
			}
		})
	}
}

func TestAppendCloseEmpty(t *testing.T) {
	for _, code := range []uint16{0, CloseNoStatus} {
		f := AppendClose(nil, code, "ignored")
		if !bytes.Equal(f, []byte{0x88, 0x00}) {
			t.Fatalf("AppendClose(%d) = % x", code, f)
		}
		code2, reason, err := parseCloseFrame(t, f)
		if err != nil || code2 != CloseNoStatus || reason != nil {
			t.Fatalf("parse: %d %q %v", code2, reason, err)
		}
		f = AppendMaskedClose(nil, code, "ignored", testMask)
		if !bytes.Equal(f, append([]byte{0x88, 0x80}, testMask[:]...)) {
			t.Fatalf("AppendMaskedClose(%d) = % x", code, f)
		}
	}
	// Errors echo straight into a close frame.
	f := AppendClose(nil, ErrCloseReason.Code, ErrCloseReason.Reason)
	if code, reason, err := parseCloseFrame(t, f); err != nil || code != CloseInvalidPayload || string(reason) != ErrCloseReason.Reason {
		t.Fatalf("echo error: %d %q %v", code, reason, err)
	}
}
