package gateway

import (
	"errors"
	"net/url"
	"strings"
)

// originPolicy decides which browser origins may open a WebSocket
// (--allowed-origins). Browsers send Origin on every WebSocket handshake and
// let any page connect anywhere, so a server that trusts its clients'
// cookies must check it (cross-site WebSocket hijacking). Clients that are
// not browsers send no Origin and are not affected.
//
// Default (no list): a request without Origin, or whose Origin names the
// host the request was sent to (same origin), is allowed; others get 403.
// "*" allows every origin. Entries are exact origins ("https://app.example.com")
// or a subdomain pattern ("https://*.example.com", which does not match
// example.com itself); scheme and port must match.
//
// Invariant: built once by New, read-only after (used on the loops).
type originPolicy struct {
	any      bool
	exact    map[string]bool // "scheme://host[:port]", lower case
	suffixes []originSuffix
}

type originSuffix struct {
	scheme, suffix, port string // suffix is ".example.com"
}

// newOriginPolicy parses --allowed-origins.
func newOriginPolicy(list []string) (*originPolicy, error) {
	p := &originPolicy{exact: map[string]bool{}}
	for _, o := range list {
		o = strings.ToLower(strings.TrimSpace(o))
		if o == "" {
			continue
		}
		if o == "*" {
			p.any = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, errors.New("gateway: --allowed-origins " + o + ": want an origin like https://app.example.com, https://*.example.com or *")
		}
		host, port := u.Hostname(), u.Port()
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			if rest == "" || strings.Contains(rest, "*") {
				return nil, errors.New("gateway: --allowed-origins " + o + ": a pattern is *.domain")
			}
			p.suffixes = append(p.suffixes, originSuffix{scheme: u.Scheme, suffix: "." + rest, port: port})
			continue
		}
		if strings.Contains(host, "*") {
			return nil, errors.New("gateway: --allowed-origins " + o + ": a pattern is *.domain")
		}
		p.exact[u.Scheme+"://"+u.Host] = true
	}
	return p, nil
}

// configured reports whether an explicit list was given.
func (p *originPolicy) configured() bool { return p.any || len(p.exact) > 0 || len(p.suffixes) > 0 }

// allow decides for a request with the given Origin and Host headers
// (origin empty: none was sent).
func (p *originPolicy) allow(origin, host string) bool {
	if origin == "" || p.any {
		return true
	}
	o := strings.ToLower(origin)
	if !p.configured() {
		// Same origin: the Origin's host[:port] is the Host the page used.
		_, hostPart, ok := strings.Cut(o, "://")
		return ok && hostPart == strings.ToLower(host)
	}
	if p.exact[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	for _, s := range p.suffixes {
		if u.Scheme == s.scheme && u.Port() == s.port && strings.HasSuffix(u.Hostname(), s.suffix) {
			return true
		}
	}
	return false
}
