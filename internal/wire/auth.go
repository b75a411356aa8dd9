package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// Link authentication (docs/protocol.md 4.9). When a cluster secret is
// configured, both ends prove they hold it before any session frame, with
// a mutual challenge-response on nonces from both sides:
//
//	gateway -> backend   Hello, Auth{step 1, Ng, 0}
//	backend -> gateway   Hello, Auth{step 2, Nb, MAC(backend)}
//	gateway -> backend   Auth{step 3, 0, MAC(gateway)}
//
// MAC(role) = HMAC-SHA256(secret, "wsgate-link-v1" | role | gatewayID |
// backendID | Ng | Nb), ids length-prefixed. Each side checks the other's
// MAC in constant time; fresh nonces from both sides make a recorded
// exchange useless on another link (no replay), and the role byte keeps
// one side's answer from serving as the other's. The cost is one HMAC each
// way per link, nothing per message.

// Auth steps.
const (
	AuthChallenge uint8 = 1 // gateway: its nonce
	AuthResponse  uint8 = 2 // backend: its nonce and its proof
	AuthConfirm   uint8 = 3 // gateway: its proof
)

// Sizes of the Auth body's parts.
const (
	NonceSize = 16
	MACSize   = sha256.Size
	authBody  = 1 + NonceSize + MACSize
)

// ErrAuth: an Auth frame is missing, out of order, or its proof is wrong.
var ErrAuth = errors.New("wire: link authentication failed")

// Auth is an Auth frame's body.
type Auth struct {
	Step  uint8
	Nonce [NonceSize]byte
	MAC   [MACSize]byte
}

// AppendAuth appends a whole Auth frame (session 0).
func AppendAuth(dst []byte, a Auth) []byte {
	dst = AppendHeader(dst, TypeAuth, 0, 0, authBody)
	dst = append(dst, a.Step)
	dst = append(dst, a.Nonce[:]...)
	return append(dst, a.MAC[:]...)
}

// ParseAuth decodes an Auth body (exactly 49 bytes, step 1 to 3).
func ParseAuth(body []byte) (Auth, error) {
	if len(body) != authBody || body[0] < AuthChallenge || body[0] > AuthConfirm {
		return Auth{}, ErrMalformed
	}
	var a Auth
	a.Step = body[0]
	copy(a.Nonce[:], body[1:1+NonceSize])
	copy(a.MAC[:], body[1+NonceSize:])
	return a, nil
}

// NewNonce returns a fresh random nonce.
func NewNonce() [NonceSize]byte {
	var n [NonceSize]byte
	_, _ = rand.Read(n[:])
	return n
}

// LinkMAC is the proof the side of role gives on the link between gateway
// gatewayID and backend backendID with nonces ng (gateway's) and nb.
func LinkMAC(secret []byte, role Role, gatewayID, backendID string, ng, nb [NonceSize]byte) [MACSize]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("wsgate-link-v1"))
	m.Write([]byte{byte(role)})
	for _, id := range []string{gatewayID, backendID} {
		m.Write(binary.BigEndian.AppendUint16(nil, uint16(len(id))))
		m.Write([]byte(id))
	}
	m.Write(ng[:])
	m.Write(nb[:])
	var out [MACSize]byte
	copy(out[:], m.Sum(nil))
	return out
}

// CheckMAC reports whether got is the proof LinkMAC computes, in constant
// time.
func CheckMAC(got, want [MACSize]byte) bool { return hmac.Equal(got[:], want[:]) }

// GatewayConfirm is the gateway's side of step 2: it checks the backend's
// Auth response (body) on the link between gatewayID and backendID, ng
// being the gateway's challenge nonce, and returns the confirmation (step
// 3) to send. Errors: ErrMalformed, or ErrAuth for a wrong step or proof.
func GatewayConfirm(secret []byte, gatewayID, backendID string, ng [NonceSize]byte, body []byte) (Auth, error) {
	a, err := ParseAuth(body)
	if err != nil {
		return Auth{}, err
	}
	if a.Step != AuthResponse || !CheckMAC(a.MAC, LinkMAC(secret, RoleBackend, gatewayID, backendID, ng, a.Nonce)) {
		return Auth{}, ErrAuth
	}
	return Auth{Step: AuthConfirm, MAC: LinkMAC(secret, RoleGateway, gatewayID, backendID, ng, a.Nonce)}, nil
}
