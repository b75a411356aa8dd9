package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyJWT is the cost of client authentication per handshake,
// by algorithm (the rest of the upgrade is BenchmarkHandshake's).
func BenchmarkVerifyJWT(b *testing.B) {
	claims := jwt.MapClaims{"sub": "user-42", "exp": time.Now().Add(time.Hour).Unix()}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		sign   any
		cfg    AuthConfig
	}{
		{"HS256", jwt.SigningMethodHS256, secret, AuthConfig{HMACSecret: secret}},
		{"ES256", jwt.SigningMethodES256, ecKey, AuthConfig{PublicKey: &ecKey.PublicKey}},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey, AuthConfig{PublicKey: edPub}},
		{"RS256", jwt.SigningMethodRS256, rsaKey, AuthConfig{PublicKey: &rsaKey.PublicKey}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tok, err := jwt.NewWithClaims(tc.method, claims).SignedString(tc.sign)
			if err != nil {
				b.Fatal(err)
			}
			v, err := newVerifier(tc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for range b.N {
				if _, ae := v.verify(tok); ae != nil {
					b.Fatal(ae.reason)
				}
			}
		})
	}
}
