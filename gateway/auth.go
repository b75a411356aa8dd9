package gateway

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
)

// Client authentication (docs/operations.md, "Security"): with a key set,
// every client presents a JWT, checked during the upgrade on the event
// loop, before the connection is routed. The routing key is a verified
// claim (--auth-key-claim, default "sub"), never what the URL says: a URL
// that names another key gets 403. The token comes from, in this order:
//
//   - the "token" query parameter,
//   - an "Authorization: Bearer <token>" header (non-browser clients),
//   - a Sec-WebSocket-Protocol entry "bearer.<token>" (browsers cannot set
//     headers: new WebSocket(url, ["wsgate", "bearer." + token])). The token
//     entry is never selected as the subprotocol; "wsgate" is, when offered.
//
// A missing or invalid token is refused with 401 before the upgrade,
// counted by reason in wsgate_gateway_handshakes_total{result="auth_*"}.
// The verified claims (the token's payload, as signed) go to the backend
// in Open when it announced wire.FlagClaims. A connection whose token
// expires is closed with 1008 "token expired" (checked on the loop's
// session walk, so within one ping interval of the expiry).

// AuthConfig configures client authentication. The zero value turns it off.
type AuthConfig struct {
	// HMACSecret verifies HS256, HS384 and HS512 tokens.
	HMACSecret []byte
	// PublicKey verifies RS256/384/512, PS256/384/512, ES256/384/512 or
	// EdDSA tokens, depending on its type (*rsa.PublicKey,
	// *ecdsa.PublicKey, ed25519.PublicKey).
	PublicKey crypto.PublicKey
	// JWKS verifies asymmetric tokens with the key their header's "kid"
	// names (LoadJWKS); a set with a single key also serves tokens without
	// a kid.
	JWKS map[string]crypto.PublicKey
	// KeyClaim names the claim that is the routing key; default "sub".
	KeyClaim string
	// Audience and Issuer, when set, must match the token's aud and iss.
	Audience, Issuer string
	// AllowAnonymous lets clients without a token in, keyless.
	AllowAnonymous bool
}

func (a *AuthConfig) on() bool { return len(a.HMACSecret) > 0 || a.PublicKey != nil || len(a.JWKS) > 0 }

// LoadJWKS reads a JSON Web Key Set file (RFC 7517): RSA, EC (P-256,
// P-384, P-521) and OKP (Ed25519) public keys, by "kid".
func LoadJWKS(file string) (map[string]crypto.PublicKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kty, Kid, Crv, N, E, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dec := func(s string) *big.Int {
		v, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(v) == 0 {
			return nil
		}
		return new(big.Int).SetBytes(v)
	}
	keys := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		var pub crypto.PublicKey
		switch k.Kty {
		case "RSA":
			n, e := dec(k.N), dec(k.E)
			if n != nil && e != nil && e.IsInt64() {
				pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
			}
		case "EC":
			curves := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}
			if c, x, y := curves[k.Crv], dec(k.X), dec(k.Y); c != nil && x != nil && y != nil && c.IsOnCurve(x, y) {
				pub = &ecdsa.PublicKey{Curve: c, X: x, Y: y}
			}
		case "OKP":
			if x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "=")); err == nil && k.Crv == "Ed25519" && len(x) == ed25519.PublicKeySize {
				pub = ed25519.PublicKey(x)
			}
		}
		if pub == nil {
			return nil, fmt.Errorf("%s: key %d (kid %q): unsupported or malformed %s key", file, i, k.Kid, k.Kty)
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys", file)
	}
	return keys, nil
}

// LoadPublicKey reads a PEM public key (RSA, ECDSA or Ed25519) for
// AuthConfig.PublicKey.
func LoadPublicKey(file string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not a PEM RSA, ECDSA or Ed25519 public key", file)
}

// verifier checks client tokens. Built once by New; read-only after, used
// on every loop.
type verifier struct {
	cfg    AuthConfig
	parser *jwt.Parser
	key    any
}

func newVerifier(cfg AuthConfig) (*verifier, error) {
	if !cfg.on() {
		return nil, nil
	}
	n := 0
	for _, set := range []bool{len(cfg.HMACSecret) > 0, cfg.PublicKey != nil, len(cfg.JWKS) > 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("gateway: give one of --auth-jwt-secret-file, --auth-jwt-public-key-file and --auth-jwks-file")
	}
	if cfg.KeyClaim == "" {
		cfg.KeyClaim = "sub"
	}
	v := &verifier{cfg: cfg}
	// The accepted algorithms follow from the key: a token cannot pick
	// "none", or HS256 with a public key as the secret.
	var methods []string
	switch k := cfg.PublicKey.(type) {
	case nil:
		if len(cfg.JWKS) > 0 {
			// The key's type decides; a token naming an algorithm of
			// another type fails its signature check.
			methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
			break
		}
		if len(cfg.HMACSecret) < 32 {
			return nil, errors.New("gateway: --auth-jwt-secret-file: an HMAC secret must be at least 32 bytes")
		}
		methods, v.key = []string{"HS256", "HS384", "HS512"}, cfg.HMACSecret
	case *rsa.PublicKey:
		methods, v.key = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, k
	case *ecdsa.PublicKey:
		methods, v.key = []string{"ES256", "ES384", "ES512"}, k
	case ed25519.PublicKey:
		methods, v.key = []string{"EdDSA"}, k
	default:
		return nil, fmt.Errorf("gateway: --auth-jwt-public-key-file: unsupported key type %T", k)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithLeeway(5 * time.Second), jwt.WithIssuedAt()}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// errUnknownKid: the token names a key the JWKS does not hold.
var errUnknownKid = errors.New("unknown kid")

// keyFor picks the verification key of a token: the configured key, or the
// JWKS key its header's kid names.
func (v *verifier) keyFor(t *jwt.Token) (any, error) {
	if len(v.cfg.JWKS) == 0 {
		return v.key, nil
	}
	kid, _ := t.Header["kid"].(string)
	if k, ok := v.cfg.JWKS[kid]; ok {
		return k, nil
	}
	if len(v.cfg.JWKS) == 1 && kid == "" {
		for _, k := range v.cfg.JWKS {
			return k, nil
		}
	}
	return nil, errUnknownKid
}

// identity is what a verified token says.
type identity struct {
	key    string
	claims []byte // the token's payload JSON, as signed
	exp    int64  // unix seconds; 0 = no expiry
}

// authError is a refused token, with its reason for metrics.
type authError struct {
	reason string
	rej    error // the gobwas rejection (401 or 403)
}

func (e *authError) Error() string { return e.reason }

func refuse(reason string, status int, text string) *authError {
	return &authError{reason: reason, rej: ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(text),
		ws.RejectionHeader(ws.HandshakeHeaderString(`WWW-Authenticate: Bearer realm="wsgate"`+"\r\n")))}
}

// verify checks a token and returns the identity it proves.
func (v *verifier) verify(token string) (identity, *authError) {
	var key string
	var exp *jwt.NumericDate
	if v.cfg.KeyClaim == "sub" {
		// The common case decodes into a struct, not a map: about half
		// the allocations (BenchmarkVerifyJWT).
		var rc jwt.RegisteredClaims
		if _, err := v.parser.ParseWithClaims(token, &rc, v.keyFor); err != nil {
			return identity{}, tokenError(err)
		}
		key, exp = rc.Subject, rc.ExpiresAt
	} else {
		t, err := v.parser.Parse(token, v.keyFor)
		if err != nil {
			return identity{}, tokenError(err)
		}
		claims, _ := t.Claims.(jwt.MapClaims)
		key, _ = claims[v.cfg.KeyClaim].(string)
		exp, _ = claims.GetExpirationTime()
	}
	if key == "" {
		return identity{}, refuse("auth_no_key", http.StatusUnauthorized, "token has no "+v.cfg.KeyClaim+" claim")
	}
	id := identity{key: key}
	if exp != nil {
		id.exp = exp.Unix()
	}
	// The payload exactly as signed: the middle part of the token.
	parts := strings.SplitN(token, ".", 3)
	if len(parts) == 3 {
		id.claims, _ = base64.RawURLEncoding.DecodeString(parts[1])
	}
	return id, nil
}

// tokenError maps a jwt error to a refusal and its metric reason.
func tokenError(err error) *authError {
	switch {
	case errors.Is(err, errUnknownKid):
		return refuse("auth_unknown_key", http.StatusUnauthorized, "token signed with an unknown key (kid)")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("auth_expired", http.StatusUnauthorized, "token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("auth_not_yet_valid", http.StatusUnauthorized, "token not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("auth_audience", http.StatusUnauthorized, "token audience rejected")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse("auth_issuer", http.StatusUnauthorized, "token issuer rejected")
	case errors.Is(err, jwt.ErrTokenUnverifiable),
		// jwt reports an algorithm outside WithValidMethods (none included)
		// as an invalid signature; its message names the method.
		errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		return refuse("auth_algorithm", http.StatusUnauthorized, "token algorithm not accepted")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("auth_signature", http.StatusUnauthorized, "token signature invalid")
	}
	return refuse("auth_malformed", http.StatusUnauthorized, "token malformed")
}

// Refusals that carry no token detail.
var (
	authMissing  = refuse("auth_missing", http.StatusUnauthorized, "token required (?token=, Authorization: Bearer, or subprotocol bearer.<token>)")
	authKeyClash = &authError{reason: "auth_key_mismatch", rej: ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden),
		ws.RejectionReason("the URL names another key than the token"))}
	authTooLarge   = refuse("auth_malformed", http.StatusUnauthorized, "token claims too large")
	authKeyTooLong = refuse("auth_key_too_long", http.StatusUnauthorized, "the token's key claim is longer than --max-key")
)

// bearerPrefix marks a token offered as a WebSocket subprotocol.
const bearerPrefix = "bearer."

// onProtocols reads a Sec-WebSocket-Protocol header (the comma-separated
// subprotocols the client offers): it keeps a "bearer.<token>" entry,
// never selecting it, and selects "wsgate" when offered, so a browser that
// offered protocols gets one back (browsers fail a handshake that answers
// none). It never fails the request.
func (h *handshake) onProtocols(v []byte) (string, bool) {
	selected := ""
	for p := range bytes.SplitSeq(v, []byte(",")) {
		p = bytes.TrimSpace(p)
		if tok, ok := bytes.CutPrefix(p, []byte(bearerPrefix)); ok {
			h.protoToken = append(h.protoToken[:0], tok...)
		} else if string(p) == "wsgate" {
			selected = "wsgate"
		} else if h.l.g.hasPlain.Load() && len(p) > 0 {
			// Offered on to a plain upstream (upstream.go).
			if len(h.protocols) > 0 {
				h.protocols = append(h.protocols, ", "...)
			}
			h.protocols = append(h.protocols, p...)
		}
	}
	if selected != "" {
		h.protocols = h.protocols[:0] // the client speaks wsgate's: the upstream is offered nothing
	}
	return selected, true
}
