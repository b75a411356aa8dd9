package wire

import "errors"

// Sentinel errors. Every error this package returns is one of these (or an
// error from the underlying io.Reader), so callers compare with errors.Is and
// returning them never allocates.
var (
	// ErrShort: fewer than HeaderSize bytes were given to ParseHeader.
	ErrShort = errors.New("wire: short buffer")
	// ErrUnknownType: the header's type byte is not a defined Type.
	ErrUnknownType = errors.New("wire: unknown frame type")
	// ErrTooLarge: the frame's body is larger than the receiver's maxBody.
	ErrTooLarge = errors.New("wire: frame body too large")
	// ErrMalformed: a length field or body layout is inconsistent (length
	// field < 6, a string running past the body, trailing bytes, a close
	// reason over 123 bytes, ...).
	ErrMalformed = errors.New("wire: malformed frame")
	// ErrVersion: a Hello announces a protocol version other than Version.
	ErrVersion = errors.New("wire: unsupported version")
	// ErrRole: a Hello announces the wrong role for the peer.
	ErrRole = errors.New("wire: unexpected role")
)
