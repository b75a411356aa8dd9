package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
)

// dialOrigin upgrades with the given Origin header ("" sends none) and
// returns the HTTP status of a refusal, or 101.
func dialOrigin(t *testing.T, addr, origin string) int {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial("ws://"+addr+"/ws/o", h)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial with Origin %q: %v", origin, err)
	}
	return resp.StatusCode
}

// TestOriginDefault: without --allowed-origins a browser page of another
// origin cannot open a WebSocket (cross-site WebSocket hijacking); the same
// origin and non-browser clients (no Origin) can.
func TestOriginDefault(t *testing.T) {
	c := startCluster(t, 1, nil)
	addr := c.Gateway().Addr()
	for origin, want := range map[string]int{
		"":                          101,
		"http://" + addr:            101,
		"http://evil.example":       403,
		"http://evil.example:80":    403,
		"https://" + addr + ".evil": 403,
	} {
		if got := dialOrigin(t, addr, origin); got != want {
			t.Errorf("Origin %q: %d, want %d", origin, got, want)
		}
	}
}

func TestOriginList(t *testing.T) {
	c := startCluster(t, 1, func(cfg *gateway.Config) {
		cfg.AllowedOrigins = []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"}
	})
	addr := c.Gateway().Addr()
	for origin, want := range map[string]int{
		"":                          101,
		"https://app.example.com":   101,
		"https://APP.example.com":   101,
		"https://a.b.example.org":   101,
		"http://localhost:3000":     101,
		"http://app.example.com":    403, // scheme
		"https://example.org":       403, // the pattern is for subdomains
		"https://evilexample.org":   403,
		"https://x.example.org:444": 403, // port
		"http://localhost:3001":     403,
		"http://" + addr:            403, // same origin is not implied by a list
	} {
		if got := dialOrigin(t, addr, origin); got != want {
			t.Errorf("Origin %q: %d, want %d", origin, got, want)
		}
	}
}

func TestOriginConfigErrors(t *testing.T) {
	src := staticMembers(t)
	for _, bad := range []string{"example.com", "ftp://x.example.com", "https://x.example.com/path", "https://a*.example.com", "https://*."} {
		_, err := gateway.New(gateway.Config{Listen: "127.0.0.1:0", Admin: "-", Members: src, AllowedOrigins: []string{bad}})
		if err == nil || !strings.Contains(err.Error(), "--allowed-origins") {
			t.Errorf("origin %q: %v, want an error naming --allowed-origins", bad, err)
		}
	}
}
