package wsframe

import "strconv"

// Error is a protocol violation. Code is the close code to send to the peer
// and Reason a short (<= 123 bytes) text for the close frame's reason, so a
// caller can answer with AppendClose(dst, e.Code, e.Reason).
//
// Every *Error this package returns is one of the preallocated variables
// below, so they can be compared with == or errors.Is and returning them
// never allocates.
type Error struct {
	Code   uint16
	Reason string
}

// Error implements the error interface ("wsframe: <reason> (close <code>)").
func (e *Error) Error() string {
	return "wsframe: " + e.Reason + " (close " + strconv.Itoa(int(e.Code)) + ")"
}

// Errors returned by ParseHeader. All carry CloseProtocolError (1002).
var (
	// ErrReservedBits: RSV1-3 set while no extension is negotiated.
	ErrReservedBits = &Error{Code: CloseProtocolError, Reason: "reserved bits set"}
	// ErrReservedOpcode: opcode 0x3-0x7 or 0xB-0xF.
	ErrReservedOpcode = &Error{Code: CloseProtocolError, Reason: "reserved opcode"}
	// ErrControlTooLong: control frame with a payload over 125 bytes.
	ErrControlTooLong = &Error{Code: CloseProtocolError, Reason: "control frame payload over 125 bytes"}
	// ErrFragmentedControl: control frame with FIN clear.
	ErrFragmentedControl = &Error{Code: CloseProtocolError, Reason: "fragmented control frame"}
	// ErrLengthMSB: 64-bit payload length with its most significant bit set.
	ErrLengthMSB = &Error{Code: CloseProtocolError, Reason: "64-bit payload length has the most significant bit set"}
	// ErrNonMinimalLength: payload length not encoded in the minimal number of bytes.
	ErrNonMinimalLength = &Error{Code: CloseProtocolError, Reason: "non-minimal payload length encoding"}
)

// Errors for rules that depend on which side of the connection the caller
// is on. ParseHeader does not return them (it serves both sides); callers
// check Header.Masked and return these.
var (
	// ErrUnmaskedFrame: a server received a frame from a client without the
	// mask bit (RFC 6455 5.1: "The server MUST close the connection upon
	// receiving a frame that is not masked ... status code 1002").
	ErrUnmaskedFrame = &Error{Code: CloseProtocolError, Reason: "client frame not masked"}
	// ErrMaskedFrame: a client received a masked frame from a server (RFC
	// 6455 5.1: "A client MUST close a connection if it detects a masked
	// frame").
	ErrMaskedFrame = &Error{Code: CloseProtocolError, Reason: "server frame masked"}
)

// Errors returned by Fragmentation.Next. Both carry CloseProtocolError.
var (
	// ErrUnexpectedContinuation: a continuation frame with no fragmented
	// message in progress.
	ErrUnexpectedContinuation = &Error{Code: CloseProtocolError, Reason: "continuation frame without a message in progress"}
	// ErrExpectedContinuation: a text or binary frame while a fragmented
	// message is still in progress.
	ErrExpectedContinuation = &Error{Code: CloseProtocolError, Reason: "new data frame inside a fragmented message"}
)

// Message-level errors for callers (this package does not return them).
var (
	// ErrInvalidUTF8: a text message that is not valid UTF-8 (RFC 6455 8.1).
	ErrInvalidUTF8 = &Error{Code: CloseInvalidPayload, Reason: "invalid UTF-8 in text message"}
	// ErrTooBig: a frame or message larger than the caller's limit.
	ErrTooBig = &Error{Code: CloseTooBig, Reason: "message too big"}
)

// Errors returned by ParseClosePayload.
var (
	// ErrCloseLength: a close payload of 1 byte (or over 125 bytes).
	ErrCloseLength = &Error{Code: CloseProtocolError, Reason: "invalid close payload length"}
	// ErrCloseCode: a close code that must not appear on the wire.
	ErrCloseCode = &Error{Code: CloseProtocolError, Reason: "invalid close code"}
	// ErrCloseReason: a close reason that is not valid UTF-8.
	ErrCloseReason = &Error{Code: CloseInvalidPayload, Reason: "close reason not valid UTF-8"}
)
