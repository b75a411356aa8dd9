package gateway_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/gateway"
)

// adminReq sends one request to the admin listener with the given Host,
// Content-Type and bearer token (empty: none) and returns the status.
func adminReq(t *testing.T, g *gateway.Gateway, method, path, host, ctype, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminWithoutToken: a loopback-only admin API refuses other Host
// names (DNS rebinding), cross-site form and text/plain POSTs, the old
// state-changing GET /send, and pprof unless asked for.
func TestAdminWithoutToken(t *testing.T) {
	c := startCluster(t, 1, nil)
	g := c.Gateway()
	const js = "application/json"
	send := `{"userId":"x","message":"m"}`
	for _, tc := range []struct {
		name                      string
		method, path, host, ctype string
		body                      string
		want                      int
	}{
		{"loopback host", "GET", "/api/info", "", "", "", 200},
		{"localhost name", "GET", "/api/info", "localhost:1234", "", "", 200},
		{"rebinding host", "GET", "/api/info", "evil.example:8081", "", "", http.StatusMisdirectedRequest},
		{"rebinding host, POST", "POST", "/api/send", "evil.example", js, send, http.StatusMisdirectedRequest},
		{"JSON POST", "POST", "/api/send", "", js, send, 200},
		{"text/plain POST (no-preflight cross-site fetch)", "POST", "/api/send", "", "text/plain", send, http.StatusUnsupportedMediaType},
		{"form POST", "POST", "/api/send", "", "application/x-www-form-urlencoded", "userId=x&message=m", http.StatusUnsupportedMediaType},
		{"no content type", "POST", "/api/nodes", "", "", "", http.StatusUnsupportedMediaType},
		{"state-changing GET is gone", "GET", "/send?userId=x&message=m", "", "", "", http.StatusNotFound},
		{"pprof off by default", "GET", "/debug/pprof/", "", "", "", http.StatusNotFound},
	} {
		if got := adminReq(t, g, tc.method, tc.path, tc.host, tc.ctype, "", tc.body); got != tc.want {
			t.Errorf("%s: %s %s: %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}
}

func TestAdminToken(t *testing.T) {
	const token = "s3cret-admin-token-0123"
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.AdminToken, cfg.Pprof = token, true })
	g := c.Gateway()
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/api/info", "", http.StatusUnauthorized},
		{"/api/info", "wrong-token-wrong-token", http.StatusUnauthorized},
		{"/api/info", token, 200},
		{"/api/nodes", "", http.StatusUnauthorized},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/debug/pprof/", token, 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 200},
		{"/", "", 200}, // the page asks for the token itself
	} {
		if got := adminReq(t, g, "GET", tc.path, "", "", tc.token, ""); got != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
	// With a token the Host check is not needed (the token is the proof).
	if got := adminReq(t, g, "GET", "/api/info", "gw.example.com", "", token, ""); got != 200 {
		t.Errorf("GET /api/info from a named host with the token: %d", got)
	}
	if got := adminReq(t, g, "POST", "/api/send", "", "application/json", "", `{"userId":"x"}`); got != http.StatusUnauthorized {
		t.Errorf("POST /api/send without the token: %d", got)
	}
	if info := adminReq(t, g, "GET", "/api/info", "", "", token, ""); info != 200 {
		t.Fatal(info)
	}

	c2 := startCluster(t, 1, func(cfg *gateway.Config) { cfg.AdminToken, cfg.MetricsAuth = token, true })
	if got := adminReq(t, c2.Gateway(), "GET", "/metrics", "", "", "", ""); got != http.StatusUnauthorized {
		t.Errorf("GET /metrics with --metrics-auth and no token: %d", got)
	}
}

// TestAdminSecretNotExposed: the token is in no answer of the API.
func TestAdminSecretNotExposed(t *testing.T) {
	const token = "never-shown-token-4567"
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.AdminToken = token })
	for _, path := range []string{"/api/info", "/api/nodes", "/metrics", "/"} {
		req, _ := http.NewRequest("GET", "http://"+c.Gateway().AdminAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), token) {
			t.Errorf("%s shows the admin token", path)
		}
	}
}

func TestAdminNonLoopbackNeedsToken(t *testing.T) {
	src := staticMembers(t)
	_, err := gateway.New(gateway.Config{Listen: "127.0.0.1:0", Admin: "0.0.0.0:0", Members: src})
	var ce *gateway.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Fatalf("non-loopback admin without a token: %v, want a ConfigError naming --admin-token-file", err)
	}
	if _, err := gateway.New(gateway.Config{Listen: "127.0.0.1:0", Admin: "0.0.0.0:0", Members: src, AdminToken: "0123456789abcdef"}); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}
