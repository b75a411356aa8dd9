package wsframe

import (
	"encoding/binary"
	"unicode/utf8"
)

// Close status codes (RFC 6455 7.4.1 and the IANA "WebSocket Close Code
// Number Registry").
const (
	CloseNormal             uint16 = 1000
	CloseGoingAway          uint16 = 1001
	CloseProtocolError      uint16 = 1002
	CloseUnsupportedData    uint16 = 1003
	CloseNoStatus           uint16 = 1005 // never sent: "no status code was present"
	CloseAbnormal           uint16 = 1006 // never sent: closed without a close frame
	CloseInvalidPayload     uint16 = 1007
	ClosePolicyViolation    uint16 = 1008
	CloseTooBig             uint16 = 1009
	CloseMandatoryExtension uint16 = 1010
	CloseInternalError      uint16 = 1011
	CloseServiceRestart     uint16 = 1012
	CloseTryAgainLater      uint16 = 1013
	CloseBadGateway         uint16 = 1014
	CloseTLSHandshake       uint16 = 1015 // never sent: TLS handshake failure
)

// MaxCloseReason is the longest close reason that fits a control frame
// (125 bytes of payload minus the 2-byte code).
const MaxCloseReason = MaxControlPayload - 2

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000-1003, 1007-1014 and 3000-4999.
//
// RFC 6455 7.4.1: 1004 "Reserved. The specific meaning might be defined in
// the future." 1005, 1006 and 1015 are "a reserved value and MUST NOT be set
// as a status code in a Close control frame by an endpoint."
//
// RFC 6455 7.4.2: "0-999: Status codes in the range 0-999 are not used."
// "1000-2999: Status codes in the range 1000-2999 are reserved for
// definition by this protocol, its future revisions, and extensions
// specified in a permanent and readily available public specification."
// Of those, the IANA registry defines 1000-1015 only (1012-1014 were
// registered after the RFC). "3000-3999: ... reserved for use by libraries,
// frameworks, and applications." "4000-4999: ... reserved for private use."
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendClose appends a whole unmasked close frame (server to client).
//
// Code 0 and CloseNoStatus (1005, which must not be sent) give an empty
// payload and the reason is ignored. Otherwise the payload is the code and
// reason, truncated to MaxCloseReason (123) bytes on a UTF-8 boundary; a
// reason that is not valid UTF-8 is dropped, since the peer would have to
// fail the connection on it (RFC 6455 8.1). AppendClose does not check
// code; use ValidCloseCode if it comes from outside.
//
// RFC 6455 5.5.1: "If there is a body, the first two bytes of the body MUST
// be a 2-byte unsigned integer (in network byte order) representing a status
// code with value /code/ defined in Section 7.4. Following the 2-byte
// integer, the body MAY contain UTF-8-encoded data with value /reason/".
func AppendClose(dst []byte, code uint16, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return AppendHeader(dst, true, OpClose, 0)
	}
	reason = truncateUTF8(reason, MaxCloseReason)
	dst = AppendHeader(dst, true, OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// AppendMaskedClose is AppendClose for a client: a masked close frame.
func AppendMaskedClose(dst []byte, code uint16, reason string, mask [4]byte) []byte {
	if code == 0 || code == CloseNoStatus {
		return AppendMaskedHeader(dst, true, OpClose, 0, mask)
	}
	reason = truncateUTF8(reason, MaxCloseReason)
	dst = AppendMaskedHeader(dst, true, OpClose, 2+len(reason), mask)
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, code)
	dst = append(dst, reason...)
	MaskBytes(dst[start:], mask, 0)
	return dst
}

// truncateUTF8 cuts s to at most limit bytes without splitting a code
// point, and returns "" if the result is not valid UTF-8.
func truncateUTF8(s string, limit int) string {
	if len(s) > limit {
		i := limit
		// s[i] is the first byte cut off; back up to a code point start
		// (at most 3 bytes for valid UTF-8).
		for j := 0; j < utf8.UTFMax-1 && i > 0 && !utf8.RuneStart(s[i]); j++ {
			i--
		}
		s = s[:i]
	}
	if !utf8.ValidString(s) {
		return ""
	}
	return s
}

// ParseClosePayload decodes the (already unmasked) payload of a close frame.
// reason aliases p.
//
//   - empty payload: code CloseNoStatus (1005) and nil error (RFC 6455
//     7.1.5: "If this Close control frame contains no status code, _The
//     WebSocket Connection Close Code_ is considered to be 1005.")
//   - 1 byte (or over 125): ErrCloseLength (1002); the body, if present,
//     must start with a 2-byte code.
//   - a code ValidCloseCode rejects: ErrCloseCode (1002)
//   - a reason that is not valid UTF-8: ErrCloseReason (1007)
//
// On error code is 0 and reason nil.
func ParseClosePayload(p []byte) (code uint16, reason []byte, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, nil, nil
	case len(p) == 1 || len(p) > MaxControlPayload:
		// RFC 6455 5.5.1: "If there is a body, the first two bytes of
		// the body MUST be a 2-byte unsigned integer (in network byte
		// order) representing a status code". RFC 6455 5.5: "All
		// control frames MUST have a payload length of 125 bytes or
		// less".
		return 0, nil, ErrCloseLength
	}
	code = binary.BigEndian.Uint16(p)
	// RFC 6455 7.4.1/7.4.2, see ValidCloseCode.
	if !ValidCloseCode(code) {
		return 0, nil, ErrCloseCode
	}
	// RFC 6455 5.5.1: "Following the 2-byte integer, the body MAY contain
	// UTF-8-encoded data with value /reason/". RFC 6455 8.1: invalid
	// UTF-8 MUST fail the connection (1007, RFC 6455 7.4.1: "data within
	// a message that was not consistent with the type of the message").
	reason = p[2:]
	if !utf8.Valid(reason) {
		return 0, nil, ErrCloseReason
	}
	return code, reason, nil
}
