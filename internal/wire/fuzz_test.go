package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(AppendHeader(nil, TypeHello, 0, 0, 9), 0)
	f.Add(AppendHeader(nil, TypeMessage, FlagMore, 1, 100), 50)
	f.Add([]byte{0, 0, 0, 5, 1, 0, 0, 0, 0, 0}, 0)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff}, -1)
	f.Fuzz(func(t *testing.T, b []byte, maxBody int) {
		h, err := ParseHeader(b, maxBody)
		if err != nil {
			if h != (Header{}) {
				t.Fatalf("non-zero header %+v with error %v", h, err)
			}
			return
		}
		if !h.Type.Known() || h.BodyLen < 0 {
			t.Fatalf("accepted %+v", h)
		}
		limit := maxBody
		if limit <= 0 {
			limit = DefaultMaxBody
		}
		if h.BodyLen > limit {
			t.Fatalf("body %d over max %d", h.BodyLen, limit)
		}
		if got := AppendHeader(nil, h.Type, h.Flags, h.Session, h.BodyLen); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("round trip %x != %x", got, b[:HeaderSize])
		}
	})
}

// FuzzParseBodies feeds one body to every Parse* function; whatever a parser
// accepts must re-encode to the same bytes.
func FuzzParseBodies(f *testing.F) {
	f.Add(AppendHello(nil, Hello{Version: Version, Role: RoleGateway, MaxBody: 1 << 20, NodeID: "gw"})[HeaderSize:])
	f.Add(AppendOpen(nil, 1, false, []byte("u1"), []byte("1.2.3.4:5"), []byte("/ws/u1?x=1"))[HeaderSize:])
	f.Add(AppendOpenClaims(nil, 1, false, []byte("u1"), []byte("1.2.3.4:5"), []byte("/ws/u1"), []byte(`{"sub":"u1"}`))[HeaderSize:])
	f.Add(AppendClose(nil, 1, 1000, []byte("bye"))[HeaderSize:])
	f.Add(AppendSendKey(nil, 0, []byte("k"), []byte("payload"))[HeaderSize:])
	f.Add(AppendPushResult(nil, 1, 3)[HeaderSize:])
	f.Add(AppendError(nil, CodeProtocol, "bad frame")[HeaderSize:])
	f.Add(AppendAuth(nil, Auth{Step: AuthResponse, Nonce: [NonceSize]byte{1}, MAC: [MACSize]byte{2}})[HeaderSize:])
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		frame := func(b []byte) []byte { return b[HeaderSize:] }

		if h, err := ParseHello(body); err == nil {
			if got := frame(AppendHello(nil, h)); !bytes.Equal(got, body) {
				t.Fatalf("Hello %+v: %x != %x", h, got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseHello: %v", err)
		}

		if o, err := ParseOpen(body); err == nil {
			if got := frame(AppendOpenClaims(nil, 1, false, o.Key, o.RemoteAddr, o.Target, o.Claims)); !bytes.Equal(got, body) {
				t.Fatalf("Open: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseOpen: %v", err)
		}

		if code, reason, err := ParseClose(body); err == nil {
			if got := frame(AppendClose(nil, 1, code, reason)); !bytes.Equal(got, body) {
				t.Fatalf("Close: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseClose: %v", err)
		}

		if k, p, err := ParseSendKey(body); err == nil {
			if got := frame(AppendSendKey(nil, 0, k, p)); !bytes.Equal(got, body) {
				t.Fatalf("SendKey: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseSendKey: %v", err)
		}

		if k, p, err := ParsePush(body); err == nil {
			if got := frame(AppendPush(nil, 1, k, p)); !bytes.Equal(got, body) {
				t.Fatalf("Push: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParsePush: %v", err)
		}

		if a, err := ParseAuth(body); err == nil {
			if got := frame(AppendAuth(nil, a)); !bytes.Equal(got, body) {
				t.Fatalf("Auth: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseAuth: %v", err)
		}

		if n, err := ParsePushResult(body); err == nil {
			if got := frame(AppendPushResult(nil, 1, n)); !bytes.Equal(got, body) {
				t.Fatalf("PushResult: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParsePushResult: %v", err)
		}

		if code, text, err := ParseError(body); err == nil {
			if got := frame(AppendError(nil, code, string(text))); !bytes.Equal(got, body) {
				t.Fatalf("Error: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseError: %v", err)
		}

		if d, err := ParsePing(body); err == nil {
			if got := frame(AppendPing(nil, d)); !bytes.Equal(got, body) {
				t.Fatalf("Ping: %x != %x", got, body)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParsePing: %v", err)
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// FuzzReader reads arbitrary streams in arbitrary chunk sizes: it must never
// panic, never return a body over maxBody, and the frames it returns must
// re-encode to exactly the bytes it consumed.
func FuzzReader(f *testing.F) {
	var seed []byte
	seed = AppendHello(seed, Hello{Version: Version, Role: RoleGateway, MaxBody: 1 << 20, NodeID: "gw"})
	seed = AppendOpen(seed, 1, false, []byte("u1"), []byte("a"), []byte("/ws"))
	seed = AppendFrame(seed, TypeMessage, FlagBinary|FlagMore, 1, []byte("part one"))
	seed = AppendFrame(seed, TypeMessage, FlagBinary|FlagContinuation, 1, []byte("part two"))
	f.Add(seed, uint16(3), uint16(1000))
	f.Add(seed[:len(seed)-3], uint16(1), uint16(0))
	f.Add([]byte{0, 0, 0, 6, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0xff}, uint16(7), uint16(64))
	f.Fuzz(func(t *testing.T, stream []byte, chunk, maxBody uint16) {
		limit := int(maxBody)
		if limit == 0 {
			limit = DefaultMaxBody
		}
		r := NewReader(&chunkReader{stream, int(chunk%64) + 1}, int(maxBody))
		var out []byte
		for {
			h, b, err := r.ReadFrame()
			if err != nil {
				switch {
				case err == io.EOF:
					if !bytes.Equal(out, stream) {
						t.Fatalf("EOF after %d of %d bytes", len(out), len(stream))
					}
				case err == io.ErrUnexpectedEOF, errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnknownType), errors.Is(err, ErrMalformed):
					if !bytes.HasPrefix(stream, out) || len(out) == len(stream) {
						t.Fatalf("%v after %d of %d bytes", err, len(out), len(stream))
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if len(r.buf) > HeaderSize+limit && len(r.buf) > initialBuf {
					t.Fatalf("buffer %d over limit %d", len(r.buf), limit)
				}
				return
			}
			if len(b) != h.BodyLen || h.BodyLen > limit {
				t.Fatalf("body %d, header %+v, limit %d", len(b), h, limit)
			}
			out = AppendFrame(out, h.Type, h.Flags, h.Session, b)
			if !bytes.HasPrefix(stream, out) {
				t.Fatalf("frame %+v does not re-encode to the consumed bytes", h)
			}
		}
	})
}
