// Package wsframe is an allocation-free RFC 6455 WebSocket frame codec.
//
// It is written for event-loop servers that parse frames straight out of an
// inbound buffer: every decoder works on the bytes it is given, reports
// "need more" (never an error) for short input, never panics, never
// allocates, and validates sizes before the caller has to allocate anything.
//
// Decoding a frame from a buffer b:
//
//	h, n, err := wsframe.ParseHeader(b)
//	switch {
//	case err != nil: // send AppendClose(dst, err.(*wsframe.Error).Code, ...)
//	case n == 0:     // need more bytes
//	default:         // payload is b[n : n+h.Length] once that much has arrived;
//	                 // unmask it (in pieces if need be) with MaskBytes.
//	}
//
// Header.Parse does the same into a Header the caller keeps (for example in
// its connection state) and is cheaper on the hot path; see its doc.
package wsframe

import (
	"encoding/binary"
)

// OpCode is a frame opcode (the low 4 bits of the first header byte).
type OpCode uint8

// Opcodes defined by RFC 6455 5.2.
const (
	OpContinuation OpCode = 0x0
	OpText         OpCode = 0x1
	OpBinary       OpCode = 0x2
	OpClose        OpCode = 0x8
	OpPing         OpCode = 0x9
	OpPong         OpCode = 0xA
)

// IsControl reports whether o is a control opcode (0x8-0xF).
//
// RFC 6455 5.5: "Control frames are identified by opcodes where the most
// significant bit of the opcode is 1."
func (o OpCode) IsControl() bool { return o&0x8 != 0 }

// String returns the opcode's name, or its hex value for reserved opcodes.
func (o OpCode) String() string {
	switch o {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	const hex = "0123456789abcdef"
	return "opcode(0x" + hex[o>>4&0xF:o>>4&0xF+1] + hex[o&0xF:o&0xF+1] + ")"
}

// Header is a decoded frame header.
type Header struct {
	Fin    bool
	Rsv    uint8 // the 3 RSV bits (RSV1 is 4, RSV2 2, RSV3 1), 0..7
	Op     OpCode
	Masked bool
	Mask   [4]byte // masking key, valid when Masked
	Length int64   // payload length, 0..1<<63-1
}

// Size limits of a header.
const (
	MinHeaderLen = 2  // FIN/RSV/opcode byte and MASK/length byte
	MaxHeaderLen = 14 // 2 + 8 bytes of 64-bit length + 4 bytes of mask key

	// MaxControlPayload is the largest payload of a control frame.
	MaxControlPayload = 125
)

// Header bits.
const (
	bitFin     = 0x80
	bitsRsv    = 0x70
	bitsOp     = 0x0F
	bitMask    = 0x80
	bitsLength = 0x7F

	len16 = 126 // 7-bit length value announcing a 16-bit extended length
	len64 = 127 // 7-bit length value announcing a 64-bit extended length
)

// ParseHeader decodes the frame header at the start of b.
//
// n == 0 && err == nil means b holds less than a whole header: call again
// with more bytes. Otherwise n is the header size (2..14) and the payload
// starts at b[n]. ParseHeader only reads b; h holds no reference to it.
//
// Protocol violations return one of the preallocated *Error values (close
// code 1002) and a zero h and n. Violations visible in the first two bytes
// (RSV bits, opcode, control frame rules) are reported as soon as those two
// bytes are present; length-encoding violations as soon as the extended
// length is present. A prefix of a valid header is never an error.
//
// ParseHeader serves both sides of a connection, so it does not enforce
// masking: a server must fail unmasked frames (ErrUnmaskedFrame) and a
// client masked ones (ErrMaskedFrame). It also checks no size limit: compare
// h.Length with your limit before allocating for the payload.
//
// ParseHeader is a small inlinable wrapper around Header.Parse; hot loops
// that keep a Header in their connection state can call Parse directly.
func ParseHeader(b []byte) (h Header, n int, err error) {
	n, err = h.Parse(b)
	return h, n, err
}

// Parse is ParseHeader writing into h: it decodes the header at the start
// of b and returns its size, 0 for "need more", or a protocol violation.
// h is written only when n > 0; otherwise it is left unchanged.
//
// Returning a Header by value (it holds an array, so Go returns it in
// memory) costs a store-to-load forwarding stall in the caller on amd64,
// about 10 ns; decoding into a Header that stays put avoids it.
func (h *Header) Parse(b []byte) (n int, err error) {
	if len(b) < MinHeaderLen {
		return 0, nil
	}
	b0, b1 := b[0], b[1]

	// RFC 6455 5.2, RSV1, RSV2, RSV3: 1 bit each
	//
	// "MUST be 0 unless an extension is negotiated that defines meanings
	// for non-zero values. If a nonzero value is received and none of the
	// negotiated extensions defines the meaning of such a nonzero value,
	// the receiving endpoint MUST _Fail the WebSocket Connection_."
	if b0&bitsRsv != 0 {
		return 0, ErrReservedBits
	}

	// RFC 6455 5.2, Opcode: 4 bits
	//
	// "If an unknown opcode is received, the receiving endpoint MUST _Fail
	// the WebSocket Connection_. The following values are defined.
	//   %x0 denotes a continuation frame
	//   %x1 denotes a text frame
	//   %x2 denotes a binary frame
	//   %x3-7 are reserved for further non-control frames
	//   %x8 denotes a connection close
	//   %x9 denotes a ping
	//   %xA denotes a pong
	//   %xB-F are reserved for further control frames"
	op := OpCode(b0 & bitsOp)
	switch op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return 0, ErrReservedOpcode
	}

	fin := b0&bitFin != 0
	l7 := b1 & bitsLength
	if op.IsControl() {
		// RFC 6455 5.4: "Control frames (see Section 5.5) MAY be injected
		// in the middle of a fragmented message. Control frames themselves
		// MUST NOT be fragmented."
		if !fin {
			return 0, ErrFragmentedControl
		}
		// RFC 6455 5.5: "All control frames MUST have a payload length of
		// 125 bytes or less and MUST NOT be fragmented."
		if l7 > MaxControlPayload {
			return 0, ErrControlTooLong
		}
	}

	// RFC 6455 5.2, Payload length: 7 bits, 7+16 bits, or 7+64 bits
	//
	// "The length of the "Payload data", in bytes: if 0-125, that is the
	// payload length. If 126, the following 2 bytes interpreted as a
	// 16-bit unsigned integer are the payload length. If 127, the
	// following 8 bytes interpreted as a 64-bit unsigned integer (the most
	// significant bit MUST be 0) are the payload length. Multibyte length
	// quantities are expressed in network byte order. Note that in all
	// cases, the minimal number of bytes MUST be used to encode the
	// length, for example, the length of a 124-byte-long string can't be
	// encoded as the sequence 126, 0, 124."
	var length uint64
	n = MinHeaderLen
	switch l7 {
	case len16:
		if len(b) < 4 {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
		if length <= MaxControlPayload {
			return 0, ErrNonMinimalLength
		}
		n = 4
	case len64:
		if len(b) < 10 {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:10])
		if length>>63 != 0 {
			return 0, ErrLengthMSB
		}
		if length <= 0xFFFF {
			return 0, ErrNonMinimalLength
		}
		n = 10
	default:
		length = uint64(l7)
	}

	// RFC 6455 5.2, Masking-key: 0 or 4 bytes
	//
	// "All frames sent from the client to the server are masked by a
	// 32-bit value that is contained within the frame. This field is
	// present if the mask bit is set to 1 and is absent if the mask bit is
	// set to 0."
	masked := b1&bitMask != 0
	if masked {
		if len(b) < n+4 {
			return 0, nil
		}
		h.Mask = [4]byte(b[n : n+4])
		n += 4
	} else {
		h.Mask = [4]byte{}
	}

	// Field by field: a composite literal would be built on the stack and
	// copied with one wide load, which stalls on the narrow stores.
	h.Fin = fin
	h.Rsv = 0 // nonzero RSV bits were rejected above
	h.Op = op
	h.Masked = masked
	h.Length = int64(length)
	return n, nil
}

// HeaderLen returns the size of a server (unmasked) header for a payload of
// n bytes: 2, 4 or 10. n must not be negative.
func HeaderLen(n int) int {
	switch {
	case n <= MaxControlPayload:
		return 2
	case uint64(n) <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// MaskedHeaderLen returns the size of a client (masked) header for a payload
// of n bytes: HeaderLen(n) + 4.
func MaskedHeaderLen(n int) int { return HeaderLen(n) + 4 }

// appendHeader appends the FIN/opcode byte and the minimal length encoding,
// with maskBit or-ed into the second byte.
func appendHeader(dst []byte, fin bool, op OpCode, length int, maskBit byte) []byte {
	if length < 0 {
		panic("wsframe: negative payload length")
	}
	b0 := byte(op) & bitsOp
	if fin {
		b0 |= bitFin
	}
	switch {
	case length <= MaxControlPayload:
		return append(dst, b0, maskBit|byte(length))
	case uint64(length) <= 0xFFFF:
		return append(dst, b0, maskBit|len16, byte(length>>8), byte(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, maskBit|len64), uint64(length))
	}
}

// AppendHeader appends an unmasked frame header (server to client) with the
// minimal length encoding and RSV bits clear. It does not check the control
// frame rules (FIN set, length <= 125); it panics if length is negative.
func AppendHeader(dst []byte, fin bool, op OpCode, length int) []byte {
	return appendHeader(dst, fin, op, length, 0)
}

// AppendMaskedHeader appends a masked frame header (client to server) with
// the given masking key. The payload that follows must be masked with
// MaskBytes(payload, mask, 0). Real clients must pick an unpredictable mask
// for every frame (RFC 6455 5.3); test and load clients may reuse one.
func AppendMaskedHeader(dst []byte, fin bool, op OpCode, length int, mask [4]byte) []byte {
	dst = appendHeader(dst, fin, op, length, bitMask)
	return append(dst, mask[0], mask[1], mask[2], mask[3])
}

// AppendFrame appends a whole unmasked frame: header and payload.
func AppendFrame(dst []byte, fin bool, op OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, fin, op, len(payload)), payload...)
}

// AppendMaskedFrame appends a whole masked frame: header and a masked copy
// of payload (payload itself is not modified).
func AppendMaskedFrame(dst []byte, fin bool, op OpCode, payload []byte, mask [4]byte) []byte {
	dst = AppendMaskedHeader(dst, fin, op, len(payload), mask)
	start := len(dst)
	dst = append(dst, payload...)
	MaskBytes(dst[start:], mask, 0)
	return dst
}
