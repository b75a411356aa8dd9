package gateway

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Admission: every accepted client connection passes the connection
// limits in OnOpen, on its event loop, before it may send a byte of its
// request. A refused one gets its HTTP answer at once and a lingering
// close (the client can read the answer; a reset would lose it).
//
// Descriptor exhaustion: gnet (patched, third_party/gnet) reports an
// accept that failed for want of descriptors to acceptError and sheds the
// pending connections through a reserve descriptor instead of shutting the
// engine down; --max-conns keeps client sockets below the open-file limit
// so that links, Redis and RabbitMQ keep theirs.

// Rejection bounds: a rejected connection is answered and given up to
// rejectLinger to read the answer; at most rejectSlots linger at once, the
// rest are closed right after the answer.
const (
	rejectLinger = time.Second
	rejectSlots  = 128
	// starvedFor: /readyz fails this long after descriptors last ran out.
	starvedFor = 2 * time.Second
)

// Canned rejection responses, written before the request is read (the
// connection is refused whatever it asks).
var (
	resp503Conns = httpResponse(503, "Service Unavailable", "1", "gateway at its connection limit (--max-conns)")
	resp429Conns = httpResponse(429, "Too Many Requests", "1", "too many connections from your address (--max-conns-per-ip)")
	resp429Rate  = httpResponse(429, "Too Many Requests", "1", "too many handshakes from your address (--handshake-rate-per-ip)")
)

// httpResponse is a whole plain-text HTTP/1.1 answer that closes the
// connection, with a Retry-After header unless retry is "".
func httpResponse(code int, status, retry, body string) []byte {
	h := "HTTP/1.1 " + strconv.Itoa(code) + " " + status + "\r\nConnection: close\r\n"
	if retry != "" {
		h += "Retry-After: " + retry + "\r\n"
	}
	return []byte(h + "Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// admit applies the connection limits to a new client connection. It
// returns nil, or the answer that refuses it and the reason for metrics.
// Runs on the connection's loop; held and the limiter are shared by the
// loops (an atomic, and a mutex taken only when a per-address limit is on).
func (g *Gateway) admit(c gnet.Conn) (resp []byte, reason string) {
	if g.held.Add(1) > int64(g.cfg.MaxConns) {
		g.held.Add(-1)
		return resp503Conns, "max_conns"
	}
	if !g.limits.on() {
		return nil, ""
	}
	switch g.limits.admit(peerIP(c.RemoteAddr())) {
	case "":
		return nil, ""
	case "handshake_rate":
		g.held.Add(-1)
		return resp429Rate, "handshake_rate"
	default:
		g.held.Add(-1)
		return resp429Conns, "per_ip_conns"
	}
}

// reject answers a refused connection and closes it: half-closed at once
// (FIN after the answer), then closed once the client closes its side or
// rejectLinger passes, discarding what it sends meanwhile. Beyond
// rejectSlots lingering connections, it is closed right after the answer.
func (l *loop) reject(s *session, c gnet.Conn, resp []byte, reason string) gnet.Action {
	g := l.g
	g.metrics.reject(reason)
	// The state first: if the client reset the connection, gnet closes it
	// inside Write and OnClose runs then, which must see a refused
	// connection (nothing to give back: admit did).
	s.state = stRejected
	if _, err := c.Write(resp); err != nil {
		return gnet.None // closed already
	}
	if g.lingering.Add(1) > rejectSlots {
		g.lingering.Add(-1)
		g.metrics.reject("reject_overflow")
		return gnet.Close
	}
	s.lingers = true
	_ = unix.Shutdown(c.Fd(), unix.SHUT_WR) // gnet wrote the answer already, or keeps it queued: see below
	if c.OutboundBuffered() > 0 {
		// The socket did not take the answer whole (never on a fresh
		// connection): send it, then close.
		return gnet.Close
	}
	s.deadline = g.deadline(rejectLinger)
	l.timed[s] = struct{}{}
	return gnet.None
}

// acceptError is gnet's report of an accept that failed for want of
// descriptors (or memory): the pending connections were shed.
func (g *Gateway) acceptError(err error) {
	now := time.Now().UnixNano()
	last := g.starvedAt.Swap(now)
	g.metrics.reject("fd_exhausted")
	if now-last > int64(10*time.Second) {
		g.log.Error("out of file descriptors: shedding new connections until some close", "err", err,
			"held", g.held.Load(), "max_conns", g.cfg.MaxConns)
	}
}

// saturated names why the gateway cannot take a new client now (at its
// connection cap, or out of descriptors), or returns "".
func (g *Gateway) saturated() string {
	switch {
	case g.held.Load() >= int64(g.cfg.MaxConns):
		return "at the connection limit (--max-conns " + strconv.Itoa(g.cfg.MaxConns) + ")"
	case time.Since(time.Unix(0, g.starvedAt.Load())) < starvedFor || !descriptorFree():
		return "out of file descriptors; shedding new connections"
	}
	return ""
}

// descriptorFree reports whether the process can open one more descriptor
// now (the accepts that failed may be seconds old, and nothing new may have
// tried since).
func descriptorFree() bool {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	_ = unix.Close(fd)
	return true
}

// peerIP is the address part of a TCP peer address (IPv4-mapped IPv6
// addresses as IPv4), without an IPv6 zone: gnet makes the net.Addr anew
// on each RemoteAddr call and names the zone by an interface lookup that
// can fail (out of descriptors) or change (a renamed interface), so a
// zone could differ between a client's admission and its release and
// leave its per-IP count held forever.
func peerIP(addr net.Addr) netip.Addr {
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
