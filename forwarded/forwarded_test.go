package forwarded_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/wsgate/wsgate/forwarded"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func signed(t0 time.Time, id forwarded.Identity) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://upstream"+id.URI, nil)
	r.RequestURI = id.URI
	r.Header.Set(forwarded.HeaderGateway, id.Gateway)
	r.Header.Set(forwarded.HeaderKey, id.Key)
	r.Header.Set(forwarded.HeaderFor, id.For)
	if id.Claims != "" {
		r.Header.Set(forwarded.HeaderClaims, id.Claims)
	}
	r.Header.Set(forwarded.HeaderSignature, forwarded.Sign(secret, t0, id))
	return r
}

// TestVerify: a signed identity verifies and decodes; any change to a
// signed value, another secret, an old signature or none at all does not.
func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	id := forwarded.Identity{Gateway: "gw1", Key: "al%20ice", Claims: "eyJzdWIiOiJhbCBpY2UifQ", For: "192.0.2.7", URI: "/ws/al%20ice?room=7"}
	v, err := forwarded.Verify(signed(now, id), secret, 30*time.Second, now.Add(time.Second))
	if err != nil || v.Key != "al ice" || string(v.Claims) != `{"sub":"al ice"}` || v.For != "192.0.2.7" || v.Gateway != "gw1" {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	for _, tc := range []struct {
		name   string
		change func(*http.Request)
		secret []byte
		at     time.Time
		want   error
	}{
		{"key changed", func(r *http.Request) { r.Header.Set(forwarded.HeaderKey, "mallory") }, secret, now, forwarded.ErrForged},
		{"claims dropped", func(r *http.Request) { r.Header.Del(forwarded.HeaderClaims) }, secret, now, forwarded.ErrForged},
		{"for changed", func(r *http.Request) { r.Header.Set(forwarded.HeaderFor, "10.0.0.1") }, secret, now, forwarded.ErrForged},
		{"other URI", func(r *http.Request) { r.RequestURI = "/ws/bob" }, secret, now, forwarded.ErrForged},
		{"other secret", func(*http.Request) {}, []byte("another secret, as long as it is"), now, forwarded.ErrForged},
		{"stale", func(*http.Request) {}, secret, now.Add(time.Minute), forwarded.ErrStale},
		{"from the future", func(*http.Request) {}, secret, now.Add(-time.Minute), forwarded.ErrStale},
		{"unsigned", func(r *http.Request) { r.Header.Del(forwarded.HeaderSignature) }, secret, now, forwarded.ErrUnsigned},
		{"malformed", func(r *http.Request) { r.Header.Set(forwarded.HeaderSignature, "v2,t=1,s=x") }, secret, now, forwarded.ErrBad},
	} {
		r := signed(now, id)
		tc.change(r)
		if _, err := forwarded.Verify(r, tc.secret, 30*time.Second, tc.at); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzVerify: no signature header makes Verify panic.
func FuzzVerify(f *testing.F) {
	f.Add("v1,t=1800000000,s=AAAA")
	f.Add("v1,t=-1,s=")
	f.Fuzz(func(t *testing.T, sig string) {
		r, _ := http.NewRequest(http.MethodGet, "http://upstream/ws/k", nil)
		r.Header.Set(forwarded.HeaderSignature, sig)
		_, _ = forwarded.Verify(r, secret, time.Minute, time.Unix(1_800_000_000, 0))
	})
}
