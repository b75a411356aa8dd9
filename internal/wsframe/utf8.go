package wsframe

import "encoding/binary"

// UTF8 is a streaming UTF-8 validator for text messages that arrive split
// across frames and reads. The zero value is ready; it holds one byte of
// state and never allocates.
//
// RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
// finds that the byte stream is not, in fact, a valid UTF-8 stream, that
// endpoint MUST _Fail the WebSocket Connection_."
//
// RFC 6455 5.6: "Note that a particular text frame might include a partial
// UTF-8 sequence; however, the whole message MUST contain valid UTF-8."
//
// Feed each piece of a text message as it arrives (failing fast with
// ErrInvalidUTF8 when Feed returns false), call Complete after the final
// fragment, then Reset for the next message. The accepted language is
// exactly that of unicode/utf8.Valid: no surrogates, no overlong forms,
// nothing above U+10FFFF.
type UTF8 struct {
	state uint8
}

// DFA states (Bjoern Hoehrmann, "Flexible and Economical UTF-8 Decoder",
// http://bjoern.hoehrmann.de/utf-8/decoder/dfa/). States are premultiplied
// by 12, the number of byte classes, so the next state is
// utf8Trans[state+utf8Class[b]].
const (
	utf8Accept = 0  // at a code point boundary
	utf8Reject = 12 // sticky failure
)

// utf8Class maps a byte to its class:
//
//	0: 00..7F  ASCII
//	1: 80..8F  continuation
//	9: 90..9F  continuation
//	7: A0..BF  continuation
//	8: C0..C1, F5..FF  never valid (overlong 2-byte lead, > U+10FFFF)
//	2: C2..DF  2-byte lead
//	10: E0     3-byte lead, next byte A0..BF (no overlongs)
//	3: E1..EC, EE..EF  3-byte lead
//	4: ED      3-byte lead, next byte 80..9F (no surrogates D800..DFFF)
//	11: F0     4-byte lead, next byte 90..BF (no overlongs)
//	6: F1..F3  4-byte lead
//	5: F4      4-byte lead, next byte 80..8F (nothing above U+10FFFF)
var utf8Class = [256]uint8{
	// 0x00..0x7F
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	// 0x80..0x9F
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
	// 0xA0..0xBF
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	// 0xC0..0xDF
	8, 8, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	// 0xE0..0xFF
	10, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 11, 6, 6, 6, 5, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
}

// utf8Trans is the transition table, indexed by state+class. It is padded
// to 256 entries (all reject) so a uint8 index needs no bounds check.
//
//	state  0: boundary
//	state 24: one continuation byte left
//	state 36: two continuation bytes left
//	state 48: after E0, need A0..BF
//	state 60: after ED, need 80..9F
//	state 72: after F0, need 90..BF
//	state 84: after F1..F3, need 80..BF
//	state 96: after F4, need 80..8F
var utf8Trans = func() (t [256]uint8) {
	rows := [...]uint8{
		// class: 0   1   2   3   4   5   6   7   8   9  10  11
		0, 12, 24, 36, 60, 96, 84, 12, 12, 12, 48, 72, // state 0
		12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, // state 12 (reject)
		12, 0, 12, 12, 12, 12, 12, 0, 12, 0, 12, 12, // state 24
		12, 24, 12, 12, 12, 12, 12, 24, 12, 24, 12, 12, // state 36
		12, 12, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12, // state 48
		12, 24, 12, 12, 12, 12, 12, 12, 12, 24, 12, 12, // state 60
		12, 12, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12, // state 72
		12, 36, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12, // state 84
		12, 36, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, // state 96
	}
	for i := range t {
		t[i] = utf8Reject
	}
	copy(t[:], rows[:])
	return t
}()

// Whole-code-point fast path: for the class of a lead byte, the sequence
// length (0 for bytes that cannot start a code point) and the range of the
// second byte, matching the DFA rows above. Third and fourth bytes are
// always 80..BF. Sized 16 so class&15 needs no bounds check.
var (
	leadSize = [16]uint8{2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 10: 3, 11: 4}
	leadLo   = [16]uint8{2: 0x80, 3: 0x80, 4: 0x80, 5: 0x80, 6: 0x80, 10: 0xA0, 11: 0x90}
	leadHi   = [16]uint8{2: 0xBF, 3: 0xBF, 4: 0x9F, 5: 0x8F, 6: 0xBF, 10: 0xBF, 11: 0xBF}
)

// asciiMask has the high bit of every byte of a word set.
const asciiMask = 0x8080808080808080

// Feed validates the next piece p of the message. It returns false as soon
// as the bytes fed so far cannot be the start of valid UTF-8; after that it
// keeps returning false until Reset. A code point may be split across calls.
func (u *UTF8) Feed(p []byte) bool {
	s := u.state
	if s == utf8Reject {
		return false
	}
	p = p[:len(p):len(p)]
	for len(p) > 0 {
		if s == utf8Accept {
			c := p[0]
			if c < 0x80 {
				// ASCII fast path. One ASCII byte suggests more, but a
				// short run (a space between words) should not pay for
				// wide loads: go wide only once a first word is ASCII,
				// then skip 64, 16 and 8 bytes at a time.
				if len(p) >= 8 && binary.LittleEndian.Uint64(p[:8])&asciiMask == 0 {
					i := 0
					for ; i+64 <= len(p); i += 64 {
						q := p[i : i+64 : i+64]
						w := binary.LittleEndian.Uint64(q[0:8]) | binary.LittleEndian.Uint64(q[8:16]) |
							binary.LittleEndian.Uint64(q[16:24]) | binary.LittleEndian.Uint64(q[24:32]) |
							binary.LittleEndian.Uint64(q[32:40]) | binary.LittleEndian.Uint64(q[40:48]) |
							binary.LittleEndian.Uint64(q[48:56]) | binary.LittleEndian.Uint64(q[56:64])
						if w&asciiMask != 0 {
							break
						}
					}
					for ; i+16 <= len(p); i += 16 {
						q := p[i : i+16 : i+16]
						if (binary.LittleEndian.Uint64(q[0:8])|binary.LittleEndian.Uint64(q[8:16]))&asciiMask != 0 {
							break
						}
					}
					for ; i+8 <= len(p); i += 8 {
						if binary.LittleEndian.Uint64(p[i:i+8])&asciiMask != 0 {
							break
						}
					}
					p = p[i:]
				}
				for len(p) > 0 && p[0] < 0x80 {
					p = p[1:]
				}
				continue
			}
			if len(p) >= 4 {
				// A whole code point is in p: check it at once with
				// range tests instead of one DFA step per byte; this
				// accepts exactly what the DFA accepts. Branching on
				// the size (rather than p = p[size:]) lets the CPU
				// predict the next position instead of waiting for
				// two dependent table loads.
				k := utf8Class[c] & 15
				lo, hi := leadLo[k], leadHi[k]
				switch leadSize[k] {
				case 2:
					if p[1] < lo || p[1] > hi {
						u.state = utf8Reject
						return false
					}
					p = p[2:]
				case 3:
					if p[1] < lo || p[1] > hi || p[2]&0xC0 != 0x80 {
						u.state = utf8Reject
						return false
					}
					p = p[3:]
				case 4:
					if p[1] < lo || p[1] > hi || p[2]&0xC0 != 0x80 || p[3]&0xC0 != 0x80 {
						u.state = utf8Reject
						return false
					}
					p = p[4:]
				default: // continuation byte, C0, C1, F5..FF
					u.state = utf8Reject
					return false
				}
				continue
			}
		}
		// DFA step: a code point split across pieces, or the last bytes.
		s = utf8Trans[s+utf8Class[p[0]]]
		if s == utf8Reject {
			u.state = s
			return false
		}
		p = p[1:]
	}
	u.state = s
	return true
}

// Complete reports whether everything fed so far is valid UTF-8 with no code
// point left unfinished. Call it at the end of the message.
func (u *UTF8) Complete() bool { return u.state == utf8Accept }

// Reset makes u ready for a new message.
func (u *UTF8) Reset() { u.state = utf8Accept }
