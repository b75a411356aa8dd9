package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		maxBody int
		want    Header
		err     error
	}{
		{"hello", AppendHeader(nil, TypeHello, 0, 0, 9), 0, Header{TypeHello, 0, 0, 9}, nil},
		{"message", AppendHeader(nil, TypeMessage, FlagBinary|FlagMore, 0xdeadbeef, 100), 100, Header{TypeMessage, 5, 0xdeadbeef, 100}, nil},
		{"error type", AppendHeader(nil, TypeError, 0, 0, 2), 0, Header{TypeError, 0, 0, 2}, nil},
		{"empty body", AppendHeader(nil, TypePong, 0, 0, 0), 0, Header{TypePong, 0, 0, 0}, nil},
		{"extra bytes ignored", append(AppendHeader(nil, TypeClose, 0, 7, 2), 1, 2, 3), 0, Header{TypeClose, 0, 7, 2}, nil},
		{"short", AppendHeader(nil, TypeHello, 0, 0, 9)[:9], 0, Header{}, ErrShort},
		{"nil", nil, 0, Header{}, ErrShort},
		{"length < 6", []byte{0, 0, 0, 5, 1, 0, 0, 0, 0, 0}, 0, Header{}, ErrMalformed},
		{"length 0", make([]byte, 10), 0, Header{}, ErrMalformed},
		{"unknown type 0", []byte{0, 0, 0, 6, 0, 0, 0, 0, 0, 0}, 0, Header{}, ErrUnknownType},
		{"unknown type 0x0F", []byte{0, 0, 0, 6, 0x0F, 0, 0, 0, 0, 0}, 0, Header{}, ErrUnknownType},
		{"unknown type 0x7E", []byte{0, 0, 0, 6, 0x7E, 0, 0, 0, 0, 0}, 0, Header{}, ErrUnknownType},
		{"too large", AppendHeader(nil, TypeMessage, 0, 1, 101), 100, Header{}, ErrTooLarge},
		{"too large default", AppendHeader(nil, TypeMessage, 0, 1, DefaultMaxBody+1), 0, Header{}, ErrTooLarge},
		{"max default", AppendHeader(nil, TypeMessage, 0, 1, DefaultMaxBody), -1, Header{TypeMessage, 0, 1, DefaultMaxBody}, nil},
		{"length 0xffffffff", []byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 1}, 1 << 40, Header{TypeMessage, 0, 1, 0xffffffff - 6}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.in, tt.maxBody)
			if !errors.Is(err, tt.err) || h != tt.want {
				t.Fatalf("ParseHeader(%x) = %+v, %v; want %+v, %v", tt.in, h, err, tt.want, tt.err)
			}
		})
	}
}

func TestAppendHeaderLayout(t *testing.T) {
	got := AppendHeader([]byte{0xAA}, TypeOpen, FlagKeyless, 0x01020304, 0x10)
	want := []byte{0xAA, 0, 0, 0, 0x16, 0x02, 0x01, 1, 2, 3, 4}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendHeader = %x, want %x", got, want)
	}
	f := AppendFrame(nil, TypeMessage, FlagBinary, 9, []byte("hey"))
	if want := []byte{0, 0, 0, 9, 3, 1, 0, 0, 0, 9, 'h', 'e', 'y'}; !bytes.Equal(f, want) {
		t.Fatalf("AppendFrame = %x, want %x", f, want)
	}
}

func TestTypeString(t *testing.T) {
	for ty := range 256 {
		s := Type(ty).String()
		if Type(ty).Known() == strings.HasPrefix(s, "Type(") {
			t.Errorf("Type(%d).String() = %q, Known = %v", ty, s, Type(ty).Known())
		}
	}
	if s := Type(0x42).String(); s != "Type(0x42)" {
		t.Errorf("got %q", s)
	}
	if RoleBackend.String() != "backend" || Role(7).String() != "Role(7)" {
		t.Errorf("Role.String: %q %q", RoleBackend, Role(7))
	}
}

// body splits a whole frame into header and body, checking the header.
func body(t *testing.T, frame []byte, wantType Type) (Header, []byte) {
	t.Helper()
	h, err := ParseHeader(frame, 1<<30)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	if h.Type != wantType || HeaderSize+h.BodyLen != len(frame) {
		t.Fatalf("header %+v for a %d-byte frame, want type %v", h, len(frame), wantType)
	}
	return h, frame[HeaderSize:]
}

func TestHello(t *testing.T) {
	for _, want := range []Hello{
		{Version: Version, Role: RoleGateway, MaxBody: DefaultMaxBody, NodeID: "gw-1"},
		{Version: Version, Role: RoleBackend, MaxBody: MinMaxBody, NodeID: ""},
		{Version: 0xFFFF, Role: RoleBackend, MaxBody: 0xFFFFFFFF, NodeID: strings.Repeat("n", 300)},
	} {
		h, b := body(t, AppendHello(nil, want), TypeHello)
		if h.Session != 0 || h.Flags != 0 {
			t.Errorf("header %+v", h)
		}
		got, err := ParseHello(b)
		if err != nil || got != want {
			t.Errorf("ParseHello = %+v, %v; want %+v", got, err, want)
		}
	}
	long := Hello{Version: Version, Role: RoleGateway, MaxBody: 1 << 20, NodeID: strings.Repeat("x", MaxString+10)}
	_, b := body(t, AppendHello(nil, long), TypeHello)
	if got, err := ParseHello(b); err != nil || got.NodeID != long.NodeID[:MaxString] {
		t.Errorf("long node id: %d bytes, %v", len(got.NodeID), err)
	}

	good := AppendHello(nil, Hello{Version: Version, Role: RoleGateway, MaxBody: 4096, NodeID: "ab"})[HeaderSize:]
	for _, bad := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"fixed part short", good[:8]},
		{"id short", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
		{"role 0", func() []byte { b := bytes.Clone(good); b[2] = 0; return b }()},
		{"role 3", func() []byte { b := bytes.Clone(good); b[2] = 3; return b }()},
	} {
		if _, err := ParseHello(bad.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseHello(%x) err = %v", bad.name, bad.b, err)
		}
	}
}

func TestHelloCheck(t *testing.T) {
	ok := Hello{Version: Version, Role: RoleGateway, MaxBody: DefaultMaxBody, NodeID: "gw"}
	tests := []struct {
		h    Hello
		peer Role
		err  error
	}{
		{ok, RoleGateway, nil},
		{ok, RoleBackend, ErrRole},
		{Hello{Version: Version + 1, Role: RoleGateway, MaxBody: DefaultMaxBody, NodeID: ""}, RoleGateway, ErrVersion},
		{Hello{Version: Version, Role: RoleGateway, MaxBody: MinMaxBody - 1, NodeID: ""}, RoleGateway, ErrMalformed},
	}
	for _, tt := range tests {
		if err := tt.h.Check(tt.peer); !errors.Is(err, tt.err) {
			t.Errorf("%+v.Check(%v) = %v, want %v", tt.h, tt.peer, err, tt.err)
		}
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		keyless             bool
		key, remote, target string
	}{
		{false, "u1", "10.0.0.1:5555", "/ws/u1?x=1"},
		{true, "", "[::1]:80", "/ws"},
		{false, "", "", ""},
		{false, "ключ", "a", strings.Repeat("/", 5000)},
	}
	for _, tt := range tests {
		f := AppendOpen(nil, 42, tt.keyless, []byte(tt.key), []byte(tt.remote), []byte(tt.target))
		h, b := body(t, f, TypeOpen)
		if h.Session != 42 || (h.Flags == FlagKeyless) != tt.keyless || h.Flags&^FlagKeyless != 0 {
			t.Errorf("header %+v", h)
		}
		o, err := ParseOpen(b)
		if err != nil || string(o.Key) != tt.key || string(o.RemoteAddr) != tt.remote || string(o.Target) != tt.target {
			t.Errorf("ParseOpen = %q %q %q, %v", o.Key, o.RemoteAddr, o.Target, err)
		}
	}
	good := AppendOpen(nil, 1, false, []byte("k"), []byte("r"), []byte("t"))[HeaderSize:]
	for _, bad := range [][]byte{
		nil, {0}, {0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0, 0},
		good[:len(good)-1],
		append(bytes.Clone(good), 'x'),
		{0, 5, 'a', 'b', 0, 0, 0, 0},
	} {
		if _, err := ParseOpen(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseOpen(%x) err = %v", bad, err)
		}
	}
}

func TestClose(t *testing.T) {
	tests := []struct {
		code       uint16
		reason     string
		wantReason string
	}{
		{1000, "", ""},
		{1006, "bye", "bye"},
		{4000, strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{1001, strings.Repeat("a", 200), strings.Repeat("a", 123)},
		// 122 ASCII bytes then a 3-byte rune: the rune must not be split.
		{1000, strings.Repeat("a", 122) + "€", strings.Repeat("a", 122)},
		{1000, strings.Repeat("a", 120) + "€€", strings.Repeat("a", 120) + "€"},
	}
	for _, tt := range tests {
		h, b := body(t, AppendClose(nil, 77, tt.code, []byte(tt.reason)), TypeClose)
		if h.Session != 77 {
			t.Errorf("session %d", h.Session)
		}
		code, reason, err := ParseClose(b)
		if err != nil || code != tt.code || string(reason) != tt.wantReason {
			t.Errorf("ParseClose = %d %q %v, want %d %q", code, reason, err, tt.code, tt.wantReason)
		}
	}
	for _, bad := range [][]byte{
		nil, {3},
		append([]byte{3, 232}, strings.Repeat("a", 124)...),
	} {
		if _, _, err := ParseClose(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseClose(%x) err = %v", bad, err)
		}
	}
	// Invalid UTF-8 is passed through for the receiver to clean up.
	if code, reason, err := ParseClose([]byte{3, 232, 0xe2, 0x82}); err != nil || code != 1000 || string(reason) != "\xe2\x82" {
		t.Errorf("ParseClose(bad UTF-8) = %d %q %v", code, reason, err)
	}
}

func TestTruncateReason(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("é", 100), strings.Repeat("😀", 40), strings.Repeat("x", 121) + "😀"} {
		got := TruncateReason(s)
		if len(got) > MaxCloseReason || !strings.HasPrefix(s, got) || !utf8.ValidString(got) {
			t.Errorf("TruncateReason(%q) = %q", s, got)
		}
		if len(s) <= MaxCloseReason && got != s {
			t.Errorf("TruncateReason(%q) changed a short reason", s)
		}
		if len(s) > MaxCloseReason && len(got) < MaxCloseReason-3 {
			t.Errorf("TruncateReason(%q) cut too much: %d", s, len(got))
		}
	}
}

func TestKeyPayload(t *testing.T) {
	type codec struct {
		typ    Type
		append func(key, payload []byte) []byte
		parse  func([]byte) ([]byte, []byte, error)
	}
	codecs := []codec{
		{TypeSendKey, func(k, p []byte) []byte { return AppendSendKey(nil, FlagBinary, k, p) }, ParseSendKey},
		{TypePush, func(k, p []byte) []byte { return AppendPush(nil, 99, k, p) }, ParsePush},
	}
	for _, c := range codecs {
		for _, tt := range []struct{ key, payload string }{
			{"u1", "hello"}, {"", ""}, {"k", ""}, {"", "p"}, {"user", strings.Repeat("z", 70000)},
		} {
			h, b := body(t, c.append([]byte(tt.key), []byte(tt.payload)), c.typ)
			switch c.typ {
			case TypeSendKey:
				if h.Flags != FlagBinary || h.Session != 0 {
					t.Errorf("SendKey header %+v", h)
				}
			case TypePush:
				if h.Session != 99 {
					t.Errorf("Push header %+v", h)
				}
			}
			k, p, err := c.parse(b)
			if err != nil || string(k) != tt.key || string(p) != tt.payload {
				t.Errorf("%v: parse = %q, %d bytes, %v", c.typ, k, len(p), err)
			}
		}
		for _, bad := range [][]byte{nil, {0}, {0, 3, 'a', 'b'}} {
			if _, _, err := c.parse(bad); !errors.Is(err, ErrMalformed) {
				t.Errorf("%v: parse(%x) err = %v", c.typ, bad, err)
			}
		}
	}
}

func TestPushResult(t *testing.T) {
	for _, n := range []uint32{0, 1, 0xFFFFFFFF} {
		h, b := body(t, AppendPushResult(nil, 5, n), TypePushResult)
		got, err := ParsePushResult(b)
		if h.Session != 5 || err != nil || got != n {
			t.Errorf("PushResult %d: %+v %d %v", n, h, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, {1, 2, 3, 4, 5}} {
		if _, err := ParsePushResult(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePushResult(%x) err = %v", bad, err)
		}
	}
}

func TestError(t *testing.T) {
	for _, tt := range []struct {
		code uint16
		text string
	}{{CodeUnsupportedVersion, "unsupported version"}, {CodeProtocol, ""}, {0xFFFF, "x"}} {
		h, b := body(t, AppendError(nil, tt.code, tt.text), TypeError)
		code, text, err := ParseError(b)
		if h.Session != 0 || err != nil || code != tt.code || string(text) != tt.text {
			t.Errorf("Error: %+v %d %q %v", h, code, text, err)
		}
	}
	if _, _, err := ParseError([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseError short: %v", err)
	}
}

func TestPing(t *testing.T) {
	d := [PingSize]byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, ty := range []Type{TypePing, TypePong} {
		f := AppendPing(nil, d)
		if ty == TypePong {
			f = AppendPong(nil, d)
		}
		_, b := body(t, f, ty)
		if got, err := ParsePing(b); err != nil || got != d {
			t.Errorf("%v: %x %v", ty, got, err)
		}
	}
	if _, err := ParsePing(make([]byte, 7)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePing short: %v", err)
	}
}

// TestExampleDump pins the hex dumps shown in docs/protocol.md.
func TestExampleDump(t *testing.T) {
	hello := AppendHello(nil, Hello{Version: 1, Role: RoleGateway, MaxBody: DefaultMaxBody, NodeID: "gw-1"})
	if got, want := hex.EncodeToString(hello), "0000001301000000000000010100100000000467772d31"; got != want {
		t.Errorf("hello dump %s, want %s", got, want)
	}
	reply := AppendHello(nil, Hello{Version: 1, Role: RoleBackend, MaxBody: DefaultMaxBody, NodeID: "node-a"})
	if got, want := hex.EncodeToString(reply), "000000150100000000000001020010000000066e6f64652d61"; got != want {
		t.Errorf("backend hello dump %s, want %s", got, want)
	}
	msg := AppendFrame(nil, TypeMessage, 0, 7, []byte("hi"))
	if got, want := hex.EncodeToString(msg), "0000000803000000000768"+"69"; got != want {
		t.Errorf("message dump %s, want %s", got, want)
	}
	cl := AppendClose(nil, 7, 1000, []byte("bye"))
	if got, want := hex.EncodeToString(cl), "0000000b04000000000703e8627965"; got != want {
		t.Errorf("close dump %s, want %s", got, want)
	}
	open := AppendOpen(nil, 7, false, []byte("u1"), []byte("10.0.0.5:51234"), []byte("/ws/u1?x=1"))
	if got, want := hex.EncodeToString(open), "00000026020000000007000275310"+"00e31302e302e302e353a3531323334000a2f77732f75313f783d31"; got != want {
		t.Errorf("open dump %s, want %s", got, want)
	}
}

func TestReaderFrames(t *testing.T) {
	var stream []byte
	stream = AppendHello(stream, Hello{Version: Version, Role: RoleGateway, MaxBody: 1 << 20, NodeID: "gw"})
	stream = AppendOpen(stream, 1, false, []byte("u1"), []byte("1.2.3.4:5"), []byte("/ws/u1"))
	big := bytes.Repeat([]byte("0123456789"), 30000) // 300 kB: forces growth
	stream = AppendFrame(stream, TypeMessage, FlagBinary, 1, big)
	for i := range 3000 {
		stream = AppendFrame(stream, TypeMessage, 0, uint32(i), []byte("small message"))
	}
	stream = AppendClose(stream, 1, 1000, []byte("bye"))

	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
		"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			r := NewReader(mk(), 0)
			var out []byte
			frames := 0
			for {
				h, b, err := r.ReadFrame()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("frame %d: %v", frames, err)
				}
				out = AppendFrame(out, h.Type, h.Flags, h.Session, b)
				frames++
			}
			if frames != 3004 || !bytes.Equal(out, stream) {
				t.Fatalf("read %d frames, equal=%v", frames, bytes.Equal(out, stream))
			}
			if _, _, err := r.ReadFrame(); err != io.EOF {
				t.Fatalf("after EOF: %v", err)
			}
			if r.Buffered() != 0 {
				t.Fatalf("Buffered = %d", r.Buffered())
			}
		})
	}
}

func TestReaderShrinks(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, TypeMessage, 0, 1, make([]byte, 500<<10))
	for range shrinkAfter + 10 {
		stream = AppendFrame(stream, TypeMessage, 0, 1, []byte("x"))
	}
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 0)
	if _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if len(r.buf) < 500<<10 {
		t.Fatalf("buffer %d after a 500 kB frame", len(r.buf))
	}
	for range shrinkAfter + 10 {
		if _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.buf) != initialBuf {
		t.Fatalf("buffer %d after many small frames, want %d", len(r.buf), initialBuf)
	}
}

func TestReaderErrors(t *testing.T) {
	ok := AppendFrame(nil, TypeMessage, 0, 1, []byte("abc"))
	tests := []struct {
		name    string
		stream  []byte
		maxBody int
		frames  int
		err     error
	}{
		{"empty", nil, 0, 0, io.EOF},
		{"partial header", ok[:5], 0, 0, io.ErrUnexpectedEOF},
		{"partial body", ok[:len(ok)-1], 0, 0, io.ErrUnexpectedEOF},
		{"frame then partial", append(bytes.Clone(ok), ok[:11]...), 0, 1, io.ErrUnexpectedEOF},
		{"too large", append(bytes.Clone(ok), AppendHeader(nil, TypeMessage, 0, 1, 11)...), 10, 1, ErrTooLarge},
		{"huge length, no alloc", []byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 1}, 0, 0, ErrTooLarge},
		{"unknown type", []byte{0, 0, 0, 6, 0x20, 0, 0, 0, 0, 0}, 0, 0, ErrUnknownType},
		{"bad length", []byte{0, 0, 0, 1, 3, 0, 0, 0, 0, 0}, 0, 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.stream), tt.maxBody)
			for i := range tt.frames {
				if _, _, err := r.ReadFrame(); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			for range 2 { // sticky
				if _, _, err := r.ReadFrame(); !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			}
			if len(r.buf) > initialBuf {
				t.Fatalf("buffer grew to %d", len(r.buf))
			}
		})
	}
	// The stream's own error passes through.
	boom := errors.New("boom")
	r := NewReader(iotest.ErrReader(boom), 0)
	if _, _, err := r.ReadFrame(); err != boom {
		t.Fatalf("err = %v", err)
	}
	// A reader that never makes progress.
	r = NewReader(zeroReader{}, 0)
	if _, _, err := r.ReadFrame(); err != io.ErrNoProgress {
		t.Fatalf("err = %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	hdr := AppendHeader(nil, TypeMessage, 0, 1, 10)
	key, addr, target := []byte("u1"), []byte("1.2.3.4:5"), []byte("/ws/u1")
	payload := []byte("payload")
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendFrame(buf[:0], TypeMessage, 0, 1, payload)
		buf = AppendOpen(buf[:0], 1, false, key, addr, target)
		buf = AppendClose(buf[:0], 1, 1000, payload)
		buf = AppendSendKey(buf[:0], 0, key, payload)
		buf = AppendPushResult(buf[:0], 1, 2)
		if _, err := ParseHeader(hdr, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseHeader(hdr[:3], 0); err == nil {
			t.Fatal("no error")
		}
		if _, err := ParseOpen(buf); err == nil {
			t.Fatal("no error")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per run", allocs)
	}
}

func TestAuth(t *testing.T) {
	a := Auth{Step: AuthResponse, Nonce: NewNonce()}
	a.MAC = LinkMAC([]byte("secret"), RoleBackend, "gw", "b1", [NonceSize]byte{1}, a.Nonce)
	h, b := body(t, AppendAuth(nil, a), TypeAuth)
	if h.Session != 0 {
		t.Fatalf("session %d", h.Session)
	}
	got, err := ParseAuth(b)
	if err != nil || got != a {
		t.Fatalf("ParseAuth: %+v %v, want %+v", got, err, a)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte{}, b...), 0), append([]byte{4}, b[1:]...), append([]byte{0}, b[1:]...)} {
		if _, err := ParseAuth(bad); err == nil {
			t.Errorf("ParseAuth(%x) accepted", bad)
		}
	}
	// The proof depends on the role, both ids, both nonces and the secret.
	base := LinkMAC([]byte("k"), RoleGateway, "g", "b", [NonceSize]byte{1}, [NonceSize]byte{2})
	for i, other := range [][MACSize]byte{
		LinkMAC([]byte("k"), RoleBackend, "g", "b", [NonceSize]byte{1}, [NonceSize]byte{2}),
		LinkMAC([]byte("k2"), RoleGateway, "g", "b", [NonceSize]byte{1}, [NonceSize]byte{2}),
		LinkMAC([]byte("k"), RoleGateway, "gb", "", [NonceSize]byte{1}, [NonceSize]byte{2}),
		LinkMAC([]byte("k"), RoleGateway, "g", "b", [NonceSize]byte{2}, [NonceSize]byte{2}),
		LinkMAC([]byte("k"), RoleGateway, "g", "b", [NonceSize]byte{1}, [NonceSize]byte{3}),
	} {
		if CheckMAC(other, base) {
			t.Errorf("variant %d has the same MAC", i)
		}
	}
	if !CheckMAC(base, LinkMAC([]byte("k"), RoleGateway, "g", "b", [NonceSize]byte{1}, [NonceSize]byte{2})) {
		t.Error("MAC not reproducible")
	}
}
