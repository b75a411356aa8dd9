package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// Plain WebSocket upstreams (passthrough). A ring member whose address is a
// ws:// URL is an ordinary WebSocket server, not a backend speaking the
// link protocol. Each client routed to one gets its own upstream WebSocket
// connection: dialled and upgraded off the loop (dialling blocks), then
// enrolled on the client's loop, so frames go client -> loop -> upstream and
// back without a lock or a goroutine hop.
//
// Frames are relayed as they are, not re-framed:
//   - client to upstream: the client's frames are masked already, as a
//     client's frames to a server must be (RFC 6455 5.1), and are written
//     on as they arrive, payload streamed; the gateway parses each header
//     to enforce its limits (mask bit, message size, frame rate) and to
//     see the client's close.
//   - upstream to client: server frames need no mask; the gateway relays
//     whole frames only, so that its own frames (pings, a rebalance's
//     close) always fall between two upstream frames. A frame is at most
//     --max-message bytes.
//
// Text is not checked for UTF-8 here: that is the upstream's to do (the
// payload is not unmasked on the way).

// Passthrough limits.
const (
	// upstreamDialTimeout bounds the upstream's connect and upgrade.
	upstreamDialTimeout = 5 * time.Second
	// upstreamHoldLimit is the most client bytes held while the upstream
	// connects; more closes the client with 1013.
	upstreamHoldLimit = 256 << 10
)

// Close codes and reasons of passthrough failures (docs/operations.md,
// "Plain WebSocket upstreams").
var (
	// The upstream did not answer the connect in time or refused it.
	errUpstreamUnavailable = &wsframe.Error{Code: wsframe.CloseTryAgainLater, Reason: "upstream unavailable"}
	// The client sent more than upstreamHoldLimit before the upstream was up.
	errUpstreamNotReady = &wsframe.Error{Code: wsframe.CloseTryAgainLater, Reason: "upstream not connected yet"}
	// The upstream does not read as fast as the client writes.
	errUpstreamOverloaded = &wsframe.Error{Code: wsframe.CloseTryAgainLater, Reason: "upstream overloaded"}
	// The upstream's connection ended without a close frame.
	errUpstreamLost = &wsframe.Error{Code: wsframe.CloseInternalError, Reason: "upstream connection lost"}
	// The upstream broke the protocol (a masked or malformed frame).
	errUpstreamProtocol = &wsframe.Error{Code: wsframe.CloseBadGateway, Reason: "upstream protocol error"}
	// The upstream sent a frame over --max-message.
	errUpstreamTooBig = &wsframe.Error{Code: wsframe.CloseBadGateway, Reason: "upstream message too big"}
)

// upstream is a passthrough client's connection to its plain upstream.
//
// Invariant: owned by the client's loop goroutine, except hdrs, early and
// fail, which the dialling goroutine reads or writes before it enrolls the
// socket (or hands the failure to the loop with exec); the loop reads them
// after.
type upstream struct {
	s       *session
	node    string
	addr    string        // the member's ws:// URL
	clients *atomic.Int64 // the gateway's client count of this node
	conn    gnet.Conn     // nil while connecting, and after close

	target []byte // the client's request URI
	hdrs   []byte // header lines for the upstream request (forwarded and X-Forwarded-*)
	early  []byte // upstream bytes not yet relayed: read with its 101, or an incomplete frame's head
	held   []byte // client frames that arrived while connecting
	fail   *wsframe.Error

	need      int  // inbound bytes the next upstream frame needs before it is whole
	inMsg     bool // the upstream is in a fragmented data message (a gateway data frame must wait)
	closeSeen bool // the upstream's close frame was relayed to the client
	closed    bool // detached: the socket is closed, or is closed as soon as it opens
}

// openUpstream routes s to the plain upstream m: counts it, and starts the
// upstream connection off the loop. The client's frames are held until it
// is up (upstreamOpened).
func (l *loop) openUpstream(s *session, node, addr string, counted bool, peer net.Addr) {
	h := &l.hs
	u := &upstream{s: s, node: node, addr: addr, clients: l.g.nodeClients(node),
		target: bytes.Clone(h.target), hdrs: h.upstreamHeaders(peer)}
	s.up = u
	if !counted {
		u.clients.Add(1)
	}
	g := l.g
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), upstreamDialTimeout)
		defer cancel()
		conn, early, fail, err := dialUpstream(ctx, u.addr, u.target, u.hdrs)
		u.early, u.fail = early, fail
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			if ch, err = l.el.Enroll(gnet.NewContext(context.Background(), u), conn); err == nil {
				err = (<-ch).Err // gnet dups the socket and closes conn
			} else {
				_ = conn.Close()
			}
		}
		if err != nil {
			g.log.Debug("upstream connect failed", "node", node, "addr", addr, "err", err)
			why := "unavailable"
			if u.fail == errUpstreamProtocol {
				why = "bad_handshake"
			}
			g.metrics.upstreamDial(why)
			_ = l.exec(func() { l.upstreamFailed(u) })
			return
		}
		g.metrics.upstreamDial("ok")
	}()
}

// dialUpstream connects to the plain upstream at addr (its ws:// URL) and
// upgrades the connection for the request URI target with the extra
// header lines hdrs (blocking: never on a loop). early is what the
// upstream sent after its 101; on failure, fail is what the client is told.
func dialUpstream(ctx context.Context, addr string, target, hdrs []byte) (conn net.Conn, early []byte, fail *wsframe.Error, err error) {
	up, err := membership.UpstreamURL(addr)
	if err != nil {
		return nil, nil, errUpstreamUnavailable, err
	}
	var d net.Dialer
	if conn, err = d.DialContext(ctx, "tcp", up.Host); err != nil {
		return nil, nil, errUpstreamUnavailable, err
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	var nonce [16]byte
	for i := range nonce {
		nonce[i] = byte(rand.Uint32())
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := make([]byte, 0, 256+len(target)+len(hdrs))
	req = append(req, "GET "...)
	req = append(req, upstreamPath(up.Path, target)...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, up.Host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	req = append(req, key...)
	req = append(req, "\r\n"...)
	req = append(req, hdrs...)
	req = append(req, "\r\n"...)
	if _, err := conn.Write(req); err != nil {
		_ = conn.Close()
		return nil, nil, errUpstreamUnavailable, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		err = checkUpgrade(resp, key)
	}
	if err != nil {
		_ = conn.Close()
		fail = errUpstreamUnavailable
		var ne net.Error
		if !errors.As(err, &ne) {
			fail = errUpstreamProtocol // an answer, but not an upgrade
			if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
				fail = &wsframe.Error{Code: wsframe.CloseBadGateway, Reason: "upstream refused the upgrade: " + resp.Status}
			}
		}
		return nil, nil, fail, err
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		early = bytes.Clone(b)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, early, nil, nil
}

// ProbeUpstream checks that the plain upstream at addr (a ws:// URL)
// accepts a WebSocket upgrade: it dials, upgrades, closes with 1001 and
// reports what failed (`wsgate announce`'s health check).
func ProbeUpstream(ctx context.Context, addr string) error {
	conn, _, _, err := dialUpstream(ctx, addr, nil, []byte("X-Wsgate-Health: 1\r\n"))
	if err != nil {
		return err
	}
	defer conn.Close()
	var b [wsframe.MaxControlPayload + wsframe.MaxHeaderLen]byte
	_, err = conn.Write(maskedClose(b[:0], wsframe.CloseGoingAway, []byte("health check")))
	return err
}

// upstreamPath is the request URI sent upstream: the upstream URL's path,
// if any, then the client's path and query.
func upstreamPath(prefix string, target []byte) string {
	switch {
	case len(target) == 0 && prefix == "":
		return "/"
	case len(target) == 0:
		return prefix
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if target[0] != '/' {
		return prefix + "/" + string(target)
	}
	return prefix + string(target)
}

// acceptGUID is RFC 6455's key suffix (4.2.2).
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// checkUpgrade verifies the upstream's answer to the upgrade (RFC 6455
// 4.1: status 101, Upgrade websocket, Connection Upgrade, the accept key;
// no extension, since none was offered).
func checkUpgrade(resp *http.Response, key string) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("upstream answered %s, not 101", resp.Status)
	}
	sum := sha1.Sum([]byte(key + acceptGUID))
	switch {
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return errors.New("upstream's 101 lacks Upgrade: websocket")
	case !headerHasToken(resp.Header.Values("Connection"), "upgrade"):
		return errors.New("upstream's 101 lacks Connection: Upgrade")
	case resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		return errors.New("upstream's Sec-WebSocket-Accept does not match the key")
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		return errors.New("upstream answered with an extension that was not offered")
	}
	return nil
}

func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upstreamFailed closes the client of u, whose upstream could not be
// reached or upgraded, with the code u.fail gives.
func (l *loop) upstreamFailed(u *upstream) {
	if u.closed || u.s.up != u {
		return
	}
	e := u.fail
	if e == nil {
		e = errUpstreamUnavailable
	}
	l.closeSession(u.s, e.Code, e.Reason, true)
}

// upstreamOpened runs on the loop when the upgraded socket is enrolled:
// what the upstream sent with its 101 goes to the client, then the frames
// the client sent meanwhile go to the upstream.
func (l *loop) upstreamOpened(u *upstream, c gnet.Conn) {
	if u.closed {
		_ = c.Close()
		return
	}
	u.conn = c
	if len(u.early) > 0 {
		if l.relayUp(u, nil) == gnet.Close {
			return
		}
	}
	if held := u.held; len(held) > 0 && !u.closed {
		u.held = nil
		u.write(held)
	}
}

// between reports whether a message of the gateway's own may be written to
// s now: always, unless s's plain upstream is in the middle of a
// fragmented message (RFC 6455 5.4: the fragments of a message must not be
// interleaved with another message's).
func (s *session) between() bool { return s.up == nil || !s.up.inMsg }

// write sends client frames upstream, or holds them while connecting.
func (u *upstream) write(b []byte) {
	switch {
	case u.closed:
	case u.conn != nil:
		_, _ = u.conn.Write(b)
	default:
		u.held = append(u.held, b...)
	}
}

// backlog is how many client bytes wait for the upstream.
func (u *upstream) backlog() int {
	if u.conn == nil {
		return len(u.held)
	}
	return u.conn.OutboundBuffered()
}

// close detaches u: its socket closes once what was written is flushed
// (gnet's Close is queued behind this callback).
func (u *upstream) close() {
	u.closed = true
	u.held, u.early = nil, nil
	if u.conn != nil {
		_ = u.conn.Close()
		u.conn = nil
	}
}

// sendClose tells the upstream that the client's session ends with code,
// in a masked close frame, when the client stream is between two frames
// and code may be sent; otherwise the upstream sees the socket close.
func (u *upstream) sendClose(code uint16, reason []byte, clientMidFrame bool) {
	if clientMidFrame || !wsframe.ValidCloseCode(code) || u.closed {
		return
	}
	var b [wsframe.MaxControlPayload + wsframe.MaxHeaderLen]byte
	u.write(maskedClose(b[:0], code, reason))
}

// maskedClose appends a client's close frame with code and reason (cut to
// fit a control frame) to dst.
func maskedClose(dst []byte, code uint16, reason []byte) []byte {
	if len(reason) > wsframe.MaxCloseReason {
		reason = reason[:wsframe.MaxCloseReason]
	}
	var p [wsframe.MaxControlPayload]byte
	payload := wsframe.AppendClose(p[:0], code, string(reason))
	// RFC 6455 5.3: the masking key is "a fresh 32-bit value" per frame,
	// unpredictable to the application (math/rand/v2's generator is
	// ChaCha8, seeded from the system).
	mask := rand.Uint32()
	return wsframe.AppendMaskedFrame(dst, true, wsframe.OpClose, payload,
		[4]byte{byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)})
}

// passTraffic relays the client's input to its upstream: whole headers are
// parsed and checked, payloads are streamed on as they arrive, still masked.
func (l *loop) passTraffic(s *session, c gnet.Conn, now uint32) gnet.Action {
	u := s.up
	n := c.InboundBuffered()
	buf, _ := c.Peek(n)
	pos, payload := 0, 0
	for pos < len(buf) {
		if s.remaining > 0 {
			take := min(len(buf)-pos, int(s.remaining))
			s.remaining -= uint32(take)
			pos += take
			payload += take
			if s.remaining == 0 && s.fin {
				l.stats.in(0, true)
			}
			continue
		}
		var h wsframe.Header
		hn, err := h.Parse(buf[pos:])
		if err != nil {
			return l.fail(s, err)
		}
		if hn == 0 {
			break
		}
		// RFC 6455 5.1: a server (here, the gateway on the server's
		// behalf) "MUST close the connection upon receiving a frame that
		// is not masked".
		if !h.Masked {
			return l.fail(s, wsframe.ErrUnmaskedFrame)
		}
		if h.Op.IsControl() {
			end := pos + hn + int(h.Length)
			if end > len(buf) {
				break // a control frame is relayed whole (at most 131 bytes)
			}
			if h.Op == wsframe.OpClose {
				return l.passClose(s, c, buf, pos, end, h)
			}
			pos = end
			continue
		}
		switch {
		case h.Op == wsframe.OpContinuation && s.op == 0:
			return l.fail(s, wsframe.ErrUnexpectedContinuation)
		case h.Op != wsframe.OpContinuation && s.op != 0:
			return l.fail(s, wsframe.ErrExpectedContinuation)
		case h.Op != wsframe.OpContinuation:
			s.op, s.msgLen = h.Op, 0
		}
		if h.Fin {
			s.op = 0
		}
		if !l.allowFrame(s, now) {
			l.g.metrics.reject("frame_rate")
			return l.fail(s, errRateLimit)
		}
		if h.Length > int64(l.g.cfg.MaxMessage)-int64(s.msgLen) {
			return l.fail(s, wsframe.ErrTooBig)
		}
		s.msgLen += uint32(h.Length)
		s.fin, s.remaining = h.Fin, uint32(h.Length)
		pos += hn
		if h.Length == 0 && h.Fin {
			l.stats.in(0, true)
		}
	}
	if pos == 0 {
		return gnet.None
	}
	if s.state == stOpen {
		u.write(buf[:pos])
		l.stats.in(payload, false)
	}
	_, _ = c.Discard(pos)
	if u.conn == nil && len(u.held) > upstreamHoldLimit {
		return l.fail(s, errUpstreamNotReady)
	}
	if u.backlog() > l.g.cfg.MaxLinkBacklog {
		return l.fail(s, errUpstreamOverloaded)
	}
	return gnet.None
}

// passClose handles the client's close frame (buf[pos:end], header h):
// relayed to the upstream with what came before it. After the upstream's
// own close (closeSeen) it completes the close handshake; otherwise the
// upstream's answer is awaited for CloseTimeout (stClientClosed).
func (l *loop) passClose(s *session, c gnet.Conn, buf []byte, pos, end int, h wsframe.Header) gnet.Action {
	u := s.up
	var p [wsframe.MaxControlPayload]byte
	payload := append(p[:0], buf[end-int(h.Length):end]...)
	wsframe.MaskBytes(payload, h.Mask, 0)
	code, _, err := wsframe.ParseClosePayload(payload)
	if err != nil {
		return l.fail(s, err)
	}
	if s.state == stOpen || s.state == stClosing && u.closeSeen {
		u.write(buf[:end])
	}
	_, _ = c.Discard(len(buf)) // nothing may follow a close frame
	if s.state != stOpen {
		// The client answered a close: the upstream's (closeSeen) or the
		// gateway's (then u was detached already and s.up is nil).
		s.state = stClosed
		l.unlink(s)
		return gnet.Close
	}
	if code == wsframe.CloseNoStatus {
		code = 0
	}
	s.state, s.closeCode = stClientClosed, code
	s.deadline = l.g.deadline(l.g.cfg.CloseTimeout)
	l.timed[s] = struct{}{}
	return gnet.None
}

// upTraffic relays the upstream's input to the client.
func (l *loop) upTraffic(u *upstream, c gnet.Conn) gnet.Action {
	if u.closed {
		_, _ = c.Discard(-1)
		return gnet.None
	}
	if len(u.early) > 0 {
		in, _ := c.Next(-1)
		u.early = append(u.early, in...)
		return l.relayUp(u, nil)
	}
	if c.InboundBuffered() < u.need {
		return gnet.None // the frame in progress is not whole yet
	}
	return l.relayUp(u, c)
}

// relayUp relays the whole upstream frames at the head of c's input (or
// of u.early when c is nil) to the client, in one write.
func (l *loop) relayUp(u *upstream, c gnet.Conn) gnet.Action {
	s := u.s
	var buf []byte
	if c != nil {
		buf, _ = c.Peek(-1)
	} else {
		buf = u.early
	}
	pos, msgs := 0, 0
	u.need = 0
	for pos < len(buf) {
		var h wsframe.Header
		hn, err := h.Parse(buf[pos:])
		if err == nil && h.Masked {
			// RFC 6455 5.1: "A client MUST close a connection if it
			// detects a masked frame."
			err = wsframe.ErrMaskedFrame
		}
		if err == nil && h.Length > int64(l.g.cfg.MaxMessage) {
			return l.upstreamBroke(u, errUpstreamTooBig, err)
		}
		if err != nil {
			return l.upstreamBroke(u, errUpstreamProtocol, err)
		}
		if hn == 0 {
			break
		}
		end := pos + hn + int(h.Length)
		if end > len(buf) {
			u.need = end - pos
			break
		}
		switch {
		case h.Op == wsframe.OpClose:
			u.closeSeen = true
		case !h.Op.IsControl():
			u.inMsg = !h.Fin
			if h.Fin {
				msgs++
			}
		}
		pos = end
		if u.closeSeen {
			break // nothing follows a close frame
		}
	}
	if pos > 0 && s.up == u && s.deliverable() {
		l.stats.out(pos, false)
		for range msgs {
			l.stats.out(0, true)
		}
		l.writeRaw(s, buf[:pos])
	}
	if c != nil {
		if pos > 0 { // gnet's Discard(0) discards everything
			_, _ = c.Discard(pos)
		}
	} else if u.early = u.early[pos:]; len(u.early) == 0 {
		u.early = nil
	}
	if !u.closeSeen || s.up != u {
		return gnet.None
	}
	// The upstream closed: its close frame is relayed.
	switch s.state {
	case stClientClosed: // it answered the client's close: done
		delete(l.timed, s)
		s.state = stClosed
		l.unlink(s)
		_ = s.conn.Close()
	case stOpen: // it starts the close: the client's answer goes back to it
		s.state = stClosing
		s.deadline = l.g.deadline(l.g.cfg.CloseTimeout)
		l.timed[s] = struct{}{}
	}
	return gnet.None
}

// upstreamBroke fails the client of an upstream that broke the protocol.
func (l *loop) upstreamBroke(u *upstream, e *wsframe.Error, err error) gnet.Action {
	l.g.log.Debug("upstream protocol error", "node", u.node, "err", err)
	if u.s.up == u {
		l.closeSession(u.s, e.Code, e.Reason, true)
	}
	return gnet.None
}

// upstreamClosed runs when an upstream's socket is gone.
func (l *loop) upstreamClosed(u *upstream) {
	u.conn = nil
	s := u.s
	if u.closed || s.up != u {
		return
	}
	if u.closeSeen {
		// The upstream closed after its close frame: the client's answer
		// has nowhere to go; the client is closed when it answers or
		// CloseTimeout passes.
		l.unlink(s)
		return
	}
	if s.state == stClientClosed {
		l.finishClientClose(s) // no answer will come
		return
	}
	l.closeSession(s, errUpstreamLost.Code, errUpstreamLost.Reason, true)
}

// upstreamHeaders are the header lines sent upstream for the request being
// upgraded: the client's end-to-end headers, and the gateway's
// X-Forwarded-* and X-Wsgate-* (the client's own are dropped, so it cannot
// forge them).
func (h *handshake) upstreamHeaders(peer net.Addr) []byte {
	g := h.l.g
	b := append([]byte(nil), h.fwd...)
	header := func(name string, value ...string) {
		b = append(b, name...)
		b = append(b, ": "...)
		for _, v := range value {
			b = append(b, v...)
		}
		b = append(b, "\r\n"...)
	}
	if len(h.protocols) > 0 {
		header("Sec-WebSocket-Protocol", string(h.protocols))
	}
	if ip := peerIP(peer); ip.IsValid() {
		header("X-Forwarded-For", ip.String())
	}
	proto := "http"
	if g.tls != nil {
		proto = "https"
	}
	header("X-Forwarded-Proto", proto)
	if len(h.host) > 0 {
		header("X-Forwarded-Host", string(h.host))
	}
	header("X-Wsgate-Gateway", g.cfg.ID)
	if !h.keyless {
		header("X-Wsgate-Key", url.PathEscape(string(h.key)))
	}
	if g.auth != nil && h.id.claims != nil {
		header("X-Wsgate-Claims", base64.RawURLEncoding.EncodeToString(h.id.claims))
		if h.id.exp > 0 {
			header("X-Wsgate-Expires", strconv.FormatInt(h.id.exp, 10))
		}
	}
	return b
}

// dropHeaders are request headers not forwarded upstream: hop-by-hop ones
// (RFC 9110 7.6.1), the upgrade's own (the gateway makes its own upgrade
// request), and those the gateway sets (a client must not forge them).
var dropHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
	"TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
	"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP"}

// forwardHeader keeps a client header line for the upstream request.
func (h *handshake) forwardHeader(key, value []byte) {
	if len(key) >= len("X-Wsgate-") && bytes.EqualFold(key[:len("X-Wsgate-")], []byte("X-Wsgate-")) {
		return
	}
	for _, d := range dropHeaders {
		if len(key) == len(d) && bytes.EqualFold(key, []byte(d)) {
			return
		}
	}
	h.fwd = append(h.fwd, key...)
	h.fwd = append(h.fwd, ": "...)
	h.fwd = append(h.fwd, value...)
	h.fwd = append(h.fwd, "\r\n"...)
}
