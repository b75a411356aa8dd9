package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// acceptor is the gateway's own accept loop. gnet's acceptor stops for
// good on the first accept error other than EAGAIN/ECONNRESET (EMFILE from
// a flood of raw connects ends it), and it cannot refuse a connection
// before the event loops see it; so the client listener is a plain Go
// listener, and each admitted connection is handed to an event loop with
// Engine.Register (gnet dups the descriptor onto the loop). Rejections are
// answered here, off the loops.
//
// Invariant: run is the only goroutine that accepts; admission counters are
// atomics (held) or the limiter's mutex (per address).
type acceptor struct {
	g       *Gateway
	ln      *net.TCPListener
	reserve *os.File      // a spare descriptor, given up to shed one connection when descriptors run out
	slots   chan struct{} // rejections being answered at once (each holds a socket for at most rejectLinger)

	starved   atomic.Bool  // descriptors ran out; cleared by the next successful accept (for the log)
	starvedAt atomic.Int64 // unix nanos of the last accept that failed for want of descriptors
	stopped   atomic.Bool  // the accept loop ended with an error: the gateway is unhealthy
	done      chan struct{}
}

// Rejection bounds: a rejected connection gets its answer and up to
// rejectLinger to read it (lingering close, so the answer is not lost to a
// reset); at most rejectSlots are answered at once, the rest are closed
// without an answer.
const (
	rejectLinger = time.Second
	rejectSlots  = 128
	// maxAcceptBackoff bounds the pause after running out of descriptors.
	maxAcceptBackoff = time.Second
	// starvedFor: /readyz fails this long after descriptors last ran out.
	starvedFor = 2 * time.Second
)

// Canned rejection responses, written before the request is read (the
// connection is refused whatever it asks).
var (
	resp503Conns = httpReject(503, "Service Unavailable", "1", "gateway at its connection limit (--max-conns)")
	resp429Conns = httpReject(429, "Too Many Requests", "1", "too many connections from your address (--max-conns-per-ip)")
	resp429Rate  = httpReject(429, "Too Many Requests", "1", "too many handshakes from your address (--handshake-rate-per-ip)")
)

func httpReject(code int, status, retry, body string) []byte {
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + status + "\r\nConnection: close\r\nRetry-After: " + retry +
		"\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// listen opens the client listener: SO_REUSEADDR (Go's default on Unix, so
// a restarted gateway binds at once), SO_REUSEPORT with cfg.ReusePort, TCP
// keepalive on every accepted socket (dead peers free their slot even with
// server pings off).
func listen(cfg *Config) (*net.TCPListener, error) {
	lc := net.ListenConfig{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				if serr == nil && cfg.ReusePort {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

func newAcceptor(g *Gateway, ln *net.TCPListener) *acceptor {
	a := &acceptor{g: g, ln: ln, slots: make(chan struct{}, rejectSlots), done: make(chan struct{})}
	a.reserve, _ = os.Open(os.DevNull)
	return a
}

// run accepts until the listener is closed.
func (a *acceptor) run() {
	defer close(a.done)
	g := a.g
	backoff := time.Duration(0)
	for {
		c, err := a.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors: give the reserve back to take one
				// pending connection off the queue and close it (its
				// client sees a close, not a hang), then pause so the
				// loops can free descriptors (nginx and libuv do the same).
				a.starvedAt.Store(time.Now().UnixNano())
				if !a.starved.Swap(true) {
					g.log.Error("out of file descriptors: shedding new connections until some close", "err", err,
						"held", g.held.Load(), "max_conns", g.cfg.MaxConns)
				}
				a.shedOne()
				g.metrics.reject("fd_exhausted")
				backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
				time.Sleep(backoff)
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Anything else is not expected to heal: report unhealthy, so
			// a supervisor restarts the process.
			g.log.Error("accept loop stopped; the gateway takes no new clients", "err", err)
			a.stopped.Store(true)
			g.fatal(errors.New("gateway: accept failed: " + err.Error()))
			return
		}
		if a.starved.Swap(false) {
			g.log.Warn("file descriptors available again; accepting")
		}
		backoff = 0
		a.admit(c)
	}
}

// shedOne accepts one pending connection with the reserve descriptor's
// slot and closes it at once.
func (a *acceptor) shedOne() {
	if a.reserve == nil {
		return
	}
	_ = a.reserve.Close()
	a.reserve = nil
	if c, err := a.ln.AcceptTCP(); err == nil {
		_ = c.SetLinger(0)
		_ = c.Close()
	}
	a.reserve, _ = os.Open(os.DevNull)
}

// admit applies the connection limits to c and hands it to an event loop,
// or answers the rejection.
func (a *acceptor) admit(c *net.TCPConn) {
	g := a.g
	if g.draining.Load() {
		_ = c.Close()
		return
	}
	if g.held.Add(1) > int64(g.cfg.MaxConns) {
		g.held.Add(-1)
		a.reject(c, resp503Conns, "max_conns")
		return
	}
	ip := peerIP(c.RemoteAddr())
	if why := g.limits.admit(ip); why != "" {
		g.held.Add(-1)
		resp := resp429Conns
		if why == "handshake_rate" {
			resp = resp429Rate
		}
		a.reject(c, resp, why)
		return
	}
	ctx := gnet.NewContext(gnet.NewNetConnContext(context.Background(), c), admitted)
	if _, err := g.eng.Register(ctx); err != nil {
		// The engine is stopping, or gnet's worker pool is full.
		g.held.Add(-1)
		g.limits.release(ip)
		_ = c.Close()
		return
	}
	// gnet closes c after dup'ing its descriptor onto the loop.
}

// admission marks a connection handed to the loops by the acceptor.
type admission struct{ _ byte }

// admitted is the context of every admitted connection; OnOpen closes any
// client connection without it.
var admitted = &admission{}

// reject answers c with resp and closes it after the client had the
// chance to read it, counting the rejection by reason.
func (a *acceptor) reject(c *net.TCPConn, resp []byte, reason string) {
	a.g.metrics.reject(reason)
	select {
	case a.slots <- struct{}{}:
	default:
		a.g.metrics.reject("reject_overflow")
		_ = c.SetLinger(0)
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-a.slots }()
		_ = c.SetDeadline(time.Now().Add(rejectLinger))
		if _, err := c.Write(resp); err == nil {
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
		_ = c.Close()
	}()
}

// close stops accepting and waits for the loop to end.
func (a *acceptor) close() {
	_ = a.ln.Close()
	<-a.done
	if a.reserve != nil {
		_ = a.reserve.Close()
	}
}

// peerIP is the address part of a TCP peer address (IPv4-mapped IPv6
// addresses as IPv4).
func peerIP(addr net.Addr) netip.Addr {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// saturated names why the gateway cannot take a new client now (at its
// connection cap, or out of descriptors), or returns "".
func (g *Gateway) saturated() string {
	switch {
	case g.held.Load() >= int64(g.cfg.MaxConns):
		return "at the connection limit (--max-conns " + strconv.Itoa(g.cfg.MaxConns) + ")"
	case g.accept != nil && time.Since(time.Unix(0, g.accept.starvedAt.Load())) < starvedFor:
		return "out of file descriptors; shedding new connections"
	case g.accept != nil && g.accept.stopped.Load():
		return "the accept loop stopped"
	}
	return ""
}
