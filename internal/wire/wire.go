// Package wire is the codec of the gateway<->backend link protocol: the
// framing of the long-lived TCP links over which the gateway multiplexes many
// client WebSocket sessions to a backend node.
//
// Every frame is a 10-byte header followed by a body (integers big-endian):
//
//	offset 0  u32  length   number of bytes after this field (6 + body length)
//	offset 4  u8   type
//	offset 5  u8   flags
//	offset 6  u32  session  session id; request id for Push/PushResult; 0 for link-level frames
//	offset 10 ...  body     length-6 bytes
//
// docs/protocol.md is the full specification (handshake, session lifecycle,
// fragmentation, keepalive, error codes).
//
// The Append* functions append one whole frame (or only a header) to dst and
// return the extended slice, like strconv.AppendInt: they never allocate
// when dst has enough spare capacity. The Parse* functions decode a body as
// returned by ParseHeader/Reader; the byte slices they return alias that
// body and are valid only as long as the body is.
package wire

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
)

// Version is the protocol version this package speaks; it is sent in Hello.
const Version uint16 = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 10

// DefaultMaxBody is the default cap on one frame's body; receivers reject
// larger frames (ErrTooLarge).
const DefaultMaxBody = 1 << 20

// MinMaxBody is the smallest MaxBody a Hello may announce: every control
// frame (Close, Ping, PushResult, a short Error) fits in it.
const MinMaxBody = 1024

// MaxString is the longest string a u16 length prefix can carry (keys,
// addresses, targets, node ids). Encoders truncate longer strings to
// MaxString bytes; callers should validate lengths before encoding.
const MaxString = 0xFFFF

// MaxCloseReason is the longest close reason in bytes (a WebSocket close
// frame carries at most 125 bytes: a 2-byte code and 123 bytes of reason).
const MaxCloseReason = 123

// lengthOverhead is the part of the length field that is not body: type,
// flags and session.
const lengthOverhead = HeaderSize - 4

// Keepalive and handshake timing (docs/protocol.md, "Keepalive").
//
// The liveness rule, both sides: send a Ping every PingInterval on a fixed
// schedule, whatever else is sent; answer every Ping with a Pong; close a
// link on which nothing at all was received for DeadIntervals intervals.
// So each side hears the other at least once per interval whichever way the
// data flows (pushes only, client messages only, both or none).
const (
	// PingInterval is the default keepalive interval.
	PingInterval = 15 * time.Second
	// DeadIntervals: a link silent (nothing received) for this many
	// keepalive intervals is dead.
	DeadIntervals = 3
	// DeadAfter: the default silence bound, DeadIntervals x PingInterval.
	DeadAfter = DeadIntervals * PingInterval
	// HelloTimeout: the backend drops a link whose Hello has not arrived
	// within this long after the TCP connection was accepted.
	HelloTimeout = 10 * time.Second
)

// Type is a frame type.
type Type uint8

// Frame types. The comment of each names its direction, session field, flags
// and body layout; docs/protocol.md has the details.
const (
	// TypeHello is the handshake, both directions, session 0:
	// body = u16 version | u8 role | u32 maxBody | u16 len + node id.
	TypeHello Type = 0x01
	// TypeOpen (gateway->backend) announces a new client session.
	// flags: FlagKeyless. body = u16 len+key | u16 len+remote addr |
	// u16 len+target (request path and query, e.g. "/ws/u1?x=1").
	TypeOpen Type = 0x02
	// TypeMessage (both ways) is one fragment of a client message. flags:
	// FlagBinary (on every fragment of a binary message), FlagContinuation
	// (not the first fragment), FlagMore (more fragments follow).
	// body = payload.
	TypeMessage Type = 0x03
	// TypeClose (both ways): the session closed (gateway->backend) or
	// close this session (backend->gateway). body = u16 code | reason
	// (UTF-8, at most MaxCloseReason bytes).
	TypeClose Type = 0x04
	// TypePing is the link keepalive, session 0, body = 8 opaque bytes
	// that the peer echoes in a TypePong.
	TypePing Type = 0x05
	// TypePong answers a TypePing with the same 8 body bytes.
	TypePong Type = 0x06
	// TypeSendKey (backend->gateway) delivers a message to every session
	// of a key on this link. flags: FlagBinary. body = u16 len+key | payload.
	TypeSendKey Type = 0x07
	// TypeBroadcast (backend->gateway) delivers a message to every session
	// on this link. flags: FlagBinary. body = payload.
	TypeBroadcast Type = 0x08
	// TypePush (gateway->backend) is an admin push to a key; the session
	// field is a request id. body = u16 len+key | payload.
	TypePush Type = 0x09
	// TypePushResult (backend->gateway) answers a TypePush; the session
	// field is the request id. body = u32 delivered.
	TypePushResult Type = 0x0A
	// TypeAuth (both directions, session 0) authenticates the link with the
	// cluster secret, right after the Hellos (auth.go; docs/protocol.md 4.9).
	// body = u8 step | nonce[16] | mac[32].
	TypeAuth Type = 0x0B
	// TypeHandover (gateway->backend) asks the backend to hand session
	// over for a migration (docs/protocol.md 4.10): it answers with a
	// TypeState and forgets the session. No body. Only on a link whose
	// two Hellos have FlagMigrate.
	TypeHandover Type = 0x0C
	// TypeState carries a migrating session's state: backend->gateway it
	// answers a TypeHandover (the session has ended there); gateway->backend
	// it completes a resumed Open (FlagResume) on the new node. flags:
	// FlagLost. body = the state, at most MaxState bytes.
	TypeState Type = 0x0D
	// TypeReady (backend->gateway) answers an Open with FlagResume: the
	// arriving session is registered (SendKey reaches it) and waits for
	// its TypeState. No body.
	TypeReady Type = 0x0E
	// TypeError (either side, session 0) is fatal: body = u16 code | text.
	// The sender closes the link after it.
	TypeError Type = 0x7F
)

// Known reports whether t is a defined frame type.
func (t Type) Known() bool {
	return (t >= TypeHello && t <= TypeReady) || t == TypeError
}

// String returns the type's name ("Hello", "Open", ...) or "Type(0xNN)".
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "Hello"
	case TypeOpen:
		return "Open"
	case TypeMessage:
		return "Message"
	case TypeClose:
		return "Close"
	case TypePing:
		return "Ping"
	case TypePong:
		return "Pong"
	case TypeSendKey:
		return "SendKey"
	case TypeBroadcast:
		return "Broadcast"
	case TypePush:
		return "Push"
	case TypePushResult:
		return "PushResult"
	case TypeAuth:
		return "Auth"
	case TypeHandover:
		return "Handover"
	case TypeState:
		return "State"
	case TypeReady:
		return "Ready"
	case TypeError:
		return "Error"
	}
	const hex = "0123456789abcdef"
	return "Type(0x" + string([]byte{hex[t>>4], hex[t&0xF]}) + ")"
}

// Frame flags. Bits not defined for a frame's type must be zero.
const (
	// FlagBinary marks every fragment of a binary message (Message,
	// SendKey, Broadcast); clear means text.
	FlagBinary uint8 = 1 << 0
	// FlagContinuation marks a Message fragment that is not the first.
	FlagContinuation uint8 = 1 << 1
	// FlagMore marks a Message fragment that is not the last.
	FlagMore uint8 = 1 << 2
	// FlagKeyless on Open: the client gave no key (the key field is then
	// the gateway's routing key, usually empty, and the session belongs to
	// no key group).
	FlagKeyless uint8 = 1 << 0
	// FlagCloseAck on a backend's Hello: the backend answers every Close
	// the gateway sends for an open session with a Close for the same
	// session, queued after every frame it had already queued for that
	// session. The gateway then knows, when the answer arrives, that the
	// session's last replies are delivered (docs/protocol.md 4.4).
	FlagCloseAck uint8 = 1 << 0
	// FlagClaims on a gateway's Hello: every Open on the link carries a
	// fourth field, the client's verified JWT claims (JSON; empty for an
	// anonymous client). A backend that cannot read it must refuse the link
	// (Error, unsupported version) rather than misread Opens.
	FlagClaims uint8 = 1 << 1
	// FlagMigrate on either side's Hello: the sender speaks session
	// migration (Open with FlagResume, Handover, State, Ready;
	// docs/protocol.md 4.10). The gateway migrates sessions only over
	// links where both Hellos have it; a peer that does not know the bit
	// ignores it, so version-1 peers interoperate unchanged.
	FlagMigrate uint8 = 1 << 2
	// FlagResume on Open: the session moves here from another node. The
	// backend registers it, answers TypeReady, and hands it to the
	// application only when its TypeState arrives.
	FlagResume uint8 = 1 << 1
	// FlagLost on State: no state comes with the session (its old node
	// was gone, or could not export it); it starts fresh.
	FlagLost uint8 = 1 << 0
	// FlagMoving on PushResult (with delivered 0): a session of the key
	// arrived at or left the node by migration lately, so the push may
	// have missed it between two nodes; the gateway tries it again.
	FlagMoving uint8 = 1 << 0
)

// MaxState is the largest session state a State frame may carry (64 KiB).
const MaxState = 64 << 10

// MessageFlags is the set of flags defined for TypeMessage.
const MessageFlags = FlagBinary | FlagContinuation | FlagMore

// Role is the role a peer announces in Hello.
type Role uint8

// Roles.
const (
	RoleGateway Role = 1 // the gateway end of a link
	RoleBackend Role = 2 // the backend end of a link
)

// String returns "gateway", "backend" or "Role(N)".
func (r Role) String() string {
	switch r {
	case RoleGateway:
		return "gateway"
	case RoleBackend:
		return "backend"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Error codes carried by TypeError frames.
const (
	// CodeUnsupportedVersion: the peer's Hello has a version this side does
	// not speak (text "unsupported version").
	CodeUnsupportedVersion uint16 = 1
	// CodeProtocol: a malformed or unexpected frame (bad Hello, wrong role,
	// unknown type, bad body, bad flags, duplicate session, frame in the
	// wrong direction, ...).
	CodeProtocol uint16 = 2
	// CodeTooLarge: a frame's body exceeded the receiver's maxBody.
	CodeTooLarge uint16 = 3
	// CodeGoingAway: not a failure; the sender is shutting down on purpose.
	CodeGoingAway uint16 = 4
	// CodeInternal: the sender hit an internal error.
	CodeInternal uint16 = 5
)

// Header is a decoded frame header.
type Header struct {
	Type    Type
	Flags   uint8
	Session uint32 // session id, request id (Push/PushResult) or 0
	BodyLen int    // number of body bytes following the header
}

// ParseHeader decodes the header at the start of b. maxBody is the largest
// body accepted; maxBody <= 0 means DefaultMaxBody. Errors: ErrShort when
// len(b) < HeaderSize, ErrMalformed when the length field is < 6,
// ErrUnknownType, ErrTooLarge when the body exceeds maxBody. It never
// allocates.
func ParseHeader(b []byte, maxBody int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	length := binary.BigEndian.Uint32(b)
	if length < lengthOverhead {
		return Header{}, ErrMalformed
	}
	t := Type(b[4])
	if !t.Known() {
		return Header{}, ErrUnknownType
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body := uint64(length - lengthOverhead)
	if body > uint64(maxBody) {
		return Header{}, ErrTooLarge
	}
	return Header{
		Type:    t,
		Flags:   b[5],
		Session: binary.BigEndian.Uint32(b[6:]),
		BodyLen: int(body),
	}, nil
}

// AppendHeader appends a frame header for a body of bodyLen bytes. The
// caller must keep 0 <= bodyLen <= 1<<32-1-6. It never allocates when dst has
// HeaderSize bytes of spare capacity.
func AppendHeader(dst []byte, t Type, flags uint8, session uint32, bodyLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(bodyLen+lengthOverhead))
	dst = append(dst, byte(t), flags)
	return binary.BigEndian.AppendUint32(dst, session)
}

// AppendFrame appends a whole frame: header and body.
func AppendFrame(dst []byte, t Type, flags uint8, session uint32, body []byte) []byte {
	dst = AppendHeader(dst, t, flags, session, len(body))
	return append(dst, body...)
}

// clip truncates s to MaxString bytes.
func clip[S ~string | ~[]byte](s S) S {
	if len(s) > MaxString {
		return s[:MaxString]
	}
	return s
}

// appendStr appends a u16 length prefix and s (already clipped).
func appendStr[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// readStr splits a u16-length-prefixed string off the front of b.
func readStr(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < n {
		return nil, nil, false
	}
	return b[:n:n], b[n:], true
}

// Hello is the handshake frame's body.
type Hello struct {
	Version uint16
	Role    Role
	MaxBody uint32 // largest frame body the sender accepts from its peer
	NodeID  string // sender's id (gateway id or backend node id)
	Flags   uint8  // FlagCloseAck (backend); carried in the frame header, not the body
}

// helloFixed is the size of Hello's fixed fields (version, role, maxBody,
// node id length).
const helloFixed = 2 + 1 + 4 + 2

// AppendHello appends a whole Hello frame (session 0, flags h.Flags). A NodeID
// over MaxString bytes is truncated.
func AppendHello(dst []byte, h Hello) []byte {
	id := clip(h.NodeID)
	dst = AppendHeader(dst, TypeHello, h.Flags, 0, helloFixed+len(id))
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	dst = append(dst, byte(h.Role))
	dst = binary.BigEndian.AppendUint32(dst, h.MaxBody)
	return appendStr(dst, id)
}

// ParseHello decodes a Hello body. It checks the layout and that Role is
// RoleGateway or RoleBackend (else ErrMalformed); use Hello.Check for the
// version and the peer's expected role.
func ParseHello(body []byte) (Hello, error) {
	if len(body) < helloFixed {
		return Hello{}, ErrMalformed
	}
	h := Hello{
		Version: binary.BigEndian.Uint16(body),
		Role:    Role(body[2]),
		MaxBody: binary.BigEndian.Uint32(body[3:]),
	}
	if h.Role != RoleGateway && h.Role != RoleBackend {
		return Hello{}, ErrMalformed
	}
	id, rest, ok := readStr(body[7:])
	if !ok || len(rest) != 0 {
		return Hello{}, ErrMalformed
	}
	h.NodeID = string(id)
	return h, nil
}

// Check reports whether h is acceptable from a peer that must have role
// peer: ErrVersion if h.Version != Version, ErrRole if h.Role != peer,
// ErrMalformed if h.MaxBody < MinMaxBody.
func (h Hello) Check(peer Role) error {
	switch {
	case h.Version != Version:
		return ErrVersion
	case h.Role != peer:
		return ErrRole
	case h.MaxBody < MinMaxBody:
		return ErrMalformed
	}
	return nil
}

// Open is a decoded Open body. The slices alias the body.
type Open struct {
	Key, RemoteAddr, Target []byte
	// Claims is the client's verified JWT payload (JSON), present when the
	// gateway's Hello has FlagClaims; nil when the Open has no claims field.
	Claims []byte
}

// AppendOpen appends a whole Open frame; keyless sets FlagKeyless. Strings
// over MaxString bytes are truncated. It never allocates when dst has room.
func AppendOpen(dst []byte, session uint32, keyless bool, key, remoteAddr, target []byte) []byte {
	return AppendOpenClaims(dst, session, keyless, key, remoteAddr, target, nil)
}

// AppendOpenClaims is AppendOpen with a fourth field, the client's verified
// claims (sent by a gateway whose Hello has FlagClaims); nil claims leave
// the field out. Claims over MaxString bytes are the caller's to refuse
// (truncated JSON would be wrong): they are truncated here.
func AppendOpenClaims(dst []byte, session uint32, keyless bool, key, remoteAddr, target, claims []byte) []byte {
	key, remoteAddr, target = clip(key), clip(remoteAddr), clip(target)
	var flags uint8
	if keyless {
		flags = FlagKeyless
	}
	n := 6 + len(key) + len(remoteAddr) + len(target)
	if claims != nil {
		claims = clip(claims)
		n += 2 + len(claims)
	}
	dst = AppendHeader(dst, TypeOpen, flags, session, n)
	dst = appendStr(dst, key)
	dst = appendStr(dst, remoteAddr)
	dst = appendStr(dst, target)
	if claims != nil {
		dst = appendStr(dst, claims)
	}
	return dst
}

// ParseOpen decodes an Open body: three u16-length-prefixed strings, and a
// fourth (claims) from a gateway whose Hello has FlagClaims, and nothing
// after them.
func ParseOpen(body []byte) (Open, error) {
	var o Open
	var ok bool
	if o.Key, body, ok = readStr(body); !ok {
		return Open{}, ErrMalformed
	}
	if o.RemoteAddr, body, ok = readStr(body); !ok {
		return Open{}, ErrMalformed
	}
	if o.Target, body, ok = readStr(body); !ok {
		return Open{}, ErrMalformed
	}
	if len(body) > 0 {
		if o.Claims, body, ok = readStr(body); !ok || len(body) != 0 {
			return Open{}, ErrMalformed
		}
	}
	return o, nil
}

// TruncateReason returns the longest prefix of reason that is at most
// MaxCloseReason bytes and does not split a UTF-8 sequence.
func TruncateReason[S ~string | ~[]byte](reason S) S {
	if len(reason) <= MaxCloseReason {
		return reason
	}
	n := MaxCloseReason
	for n > MaxCloseReason-utf8.UTFMax && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// AppendClose appends a whole Close frame. A reason over MaxCloseReason
// bytes is truncated (at a UTF-8 boundary).
func AppendClose(dst []byte, session uint32, code uint16, reason []byte) []byte {
	reason = TruncateReason(reason)
	dst = AppendHeader(dst, TypeClose, 0, session, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// ParseClose decodes a Close body: a code and at most MaxCloseReason bytes
// of reason. Any code is accepted (the gateway reports 1006 for a client
// that vanished). The reason should be UTF-8 but is not checked, so that one
// client's bad close reason cannot fail a whole link; receivers that need
// valid text replace invalid sequences (strings.ToValidUTF8).
func ParseClose(body []byte) (code uint16, reason []byte, err error) {
	if len(body) < 2 || len(body)-2 > MaxCloseReason {
		return 0, nil, ErrMalformed
	}
	return binary.BigEndian.Uint16(body), body[2:], nil
}

// AppendSendKey appends a whole SendKey frame (session 0). flags may hold
// FlagBinary. A key over MaxString bytes is truncated.
func AppendSendKey(dst []byte, flags uint8, key, payload []byte) []byte {
	key = clip(key)
	dst = AppendHeader(dst, TypeSendKey, flags, 0, 2+len(key)+len(payload))
	dst = appendStr(dst, key)
	return append(dst, payload...)
}

// ParseSendKey decodes a SendKey body.
func ParseSendKey(body []byte) (key, payload []byte, err error) {
	key, payload, ok := readStr(body)
	if !ok {
		return nil, nil, ErrMalformed
	}
	return key, payload, nil
}

// AppendPush appends a whole Push frame with request id reqID. A key over
// MaxString bytes is truncated.
func AppendPush(dst []byte, reqID uint32, key, payload []byte) []byte {
	key = clip(key)
	dst = AppendHeader(dst, TypePush, 0, reqID, 2+len(key)+len(payload))
	dst = appendStr(dst, key)
	return append(dst, payload...)
}

// ParsePush decodes a Push body.
func ParsePush(body []byte) (key, payload []byte, err error) {
	key, payload, ok := readStr(body)
	if !ok {
		return nil, nil, ErrMalformed
	}
	return key, payload, nil
}

// AppendPushResult appends a whole PushResult frame answering request reqID.
func AppendPushResult(dst []byte, reqID uint32, delivered uint32) []byte {
	return AppendPushResultFlags(dst, reqID, 0, delivered)
}

// AppendPushResultFlags is AppendPushResult with flags (FlagMoving).
func AppendPushResultFlags(dst []byte, reqID uint32, flags uint8, delivered uint32) []byte {
	dst = AppendHeader(dst, TypePushResult, flags, reqID, 4)
	return binary.BigEndian.AppendUint32(dst, delivered)
}

// ParsePushResult decodes a PushResult body (exactly 4 bytes).
func ParsePushResult(body []byte) (uint32, error) {
	if len(body) != 4 {
		return 0, ErrMalformed
	}
	return binary.BigEndian.Uint32(body), nil
}

// AppendError appends a whole Error frame (session 0). The text should be
// short UTF-8; it is truncated to MaxString bytes.
func AppendError(dst []byte, code uint16, text string) []byte {
	text = clip(text)
	dst = AppendHeader(dst, TypeError, 0, 0, 2+len(text))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, text...)
}

// ParseError decodes an Error body.
func ParseError(body []byte) (code uint16, text []byte, err error) {
	if len(body) < 2 {
		return 0, nil, ErrMalformed
	}
	return binary.BigEndian.Uint16(body), body[2:], nil
}

// PingSize is the size of a Ping or Pong body.
const PingSize = 8

// AppendPing appends a whole Ping frame (session 0) carrying data.
func AppendPing(dst []byte, data [PingSize]byte) []byte {
	return AppendFrame(dst, TypePing, 0, 0, data[:])
}

// ParsePing decodes a Ping or Pong body (exactly PingSize bytes).
func ParsePing(body []byte) ([PingSize]byte, error) {
	if len(body) != PingSize {
		return [PingSize]byte{}, ErrMalformed
	}
	return [PingSize]byte(body), nil
}

// AppendPong appends a whole Pong frame (session 0) echoing a Ping's data.
func AppendPong(dst []byte, data [PingSize]byte) []byte {
	return AppendFrame(dst, TypePong, 0, 0, data[:])
}
