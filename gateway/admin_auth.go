package gateway

import (
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"strings"
)

// The admin listener's trust rules (docs/operations.md, "Security"):
//
//   - With an admin token (--admin-token-file or WSGATE_ADMIN_TOKEN) every
//     endpoint but /healthz, /readyz, the dashboard page itself and (unless
//     --metrics-auth) /metrics needs "Authorization: Bearer <token>".
//   - Without one, the listener must be on a loopback address (checked at
//     start) and requests must name a loopback host: a web page the
//     operator visits cannot reach it through DNS rebinding.
//   - State changes are POST or DELETE; a POST must say Content-Type:
//     application/json, which an HTML form cannot send and a cross-site
//     fetch cannot send without a CORS preflight (never granted here).

// guardAdmin wraps the admin API with the rules above.
func (g *Gateway) guardAdmin(next http.Handler) http.Handler {
	token := []byte(g.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(token) == 0 && !loopbackHost(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "the admin API answers only to a loopback Host (localhost, 127.0.0.1, [::1]) without --admin-token-file")
			return
		}
		if len(token) > 0 && !g.adminPublic(r) && !bearer(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wsgate admin"`)
			writeError(w, http.StatusUnauthorized, "admin token required: Authorization: Bearer <token>")
			return
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "state changes take a JSON body with Content-Type: application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// adminPublic reports whether r may go without the token.
func (g *Gateway) adminPublic(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/":
		return true // the page holds no data; it asks for the token
	case "/metrics":
		return !g.cfg.MetricsAuth
	}
	return false
}

// bearer checks the request's bearer token in constant time.
func bearer(r *http.Request, token []byte) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), token) == 1
}

// LoopbackHostOnly serves next only to requests whose Host header names
// this machine's loopback (localhost, 127.0.0.1, [::1]); others get 421.
// For an unauthenticated listener on a loopback address: a web page the
// operator visits cannot reach it through DNS rebinding, since the browser
// sends the page's host name.
func LoopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "this endpoint answers only to a loopback Host (localhost, 127.0.0.1, [::1])")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's loopback.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackAddr reports whether a listen address (host:port) binds
// loopback only.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false // "" and ":port" listen on every address
	}
	return loopbackHost(host)
}
