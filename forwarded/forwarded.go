// Package forwarded is the identity a wsgate gateway forwards to a plain
// WebSocket upstream (`wsgate gateway --upstream`), and its signature.
//
// The gateway sets X-Forwarded-For, X-Wsgate-Gateway, X-Wsgate-Key and,
// with JWT auth, X-Wsgate-Claims on the upgrade request it sends upstream
// (dropping any the client sent). With a cluster secret it also signs
// them in X-Wsgate-Signature, so that an upstream can check them with
// Verify instead of trusting whoever reaches its port:
//
//	id, err := forwarded.Verify(r, secret, 30*time.Second, time.Now())
//	if err != nil { http.Error(w, "not from a gateway", 403); return }
//	// id.Key is the client's verified routing key (the JWT subject with auth)
//
// The signature is HMAC-SHA256 with the cluster secret over a version
// tag, the signing time, and the forwarded values exactly as sent:
//
//	"wsgate-forwarded-v1\n" + t + "\n" + gateway + "\n" + key + "\n" + claims + "\n" + for + "\n" + request URI
//
// and the header is "v1,t=<unix seconds>,s=<base64url HMAC, unpadded>".
package forwarded

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The headers a gateway sets on the upgrade request to a plain upstream.
const (
	HeaderFor       = "X-Forwarded-For"    // the client's IP address
	HeaderGateway   = "X-Wsgate-Gateway"   // the gateway's --id
	HeaderKey       = "X-Wsgate-Key"       // the routing key, percent-encoded as a path segment
	HeaderClaims    = "X-Wsgate-Claims"    // with JWT auth: the token's claims, JSON in base64url (unpadded)
	HeaderSignature = "X-Wsgate-Signature" // with a cluster secret: Sign's value
)

// Identity is what a gateway forwards about a client, in the form it is
// sent (Key escaped, Claims encoded).
type Identity struct {
	Gateway string
	Key     string // percent-encoded
	Claims  string // base64url JSON, or ""
	For     string
	URI     string // the request URI sent upstream
}

// Errors of Verify.
var (
	ErrUnsigned = errors.New("forwarded: no " + HeaderSignature + " header")
	ErrBad      = errors.New("forwarded: malformed " + HeaderSignature)
	ErrStale    = errors.New("forwarded: signature too old or from the future")
	ErrForged   = errors.New("forwarded: signature does not match (wrong secret, or a header was changed)")
)

// Sign returns the X-Wsgate-Signature value for id, signed at t.
func Sign(secret []byte, t time.Time, id Identity) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "v1,t=" + ts + ",s=" + base64.RawURLEncoding.EncodeToString(mac(secret, ts, id))
}

func mac(secret []byte, ts string, id Identity) []byte {
	m := hmac.New(sha256.New, secret)
	for _, f := range []string{"wsgate-forwarded-v1", ts, id.Gateway, id.Key, id.Claims, id.For, id.URI} {
		m.Write([]byte(f))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// Verified is a checked identity, decoded.
type Verified struct {
	Gateway string
	Key     string // the routing key ("" for a keyless client)
	Claims  []byte // the JWT claims as JSON; nil without auth
	For     string // the client's IP address
}

// Verify checks r's forwarded headers against their signature, made with
// secret at most maxAge before now (or as much after: clocks differ), and
// returns them decoded.
func Verify(r *http.Request, secret []byte, maxAge time.Duration, now time.Time) (Verified, error) {
	sig := r.Header.Get(HeaderSignature)
	if sig == "" {
		return Verified{}, ErrUnsigned
	}
	parts := strings.Split(sig, ",")
	if len(parts) != 3 || parts[0] != "v1" || !strings.HasPrefix(parts[1], "t=") || !strings.HasPrefix(parts[2], "s=") {
		return Verified{}, ErrBad
	}
	ts := parts[1][2:]
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return Verified{}, ErrBad
	}
	got, err := base64.RawURLEncoding.DecodeString(parts[2][2:])
	if err != nil {
		return Verified{}, ErrBad
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxAge || d < -maxAge {
		return Verified{}, ErrStale
	}
	id := Identity{Gateway: r.Header.Get(HeaderGateway), Key: r.Header.Get(HeaderKey), Claims: r.Header.Get(HeaderClaims),
		For: r.Header.Get(HeaderFor), URI: r.RequestURI}
	if id.URI == "" { // a request not read by net/http's server
		id.URI = r.URL.RequestURI()
	}
	if !hmac.Equal(got, mac(secret, ts, id)) {
		return Verified{}, ErrForged
	}
	v := Verified{Gateway: id.Gateway, For: id.For}
	if v.Key, err = url.PathUnescape(id.Key); err != nil {
		return Verified{}, ErrBad
	}
	if id.Claims != "" {
		if v.Claims, err = base64.RawURLEncoding.DecodeString(id.Claims); err != nil {
			return Verified{}, ErrBad
		}
	}
	return v, nil
}
