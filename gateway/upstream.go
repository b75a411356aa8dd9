package gateway

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/forwarded"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/ring"
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
// Invariant: owned by the client's loop goroutine, like its session.
type upstream struct {
	s       *session
	node    string
	addr    string        // the member's ws:// URL
	clients *atomic.Int64 // the gateway's client count of this node
	conn    gnet.Conn     // set by OnOpen inside connect; nil after close

	accept   string // the Sec-WebSocket-Accept the upgrade must answer; "" once upgraded
	deadline int64  // Gateway.deadline clock: connected and upgraded by then, or the client is closed
	held     []byte // client frames that arrived before the upgrade completed
	// resp is the client's 101, not yet sent: the client offered
	// subprotocols, and the one the upstream chooses goes into it
	// (upgradeTraffic). Until then a failure is answered with an HTTP
	// status, not a close frame. offered lists what the client offered.
	resp    []byte
	offered string

	need      int  // inbound bytes the next upstream frame needs before it is whole
	inMsg     bool // the upstream is in a fragmented data message (a gateway data frame must wait)
	closeSeen bool // the upstream's close frame was relayed to the client
	closed    bool // detached: the socket is closed
	detaching bool // the gateway is sending its close: a failed write must not close the client a second time
}

// pushPlain writes data as a text message to key's clients on this gateway
// that are routed to the plain upstream node (which has no control link to
// take a push): into each client's stream, between two of the upstream's
// messages; a client in the middle of one (rare: a fragmented message) is
// not reached. It returns how many clients were reached.
func (g *Gateway) pushPlain(ctx context.Context, key, node string, data []byte) int {
	frame := wsframe.AppendFrame(nil, true, wsframe.OpText, data)
	total := 0
	for _, l := range g.loopList() {
		ch := make(chan int, 1)
		if l.exec(func() {
			ch <- l.sendKey(key, frame, func(s *session) bool { return s.up != nil && s.up.node == node && s.between() })
		}) != nil {
			continue
		}
		select {
		case n := <-ch:
			total += n
		case <-ctx.Done():
			return total
		}
	}
	return total
}

// notePlain records the result of a connect to the plain upstream node:
// its health in /api/nodes and the console.
// Called on the loops: a sync.Map, whose delete of an absent key (the
// usual case: connects succeed) takes no lock.
func (g *Gateway) notePlain(node string, ok bool) {
	if ok {
		g.plainDown.Delete(node)
	} else {
		g.plainDown.Store(node, true)
	}
}

// plainHealthy reports whether this gateway's last connect to the plain
// upstream node succeeded (a node not tried yet counts as healthy).
func (g *Gateway) plainHealthy(node string) bool {
	_, down := g.plainDown.Load(node)
	return !down
}

// upgraded reports whether the upstream accepted the WebSocket upgrade.
func (u *upstream) upgraded() bool { return u.accept == "" }

// upTarget is a plain upstream's address, resolved off the loops when it
// joins the ring (resolveTargets), so that connecting is two system calls
// on the loop.
type upTarget struct {
	sa   unix.Sockaddr
	tcp  *net.TCPAddr
	host string // the URL's host:port, for the Host header
	path string // the URL's path: the prefix of every request URI
	err  error  // the address could not be resolved
}

// openUpstream routes s to the plain upstream at addr (node's ws:// URL):
// counts it, connects a non-blocking socket on this loop and sends the
// upgrade request. The client's frames are held until the upstream's 101.
func (l *loop) openUpstream(s *session, node, addr string, counted bool, peer net.Addr, resp []byte) {
	u := &upstream{s: s, node: node, addr: addr, clients: l.nodeCounter(node), resp: resp}
	if resp != nil {
		u.offered = string(l.hs.protocols)
	}
	s.up = u
	if !counted {
		u.clients.Add(1)
	}
	t := l.g.target(addr)
	if t == nil || t.err != nil {
		l.upstreamFailed(u, errUpstreamUnavailable)
		return
	}
	sa := t.sockaddr() // a copy: unix.Connect writes into it, and the loops share t
	var nonce [16]byte
	for i := range nonce {
		nonce[i] = byte(rand.Uint32())
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	u.accept = acceptKey(key)
	uri := upstreamPath(t.path, l.hs.target)
	// In the loop's scratch buffer: nothing between here and the Write
	// below uses it (connect's OnOpen only records the conn); a failure
	// path may reuse it, after which req is not written.
	req := appendUpgradeRequest(l.out[:0], t, uri, key, l.hs.upstreamHeaders(peer, uri))
	if err := l.connect(u, sa, t.tcp); err != nil {
		l.g.log.Debug("upstream connect failed", "node", node, "addr", addr, "err", err)
		l.upstreamFailed(u, errUpstreamUnavailable)
		return
	}
	u.deadline = l.g.deadline(upstreamDialTimeout)
	l.dialing = append(l.dialing, u)
	_, _ = u.conn.Write(req) // waits in gnet's buffer until the connect completes
}

// sockaddr is a copy of t's address for one connect.
func (t *upTarget) sockaddr() unix.Sockaddr {
	switch a := t.sa.(type) {
	case *unix.SockaddrInet4:
		c := *a
		return &c
	case *unix.SockaddrInet6:
		c := *a
		return &c
	}
	return t.sa
}

// connect opens a non-blocking socket to sa and enrolls it on the loop
// (OnOpen sets u.conn before EnrollFD returns). The connect completes, or
// fails (OnClose), on the loop.
func (l *loop) connect(u *upstream, sa unix.Sockaddr, addr *net.TCPAddr) error {
	family := unix.AF_INET
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		_ = unix.Close(fd)
		return err
	}
	if err := gnet.EnrollFD(l.el, fd, sa, addr, u); err != nil {
		return err
	}
	if u.conn == nil {
		return errors.New("gateway: upstream socket closed as it was enrolled")
	}
	return nil
}

// upstreamOpened runs on the loop, inside connect, when the socket is
// enrolled.
func (l *loop) upstreamOpened(u *upstream, c gnet.Conn) {
	u.conn = c
}

// appendUpgradeRequest appends the upgrade request for uri with the extra
// header lines hdrs.
func appendUpgradeRequest(dst []byte, t *upTarget, uri, key string, hdrs []byte) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, uri...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, t.host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, hdrs...)
	return append(dst, "\r\n"...)
}

// lookupIP resolves host names (a variable: tests stand in for DNS).
var lookupIP = net.DefaultResolver.LookupNetIP

// resolveTarget resolves a plain upstream's ws:// URL (off the loops).
func resolveTarget(ctx context.Context, addr string) *upTarget {
	up, err := membership.UpstreamURL(addr)
	if err != nil {
		return &upTarget{err: err}
	}
	ips, err := lookupIP(ctx, "ip", up.Hostname())
	if err == nil && len(ips) == 0 {
		err = fmt.Errorf("no address for %s", up.Hostname())
	}
	if err != nil {
		return &upTarget{err: err}
	}
	port, _ := strconv.Atoi(up.Port())
	ip := ips[0].Unmap()
	for _, a := range ips { // prefer IPv4, as net.Dial does
		if a.Unmap().Is4() {
			ip = a.Unmap()
			break
		}
	}
	t := &upTarget{tcp: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), host: up.Host, path: up.EscapedPath()}
	if ip.Is4() {
		t.sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		t.sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	return t
}

// Upstream name resolution: a new member is resolved when it joins the
// ring (rebuild, briefly: resolveJoinTimeout); every member again each
// resolveEvery (refreshTargets), so that an address that failed at start
// (the upstream's container not up yet) or changed (a restarted container
// or pod) is picked up. A failed refresh keeps the last good address.
const (
	resolveJoinTimeout = 2 * time.Second
	resolveEvery       = 15 * time.Second
)

// resolveTargets publishes the map the loops read for the plain upstreams
// among members: known ones as they are, new ones resolved now (off the
// loops; rebuild calls it), all of them again with refresh.
func (g *Gateway) resolveTargets(members []ring.Member, refresh bool) {
	g.targetsMu.Lock()
	defer g.targetsMu.Unlock()
	old := g.targets.Load()
	next := make(map[string]*upTarget)
	for _, m := range members {
		if !membership.IsPlainAddr(m.Addr) {
			continue
		}
		prev := (*old)[m.Addr]
		if prev != nil && !refresh {
			next[m.Addr] = prev
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), resolveJoinTimeout)
		t := resolveTarget(ctx, m.Addr)
		cancel()
		switch {
		case t.err == nil:
		case prev != nil && prev.err == nil:
			g.log.Warn("plain upstream address not resolved again; keeping the last one", "node", m.ID, "addr", m.Addr, "err", t.err)
			t = prev
		default:
			g.log.Error("plain upstream address not resolved: its clients are closed with 1013 until it is (retried every 15s)", "node", m.ID, "addr", m.Addr, "err", t.err)
		}
		next[m.Addr] = t
	}
	g.targets.Store(&next)
}

// refreshTargets re-resolves the plain upstreams on the ring (every
// resolveEvery).
func (g *Gateway) refreshTargets(time.Time) {
	if r := g.ring.Load(); r != nil && g.hasPlain.Load() {
		g.resolveTargets(r.Members(), true)
	}
}

// target is the resolved address of a plain upstream. Safe on any goroutine.
func (g *Gateway) target(addr string) *upTarget { return (*g.targets.Load())[addr] }

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

// acceptKey is the Sec-WebSocket-Accept that answers key (RFC 6455 4.2.2).
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// maxUpgradeResponse is the largest upgrade response head accepted from an
// upstream.
const maxUpgradeResponse = 8 << 10

// Errors of parseUpgradeResponse.
var (
	errResponseIncomplete = errors.New("upgrade response incomplete")
	errResponseMalformed  = errors.New("upstream's upgrade response is not HTTP/1.1")
	errNotUpgraded        = errors.New("upstream did not answer 101 Switching Protocols")
	errBadAccept          = errors.New("upstream's 101 lacks Upgrade: websocket, Connection: Upgrade or the right Sec-WebSocket-Accept")
	errUnofferedExtension = errors.New("upstream's 101 names an extension that was not offered")
)

// parseUpgradeResponse checks the upstream's answer to the upgrade at the
// head of b (RFC 6455 4.1: status 101, "Upgrade: websocket", "Connection:
// Upgrade", Sec-WebSocket-Accept matching the key; no extension, as none
// was offered) and returns its length. status is the status code and
// reason when the status line could be read. errResponseIncomplete: no
// CRLFCRLF in b yet.
func parseUpgradeResponse(b []byte, accept string) (n int, status string, err error) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return 0, "", errResponseIncomplete
	}
	line, rest, _ := bytes.Cut(b[:end], []byte("\r\n"))
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, "", errResponseMalformed
	}
	code := line[9:12]
	status = string(line[9:])
	if string(code) != "101" {
		return 0, status, errNotUpgraded
	}
	var upgrade, connection, accepted bool
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, status, errResponseMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				connection = connection || bytes.EqualFold(bytes.TrimSpace(tok), []byte("upgrade"))
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Accept")):
			accepted = string(value) == accept
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Extensions")):
			return 0, status, errUnofferedExtension
		}
	}
	if !upgrade || !connection || !accepted {
		return 0, status, errBadAccept
	}
	return end + 4, status, nil
}

// ProbeUpstream checks that the plain upstream at addr (a ws:// URL)
// accepts a WebSocket upgrade: it dials, upgrades, closes with 1001 and
// reports what failed (`wsgate announce`'s health check). The request
// carries "X-Wsgate-Health: 1" and, with a cluster secret, is signed as
// forwarded by gateway "announce/<id>" (no key), so that an upstream that
// checks forwarded.Verify lets it through. It blocks.
func ProbeUpstream(ctx context.Context, addr string, secret []byte, id string) error {
	t := resolveTarget(ctx, addr)
	if t.err != nil {
		return t.err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.tcp.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	key := base64.StdEncoding.EncodeToString([]byte("wsgate-health-16"))
	uri := upstreamPath(t.path, nil)
	hdrs := []byte("X-Wsgate-Health: 1\r\n")
	if len(secret) > 0 {
		fid := forwarded.Identity{Gateway: "announce/" + id, URI: uri}
		hdrs = fmt.Appendf(hdrs, "%s: %s\r\n%s: %s\r\n", forwarded.HeaderGateway, fid.Gateway,
			forwarded.HeaderSignature, forwarded.Sign(secret, time.Now(), fid))
	}
	if _, err := conn.Write(appendUpgradeRequest(nil, t, uri, key, hdrs)); err != nil {
		return err
	}
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxUpgradeResponse {
				return errors.New("upstream's upgrade response is too large")
			}
			buf = slices.Grow(buf, len(buf))
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if _, status, perr := parseUpgradeResponse(buf, acceptKey(key)); perr != errResponseIncomplete {
			if perr == errNotUpgraded {
				return fmt.Errorf("upstream answered %s", status)
			}
			if perr != nil {
				return perr
			}
			var b [wsframe.MaxControlPayload + wsframe.MaxHeaderLen]byte
			_, err = conn.Write(maskedClose(b[:0], wsframe.CloseGoingAway, []byte("health check")))
			return err
		}
		if err != nil {
			return err
		}
	}
}

// upstreamFailed closes the client of u, whose upstream could not be
// reached or upgraded, with e's code and reason.
func (l *loop) upstreamFailed(u *upstream, e *wsframe.Error) {
	if u.closed || u.s.up != u {
		return
	}
	why := "unavailable"
	if e.Code == wsframe.CloseBadGateway {
		why = "bad_handshake"
	}
	l.g.metrics.upstreamDial(why)
	l.g.notePlain(u.node, false)
	if u.resp != nil {
		l.refuseUpgrade(u, e)
		return
	}
	if u.s.state == stClientClosed {
		l.finishClientClose(u.s) // the client closed meanwhile: no answer will come
		return
	}
	l.closeSession(u.s, e.Code, e.Reason, true)
}

// upgradeTraffic reads the upstream's answer to the upgrade; once it is a
// valid 101, the frames the client sent meanwhile go to the upstream, and
// the upstream's own frames (any that came with the 101) to the client.
func (l *loop) upgradeTraffic(u *upstream, c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	n, status, err := parseUpgradeResponse(buf, u.accept)
	switch {
	case err == errResponseIncomplete && len(buf) <= maxUpgradeResponse:
		return gnet.None
	case err == errResponseIncomplete:
		err = errors.New("upstream's upgrade response is too large")
	case err == errNotUpgraded:
		l.upstreamFailed(u, &wsframe.Error{Code: wsframe.CloseBadGateway, Reason: "upstream refused the upgrade: " + status})
		return gnet.None
	}
	if err != nil {
		l.g.log.Debug("upstream upgrade failed", "node", u.node, "addr", u.addr, "err", err)
		l.upstreamFailed(u, errUpstreamProtocol)
		return gnet.None
	}
	if u.resp != nil {
		// RFC 6455 4.1: the client fails a handshake whose protocol is not
		// one it offered; so does the gateway, for its client.
		proto, ok := responseProtocol(buf[:n])
		if !ok || proto != "" && !offered(u.offered, proto) {
			l.upstreamFailed(u, &wsframe.Error{Code: wsframe.CloseBadGateway, Reason: "upstream chose a subprotocol the client did not offer"})
			return gnet.None
		}
		resp := u.resp
		u.resp = nil
		if proto != "" {
			resp = append(append(append(resp[:len(resp)-2], "Sec-WebSocket-Protocol: "...), proto...), "\r\n\r\n"...)
		}
		if _, err := u.s.conn.Write(resp); err != nil || u.s.up != u {
			return gnet.None // the client is gone (OnClose ran inside Write)
		}
	}
	_, _ = c.Discard(n)
	u.accept = ""
	l.g.metrics.upstreamDial("ok")
	l.g.notePlain(u.node, true)
	if held := u.held; len(held) > 0 {
		u.held = nil
		u.write(held)
	}
	if c.InboundBuffered() == 0 {
		return gnet.None
	}
	return l.relayUp(u, c)
}

// refuseUpgrade answers a client whose 101 waited for its upstream (it
// offered subprotocols) with an HTTP error instead: 502 when the upstream
// answered badly, 503 when it could not be reached. The client never
// became a WebSocket.
func (l *loop) refuseUpgrade(u *upstream, e *wsframe.Error) {
	s := u.s
	status := "503 Service Unavailable"
	switch e.Code {
	case wsframe.CloseBadGateway:
		status = "502 Bad Gateway"
	case wsframe.CloseProtocolError, wsframe.CloseInvalidPayload, wsframe.CloseTooBig:
		status = "400 Bad Request" // the client's own frames were wrong: no point retrying
	}
	u.resp = nil
	_, _ = s.conn.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: text/plain\r\nContent-Length: " +
		strconv.Itoa(len(e.Reason)+1) + "\r\nConnection: close\r\n\r\n" + e.Reason + "\n"))
	if s.up != u {
		return // the write failed: OnClose ran inside it
	}
	l.unlink(s)
	s.state = stClosed
	_ = s.conn.Close()
}

// responseProtocol is the Sec-WebSocket-Protocol of an upgrade response
// head, "" if none; ok is false when the header repeats (an ambiguous
// answer).
func responseProtocol(head []byte) (proto string, ok bool) {
	seen := false
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		if name, value, found := bytes.Cut(line, []byte(":")); found && bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")) {
			if seen {
				return "", false
			}
			seen, proto = true, string(bytes.TrimSpace(value))
		}
	}
	return proto, true
}

// offered reports whether proto is one of list's comma-separated entries.
func offered(list, proto string) bool {
	for p := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(p) == proto {
			return true
		}
	}
	return false
}

// sweepDialing closes the clients whose upstream did not connect and
// upgrade in time (janitor, on the loop).
func (l *loop) sweepDialing(now int64) {
	keep := l.dialing[:0]
	for _, u := range l.dialing {
		switch {
		case u.closed || u.upgraded():
		case now >= u.deadline:
			l.g.log.Debug("upstream connect timed out", "node", u.node, "addr", u.addr)
			l.upstreamFailed(u, errUpstreamUnavailable)
		default:
			keep = append(keep, u)
		}
	}
	clear(l.dialing[len(keep):])
	l.dialing = keep
}

// between reports whether a message of the gateway's own may be written to
// s now: always, unless s's plain upstream is in the middle of a
// fragmented message (RFC 6455 5.4: the fragments of a message must not be
// interleaved with another message's).
//
// Nor before its 101: a client whose 101 waits for its upstream's choice
// of subprotocol gets no frame of the gateway's.
func (s *session) between() bool { return s.up == nil || !s.up.inMsg && s.up.resp == nil }

// awaiting101 reports whether s's 101 still waits for its plain upstream
// (the client offered subprotocols): no WebSocket frame may go to it yet.
func (s *session) awaiting101() bool { return s.up != nil && s.up.resp != nil }

// write sends client frames upstream, or holds them until the upgrade. A
// write that fails makes gnet close the socket inside Write: OnClose
// (upstreamClosed) has run when it returns, so a caller checks s.up after.
func (u *upstream) write(b []byte) {
	switch {
	case u.closed || u.conn == nil && u.upgraded():
	case u.upgraded():
		_, _ = u.conn.Write(b)
	default:
		u.held = append(u.held, b...)
	}
}

// backlog is how many client bytes wait for the upstream.
func (u *upstream) backlog() int {
	switch {
	case !u.upgraded():
		return len(u.held)
	case u.conn == nil:
		return 0
	}
	return u.conn.OutboundBuffered()
}

// close detaches u: its socket closes once what was written is flushed
// (gnet's Close is queued behind this callback).
func (u *upstream) close() {
	u.closed = true
	u.held = nil
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
	u.detaching = true // if the write fails, the caller is closing s anyway (upstreamClosed leaves it)
	u.write(maskedClose(b[:0], code, reason))
}

// maskedClose appends a client's close frame with code and reason (cut to
// fit a control frame) to dst.
func maskedClose(dst []byte, code uint16, reason []byte) []byte {
	// RFC 6455 5.3: the masking key is "a fresh 32-bit value" per frame,
	// unpredictable to the application (math/rand/v2's generator is
	// ChaCha8, seeded from the system).
	mask := rand.Uint32()
	return wsframe.AppendMaskedClose(dst, code, string(reason), [4]byte{byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)})
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
			return l.passFail(s, buf[:pos], err)
		}
		if hn == 0 {
			break
		}
		// RFC 6455 5.1: a server (here, the gateway on the server's
		// behalf) "MUST close the connection upon receiving a frame that
		// is not masked".
		if !h.Masked {
			return l.passFail(s, buf[:pos], wsframe.ErrUnmaskedFrame)
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
			return l.passFail(s, buf[:pos], wsframe.ErrUnexpectedContinuation)
		case h.Op != wsframe.OpContinuation && s.op != 0:
			return l.passFail(s, buf[:pos], wsframe.ErrExpectedContinuation)
		case h.Op != wsframe.OpContinuation:
			s.op, s.msgLen = h.Op, 0
		}
		if h.Fin {
			s.op = 0
		}
		if !l.allowFrame(s, now) {
			l.g.metrics.reject("frame_rate")
			return l.passFail(s, buf[:pos], errRateLimit)
		}
		if h.Length > int64(l.g.cfg.MaxMessage)-int64(s.msgLen) {
			return l.passFail(s, buf[:pos], wsframe.ErrTooBig)
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
	if s.up != u {
		// The write failed and gnet closed the upstream inside it
		// (upstreamClosed ran): s is closed or closing already.
		if s.state == stClosed {
			return gnet.Close
		}
		return gnet.None
	}
	if !u.upgraded() && len(u.held) > upstreamHoldLimit {
		return l.fail(s, errUpstreamNotReady)
	}
	if u.backlog() > l.g.cfg.MaxLinkBacklog {
		return l.fail(s, errUpstreamOverloaded)
	}
	return gnet.None
}

// passFail fails s for a bad client frame, after relaying fwd, the whole
// frames and payload parsed before it: the upstream's stream stays whole,
// and the close frame the gateway sends it falls between two frames.
func (l *loop) passFail(s *session, fwd []byte, err error) gnet.Action {
	if len(fwd) > 0 && s.state == stOpen {
		s.up.write(fwd)
	}
	return l.fail(s, err)
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
		return l.passFail(s, buf[:pos], err)
	}
	switch s.state {
	case stOpen:
		u.write(buf[:end])
	case stClosing:
		// The answer to the upstream's close; the data frames before it
		// were dropped (the upstream closed), so only the close goes.
		u.write(buf[pos:end])
	}
	_, _ = c.Discard(len(buf)) // nothing may follow a close frame
	switch s.state {
	case stClientClosed:
		return gnet.None // a second close while the first is answered: ignored, as on links
	case stClosing:
		// The client answered the upstream's close (closeSeen).
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
	if !u.upgraded() {
		return l.upgradeTraffic(u, c)
	}
	if c.InboundBuffered() < u.need {
		return gnet.None // the frame in progress is not whole yet
	}
	return l.relayUp(u, c)
}

// relayUp relays the whole upstream frames at the head of c's input to
// the client, in one write.
func (l *loop) relayUp(u *upstream, c gnet.Conn) gnet.Action {
	s := u.s
	buf, _ := c.Peek(-1)
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
			// RFC 6455 5.5.1: a close body is empty or a valid code
			// and UTF-8 reason; a bad one is the upstream's error.
			if _, _, err := wsframe.ParseClosePayload(buf[pos+hn : end]); err != nil {
				return l.upstreamBroke(u, errUpstreamProtocol, err)
			}
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
	if pos > 0 { // gnet's Discard(0) discards everything
		_, _ = c.Discard(pos)
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
	switch {
	case u.s.up != u:
	case u.s.state == stClientClosed:
		l.finishClientClose(u.s) // its answer will not come
	default:
		l.closeSession(u.s, e.Code, e.Reason, true)
	}
	return gnet.None
}

// upstreamClosed runs when an upstream's socket is gone.
func (l *loop) upstreamClosed(u *upstream) {
	u.conn = nil
	s := u.s
	if u.closed || u.detaching || s.up != u {
		return
	}
	if u.closeSeen {
		// The upstream closed after its close frame: the client's answer
		// has nowhere to go; the client is closed when it answers or
		// CloseTimeout passes.
		l.unlink(s)
		return
	}
	switch {
	case !u.upgraded(): // the connect failed, or the upstream closed before its 101
		l.upstreamFailed(u, errUpstreamUnavailable)
	case s.state == stClientClosed:
		l.finishClientClose(s) // no answer will come
	default:
		l.closeSession(s, errUpstreamLost.Code, errUpstreamLost.Reason, true)
	}
}

// upstreamHeaders are the header lines sent upstream for the request being
// upgraded (to uri): the client's end-to-end headers, and the gateway's
// X-Forwarded-* and X-Wsgate-* (the client's own are dropped, so it cannot
// forge them), signed with the cluster secret when there is one
// (package forwarded).
func (h *handshake) upstreamHeaders(peer net.Addr, uri string) []byte {
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
	id := forwarded.Identity{Gateway: g.cfg.ID, URI: uri}
	if ip := peerIP(peer); ip.IsValid() {
		id.For = ip.String()
		header(forwarded.HeaderFor, id.For)
	}
	proto := "http"
	if g.tls != nil {
		proto = "https"
	}
	header("X-Forwarded-Proto", proto)
	if len(h.host) > 0 {
		header("X-Forwarded-Host", string(h.host))
	}
	header(forwarded.HeaderGateway, id.Gateway)
	if !h.keyless {
		id.Key = url.PathEscape(string(h.key))
		header(forwarded.HeaderKey, id.Key)
	}
	if g.auth != nil && h.id.claims != nil {
		id.Claims = base64.RawURLEncoding.EncodeToString(h.id.claims)
		header(forwarded.HeaderClaims, id.Claims)
		if h.id.exp > 0 {
			header("X-Wsgate-Expires", strconv.FormatInt(h.id.exp, 10))
		}
	}
	if secret := g.cfg.ClusterSecret; len(secret) > 0 {
		header(forwarded.HeaderSignature, forwarded.Sign(secret, time.Now(), id))
	}
	return b
}

// dropHeaders are request headers not forwarded upstream: hop-by-hop ones
// (RFC 9110 7.6.1), the upgrade's own (the gateway makes its own upgrade
// request), and those the gateway sets (a client must not forge them).
var dropHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate",
	"TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
	"Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
	"Forwarded", "X-Real-IP"} // and every X-Forwarded-* and X-Wsgate-* (forwardHeader)

// forwardHeader keeps a client header line for the upstream request.
func (h *handshake) forwardHeader(key, value []byte) {
	for _, prefix := range []string{"X-Wsgate-", "X-Forwarded-"} {
		if len(key) >= len(prefix) && bytes.EqualFold(key[:len(prefix)], []byte(prefix)) {
			return
		}
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
