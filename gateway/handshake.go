package gateway

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
	"github.com/wsgate/wsgate/internal/wire"
)

var (
	crlfcrlf     = []byte("\r\n\r\n")
	resp431      = httpResponse(431, "Request Header Fields Too Large", "", "request header fields too large")
	pathWS       = "/ws/"
	pathConnect  = "/websocket/connect/"
	queryUserID  = "userId"
	rejectNoNode = ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
		ws.RejectionReason("no backend available"))
	rejectDown = ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
		ws.RejectionReason("backend unavailable"), ws.RejectionHeader(ws.HandshakeHeaderString("Retry-After: 2\r\n")))
	rejectBadKey = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest),
		ws.RejectionReason("malformed key in path or userId"))
	rejectLongKey = ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest),
		ws.RejectionReason("key too long"))
	rejectDraining = ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
		ws.RejectionReason("gateway shutting down"))
	rejectOrigin = ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden),
		ws.RejectionReason("origin not allowed (--allowed-origins)"))
	resp400Dup    = httpResponse(400, "Bad Request", "", "duplicated Host, Upgrade or Sec-WebSocket-* header")
	resp400BareLF = httpResponse(400, "Bad Request", "", "request lines must end in CRLF, not bare LF")
	resp400Ctl    = httpResponse(400, "Bad Request", "", "control character in the request line or a header")
)

// singleHeaders are the upgrade headers that must appear once: a request
// that repeats one is ambiguous (which key is answered? which host is
// routed?) and is refused with 400, as nginx refuses a repeated Host.
var singleHeaders = [...]string{"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Host", "Upgrade"}

// handshake is a loop's reusable upgrade machinery. gobwas/ws reads from a
// blocking io.Reader, so the loop first buffers a complete request (up to
// MaxHandshake bytes, ending in CRLFCRLF) and then hands gobwas exactly those
// bytes: nothing that arrived after the request is consumed.
//
// Invariant: used only on its loop; the fields describe the request being
// upgraded right now and are reset for each one.
type handshake struct {
	l  *loop
	up ws.Upgrader
	r  bytes.Reader
	w  []byte

	target  []byte // request URI, copied out of gobwas's buffer
	key     []byte
	keyless bool
	member  *ring.Member
	origin  []byte // the Origin header, if any
	host    []byte // the Host header

	// With bounded loads: member's client counter, holding a place
	// reserved for this client (bounded.go).
	placed *atomic.Int64

	// Client authentication (auth.go).
	queryTok   []byte // ?token=
	authz      []byte // the Authorization header
	protoToken []byte // a "bearer.<token>" subprotocol entry
	id         identity
	authFail   string // the metric reason of a refused token

	// For plain upstreams (upstream.go), while any is on the ring: the
	// client's header lines to forward, and its offered subprotocols.
	fwd       []byte
	protocols []byte
}

func (h *handshake) init(l *loop) {
	h.l = l
	h.up = ws.Upgrader{
		ReadBufferSize:  l.g.cfg.MaxHandshake,
		WriteBufferSize: 512,
		OnRequest:       h.onRequest,
		OnHost:          h.onHost,
		OnHeader:        h.onHeader,
		ProtocolCustom:  h.onProtocols,
		OnBeforeUpgrade: h.onBeforeUpgrade,
	}
}

// Read and Write make h the io.ReadWriter gobwas upgrades over.
func (h *handshake) Read(p []byte) (int, error)  { return h.r.Read(p) }
func (h *handshake) Write(p []byte) (int, error) { h.w = append(h.w, p...); return len(p), nil }

var _ io.ReadWriter = (*handshake)(nil)

// queryKey returns the first userId value of a query string. Only that
// pair must be well-formed (a bad escape in it is an error); other pairs
// are the application's business, as with nginx's $arg_userId.
func queryKey(query []byte) (string, error) { return queryParam(query, queryUserID) }

// queryParam returns the first value of the named query parameter.
func queryParam(query []byte, param string) (string, error) {
	for pair := range bytes.SplitSeq(query, []byte("&")) {
		name, value, _ := bytes.Cut(pair, []byte("="))
		if string(name) != param {
			continue
		}
		return url.QueryUnescape(string(value))
	}
	return "", nil
}

// onRequest takes the routing key from /ws/{key}, /websocket/connect/{key}
// or ?userId= on any path. No key means keyless: spread over the nodes.
func (h *handshake) onRequest(uri []byte) error {
	h.target = append(h.target[:0], uri...)
	path, query, _ := bytes.Cut(h.target, []byte("?"))
	var raw []byte
	for _, prefix := range []string{pathWS, pathConnect} {
		if rest, ok := bytes.CutPrefix(path, []byte(prefix)); ok {
			raw, _, _ = bytes.Cut(rest, []byte("/"))
			break
		}
	}
	var (
		key string
		err error
	)
	if len(raw) > 0 {
		key, err = url.PathUnescape(string(raw))
	} else if len(query) > 0 {
		key, err = queryKey(query)
	}
	if err == nil && h.l.g.auth != nil && len(query) > 0 {
		var tok string
		tok, err = queryParam(query, "token")
		h.queryTok = append(h.queryTok[:0], tok...)
	}
	if err != nil {
		return rejectBadKey
	}
	if len(key) > h.l.g.cfg.MaxKey {
		return rejectLongKey
	}
	h.key = append(h.key[:0], key...)
	h.keyless = len(h.key) == 0
	return nil
}

// onHost and onHeader keep what the origin check needs (gobwas passes
// every header it does not handle itself to onHeader).
func (h *handshake) onHost(host []byte) error { h.host = append(h.host[:0], host...); return nil }

func (h *handshake) onHeader(key, value []byte) error {
	if h.l.g.hasPlain.Load() {
		h.forwardHeader(key, value)
	}
	switch {
	case len(key) == len("Origin") && bytes.EqualFold(key, []byte("Origin")):
		h.origin = append(h.origin[:0], value...)
	case len(key) == len("Authorization") && bytes.EqualFold(key, []byte("Authorization")):
		h.authz = append(h.authz[:0], value...)
	}
	return nil
}

// dupHeader reports whether the request head repeats one of
// singleHeaders (gobwas/ws checks the upgrade headers but keeps the last
// of a repeated one). req ends with CRLFCRLF.
func dupHeader(req []byte) bool {
	var seen [len(singleHeaders)]bool
	_, rest, _ := bytes.Cut(req, []byte("\r\n")) // skip the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		for i, h := range singleHeaders {
			if len(name) == len(h) && bytes.EqualFold(name, []byte(h)) {
				if seen[i] {
					return true
				}
				seen[i] = true
			}
		}
	}
	return false
}

// ctlByte reports whether the request head b holds a control character
// other than the tab and its CRLF line ends: RFC 9110 5.5 allows none in a
// field value (a bare CR, a NUL...), nor RFC 9112 3.2 in the request
// target. A gateway that passed one on (to a plain upstream, whose parser
// may end a line at a bare CR) would let a client inject headers. A CR at
// the end of b may be followed by its LF in the next read.
func ctlByte(b []byte) bool {
	for i, c := range b {
		switch {
		case c == '\t' || c == '\n':
		case c == '\r':
			if i+1 < len(b) && b[i+1] != '\n' {
				return true
			}
		case c < 0x20 || c == 0x7f:
			return true
		}
	}
	return false
}

// bareLF reports whether a line of the request ends in LF without CR.
// HTTP/1.1 (RFC 9112 2.2) lets a server reject such a request with 400;
// gateways that accepted it while a proxy in front did not would read
// headers differently (request smuggling), and waiting for a CRLFCRLF
// that never comes would hold the client until the handshake timeout.
func bareLF(b []byte) bool {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// authenticate verifies the client's token and makes its key claim the
// routing key (auth.go).
func (h *handshake) authenticate() *authError {
	v := h.l.g.auth
	tok := h.queryTok
	if len(tok) == 0 {
		if b, ok := bytes.CutPrefix(h.authz, []byte("Bearer ")); ok {
			tok = b
		}
	}
	if len(tok) == 0 {
		tok = h.protoToken
	}
	if len(tok) == 0 {
		if v.cfg.AllowAnonymous && h.keyless {
			h.id = identity{claims: []byte{}}
			return nil // anonymous: keyless, spread over the nodes
		}
		return authMissing
	}
	id, ae := v.verify(string(tok))
	if ae != nil {
		return ae
	}
	if len(id.claims) > wire.MaxString {
		return authTooLarge
	}
	if len(id.key) > h.l.g.cfg.MaxKey {
		return authKeyTooLong
	}
	if !h.keyless && string(h.key) != id.key {
		return authKeyClash
	}
	h.id = id
	h.key, h.keyless = append(h.key[:0], id.key...), false
	return nil
}

// onBeforeUpgrade routes the request once every header is known valid; a
// request that cannot be routed is refused with 503 before it is upgraded.
func (h *handshake) onBeforeUpgrade() (ws.HandshakeHeader, error) {
	g := h.l.g
	if g.draining.Load() {
		return nil, rejectDraining
	}
	if !g.origins.allow(string(h.origin), string(h.host)) {
		return nil, rejectOrigin
	}
	if g.auth != nil {
		if ae := h.authenticate(); ae != nil {
			h.authFail = ae.reason
			return nil, ae.rej
		}
	}
	r := g.ring.Load()
	if r == nil || r.Len() == 0 {
		return nil, rejectNoNode
	}
	switch {
	case h.keyless:
		h.member = g.nextKeyless(r)
	case g.cfg.BalanceFactor != 0:
		if h.member, h.placed = g.routeBounded(h.key); h.member == nil {
			return nil, rejectNoNode
		}
	default:
		h.member = r.Lookup(h.key)
	}
	if t, down := h.l.down[h.member.ID]; down && time.Now().Before(t) {
		g.release(h.placed)
		h.placed = nil
		return nil, rejectDown
	}
	return nil, nil
}

// refuseRequest answers a request that is refused before gobwas sees it
// and closes the connection, counting the reason.
func (l *loop) refuseRequest(s *session, c gnet.Conn, resp []byte, reason string) gnet.Action {
	l.g.metrics.handshakeFailed(reason)
	_, _ = c.Write(resp)
	s.state = stClosed
	return gnet.Close
}

// handshakeTraffic upgrades s once its request is complete. done reports
// that s is now open and the rest of the input is WebSocket frames.
func (l *loop) handshakeTraffic(s *session, c gnet.Conn) (act gnet.Action, done bool) {
	buf, _ := c.Peek(0)
	end := bytes.Index(buf, crlfcrlf)
	head := buf
	if end >= 0 {
		head = buf[:end+4]
	}
	if bareLF(head) {
		return l.refuseRequest(s, c, resp400BareLF, "bad_request"), false
	}
	if ctlByte(head) {
		return l.refuseRequest(s, c, resp400Ctl, "bad_request"), false
	}
	max := l.g.cfg.MaxHandshake
	if end < 0 && len(buf) <= max {
		return gnet.None, false // need more
	}
	if end < 0 || end+4 > max {
		return l.refuseRequest(s, c, resp431, "too_large"), false
	}
	n := end + 4
	h := &l.hs
	h.r.Reset(buf[:n])
	h.w = l.out[:0]
	h.member, h.placed = nil, nil
	h.origin, h.host = h.origin[:0], h.host[:0]
	h.queryTok, h.authz, h.protoToken, h.id, h.authFail = h.queryTok[:0], h.authz[:0], h.protoToken[:0], identity{}, ""
	h.fwd, h.protocols = h.fwd[:0], h.protocols[:0]
	if dupHeader(buf[:n]) {
		return l.refuseRequest(s, c, resp400Dup, "duplicate_header"), false
	}
	_, err := h.up.Upgrade(h)
	// Read before the write: when a write fails (the client reset the
	// connection) gnet closes the conn inside Write, calling OnClose and
	// then releasing the conn (RemoteAddr becomes nil).
	remote := c.RemoteAddr()
	// A client that offers subprotocols to a plain upstream gets its 101
	// once the upstream has chosen one (upstream.go), unless the gateway
	// chose already ("wsgate").
	var delayed []byte
	if err == nil && len(h.protocols) > 0 && membership.IsPlainAddr(h.member.Addr) && !bytes.Contains(h.w, []byte("Sec-WebSocket-Protocol")) {
		delayed = append([]byte(nil), h.w...)
	}
	if delayed == nil {
		if _, werr := c.Write(h.w); werr != nil && err == nil {
			// The conn is gone already; OnClose ran while s was still in
			// the handshake, so nothing was registered. Do not register now.
			l.g.release(h.placed)
			l.g.metrics.handshakeFailed("reset")
			s.state = stClosed
			return gnet.Close, false
		}
	}
	if err != nil {
		reason := rejectReason(err)
		if h.authFail != "" {
			reason = h.authFail
		}
		l.g.release(h.placed)
		l.g.metrics.handshakeFailed(reason)
		s.state = stClosed
		return gnet.Close, false
	}
	_, _ = c.Discard(n)
	delete(l.timed, s)
	l.g.metrics.handshakeOK()
	// deadline was set at accept to HandshakeTimeout from then; a graced
	// handshake's was set again when its first timeout passed, so it took
	// at least HandshakeTimeout more (a lower bound).
	took := l.g.cfg.HandshakeTimeout - time.Duration(s.deadline-l.g.elapsed())
	if s.graced() {
		took += l.g.cfg.HandshakeTimeout
	}
	l.g.metrics.handshakeSeconds.Observe(took.Seconds())

	s.state = stOpen
	l.startLimits(s)
	s.id = l.newSessionID()
	s.key = string(h.key)
	s.keyless = h.keyless
	l.sessions[s.id] = s
	if h.placed != nil { // the reserved place becomes the client's count on its node
		l.g.reserved.Add(-1)
	}
	l.g.clients.Add(1)
	if l.g.auth != nil {
		s.exp = uint32(min(h.id.exp, math.MaxUint32)) // 0: no exp claim; beyond 2106: as late as it goes
	}
	// Listed before it is routed: a plain upstream's connect that fails at
	// once unlinks s again.
	l.addKey(s)
	l.g.presence.note(l, s, h.member.ID, true)
	if membership.IsPlainAddr(h.member.Addr) {
		l.openUpstream(s, h.member.ID, h.member.Addr, h.placed != nil, remote, delayed)
		return gnet.None, true
	}
	k := l.linkTo(h.member)
	s.link = k
	k.sessions++
	if h.placed == nil {
		k.clients.Add(1)
	}
	var addr string
	if remote != nil {
		addr = remote.String()
	}
	var open []byte
	if l.g.auth != nil {
		open = wire.AppendOpenClaims(l.out[:0], s.id, s.keyless, h.key, []byte(addr), h.target, h.id.claims)
	} else {
		open = wire.AppendOpen(l.out[:0], s.id, s.keyless, h.key, []byte(addr), h.target)
	}
	if l.g.cfg.Rebalance == RebalanceMigrate {
		l.opens[s] = string(open[wire.HeaderSize:]) // a resume Open repeats it (migrate.go)
	}
	k.write(open)
	return gnet.None, true
}

// rejectReason names a failed handshake for metrics.
func rejectReason(err error) string {
	switch err {
	case rejectNoNode, rejectDown:
		return "no_backend"
	case rejectDraining:
		return "draining"
	case rejectBadKey, rejectLongKey:
		return "bad_key"
	case rejectOrigin:
		return "bad_origin"
	case ws.ErrHandshakeBadMethod:
		return "bad_method"
	case ws.ErrHandshakeUpgradeRequired, ws.ErrHandshakeBadSecVersion:
		return "bad_version"
	}
	return "bad_request"
}
