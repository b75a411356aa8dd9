// Package bench is the load generator behind `wsgate bench` and the
// side-by-side harness behind `wsgate bench compare`.
//
// The client side is event-driven: a few event loops (one goroutine each,
// locked to an OS thread) own every connection through epoll, so 20,000
// connections cost 20,000 sockets and their small state, not 20,000
// goroutines. Each connection is a minimal RFC 6455 client: masked frames,
// ping answered, close answered; for wss:// the same loops run TLS too
// (tls.go).
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/internal/wsframe"
)

// Handler receives a connection's events. Every call runs on the
// connection's loop goroutine: calls for one connection never overlap, and
// a handler may write to (or close) that connection, and dial, without
// locks. A handler must not block.
type Handler interface {
	// OnOpen is called when the server answered the upgrade with 101.
	OnOpen(c *Conn)
	// OnMessage is called for each whole data message; payload is valid only
	// during the call.
	OnMessage(c *Conn, op wsframe.OpCode, payload []byte)
	// OnClose is called once when the connection ends: code is the close
	// code the server sent (0 if none) and reason a short failure reason
	// ("refused", "http 503", "eof", ...) or the server's close reason.
	OnClose(c *Conn, code int, reason string)
}

// EngineConfig configures an Engine.
type EngineConfig struct {
	// Addr is the target's host:port (IPv4 loopback in practice).
	Addr string
	// Path returns the request path for a key; default "/ws/{key}?userId={key}",
	// which wsgate, nginx (hash $arg_userId) and HAProxy (url_param) all route on.
	Path func(key string) string
	// Sources is how many source addresses 127.0.0.1..N connections are
	// spread over; default 16, at most MaxSources. Keep each under
	// ConnsPerSource connections (SourcesFor).
	Sources int
	// Loops is the number of event loops; default the number of CPUs.
	Loops int
	// TLS, if set, makes every connection wss://: TLS over the same loops.
	TLS *TLSConfig
}

// Engine owns the event loops and every connection dialled through it.
type Engine struct {
	cfg   EngineConfig
	dst   unix.SockaddrInet4
	host  string
	loops []*loop
	base  time.Time
	wg    sync.WaitGroup
	mask  [4]byte
	h     Handler
	tls   *tlsClient // nil for plain WebSocket
}

func (e *Engine) handler() Handler { return e.h }

// Connection states.
const (
	stConnecting = iota
	stTLS        // wss://: the TLS handshake
	stHandshake
	stOpen
	stClosed
)

// Conn is one client connection. Its fields are owned by its loop.
type Conn struct {
	// ID is the caller's index for this connection (Dial's id).
	ID int
	// Key is the routing key (user id) the connection was opened with.
	Key string
	// Started is when the dial began, in Engine.Now units.
	Started int64

	fd    int
	l     *loop
	state uint8
	fop   wsframe.OpCode
	in    []byte   // unparsed input kept between reads (plaintext)
	out   []byte   // output the socket did not take yet (ciphertext with TLS)
	frag  []byte   // a fragmented message being assembled
	tls   *tlsConn // wss:// only; a plain connection keeps its size (TestConnSize)
}

type loop struct {
	idx     int
	e       *Engine
	epfd    int
	evfd    int
	conns   map[int]*Conn
	mu      sync.Mutex
	tasks   []func()
	buf     []byte
	scratch []byte
	tick    func(now int64)
	stop    bool
	tls     *loopTLS // wss:// only
	tbuf    []byte   // wss://: decrypted input
}

// NewEngine starts the event loops. h receives every connection's events.
func NewEngine(cfg EngineConfig, h Handler) (*Engine, error) {
	if cfg.Path == nil {
		cfg.Path = DefaultPath
	}
	if cfg.Sources <= 0 {
		cfg.Sources = minSources
	}
	cfg.Sources = min(cfg.Sources, MaxSources)
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.NumCPU()
	}
	dst, err := resolve(cfg.Addr)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, dst: dst, host: cfg.Addr, base: time.Now(), h: h, mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}}
	if cfg.TLS != nil {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		if e.tls, err = newTLSClient(cfg.TLS, host); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Loops {
		l, err := newLoop(e, i)
		if err != nil {
			e.Close()
			return nil, err
		}
		if e.tls != nil {
			l.tls = newLoopTLS(e.tls)
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.run(h)
		}()
	}
	return e, nil
}

// DefaultPath is the request path for key used unless EngineConfig.Path is set.
func DefaultPath(key string) string { return "/ws/" + key + "?userId=" + key }

func resolve(addr string) (unix.SockaddrInet4, error) {
	var sa unix.SockaddrInet4
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return sa, fmt.Errorf("bench: target %q: %w", addr, err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil && net.ParseIP(host) == nil {
		// A name (wss:// certificates name hosts): its first IPv4 address.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
		cancel()
		if err == nil && len(ips) > 0 {
			ip = ips[0].To4()
		}
	}
	if ip == nil {
		return sa, fmt.Errorf("bench: target %q: want an IPv4 address or a name that has one", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return sa, fmt.Errorf("bench: target %q: bad port", addr)
	}
	copy(sa.Addr[:], ip)
	sa.Port = p
	return sa, nil
}

// Now is the time since the engine started, in nanoseconds (monotonic).
func (e *Engine) Now() int64 { return int64(time.Since(e.base)) }

// Loops is the number of event loops.
func (e *Engine) Loops() int { return len(e.loops) }

// Dial opens connection id with key on loop id % Loops. It returns at once;
// the handler hears OnOpen or OnClose.
func (e *Engine) Dial(id int, key string) {
	l := e.loops[id%len(e.loops)]
	l.exec(func() { l.dial(id, key) })
}

// Exec runs f on loop i (0 <= i < Loops) and returns at once.
func (e *Engine) Exec(i int, f func()) { e.loops[i].exec(f) }

// ExecAll runs f(i) on every loop i and waits until all have returned.
func (e *Engine) ExecAll(f func(i int)) {
	var wg sync.WaitGroup
	for i, l := range e.loops {
		wg.Add(1)
		l.exec(func() {
			defer wg.Done()
			f(i)
		})
	}
	wg.Wait()
}

// SetTick makes every loop call f (on the loop) at least every millisecond;
// nil stops it. It returns once every loop has taken the change.
func (e *Engine) SetTick(f func(loop int, now int64)) {
	e.ExecAll(func(i int) {
		if f == nil {
			e.loops[i].tick = nil
			return
		}
		e.loops[i].tick = func(now int64) { f(i, now) }
	})
}

// CloseAll closes every connection (without a close handshake; the
// handler hears OnClose with reason "local") and waits for it.
func (e *Engine) CloseAll() {
	e.ExecAll(func(i int) {
		l := e.loops[i]
		for _, c := range l.conns {
			l.fail(c, 0, "local")
		}
	})
}

// Close closes every connection and stops the loops.
func (e *Engine) Close() {
	for _, l := range e.loops {
		l.exec(func() {
			for _, c := range l.conns {
				_ = unix.Close(c.fd)
			}
			l.conns = nil
			l.stop = true
		})
	}
	e.wg.Wait()
	for _, l := range e.loops {
		_ = unix.Close(l.epfd)
		_ = unix.Close(l.evfd)
	}
}

func newLoop(e *Engine, idx int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("bench: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		return nil, err
	}
	return &loop{idx: idx, e: e, epfd: epfd, evfd: evfd, conns: make(map[int]*Conn), buf: make([]byte, 64<<10)}, nil
}

// exec queues f for the loop and wakes it.
func (l *loop) exec(f func()) {
	l.mu.Lock()
	l.tasks = append(l.tasks, f)
	wake := len(l.tasks) == 1
	l.mu.Unlock()
	if wake {
		var one = [8]byte{1}
		_, _ = unix.Write(l.evfd, one[:])
	}
}

func (l *loop) runTasks() {
	var b [8]byte
	_, _ = unix.Read(l.evfd, b[:])
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

func (l *loop) run(h Handler) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]unix.EpollEvent, 1024)
	for !l.stop {
		timeout := -1
		if l.tick != nil {
			timeout = 1
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil && err != unix.EINTR {
			panic("bench: epoll_wait: " + err.Error())
		}
		for i := range n {
			ev := &events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				l.runTasks()
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			l.event(h, c, ev.Events)
		}
		if l.tick != nil {
			l.tick(l.e.Now())
		}
	}
}

func (l *loop) dial(id int, key string) {
	c := &Conn{ID: id, Key: key, Started: l.e.Now(), l: l, fd: -1}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.h().OnClose(c, 0, "socket: "+errnoName(err))
		return
	}
	c.fd = fd
	if l.tls != nil {
		c.tls = &tlsConn{c: c}
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	src := unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, byte(1 + id%l.e.cfg.Sources)}}
	if err := unix.Bind(fd, &src); err != nil {
		_ = unix.Close(fd)
		l.h().OnClose(c, 0, "bind: "+errnoName(err))
		return
	}
	l.conns[fd] = c
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}); err != nil {
		l.fail(c, 0, "epoll: "+errnoName(err))
		return
	}
	dst := l.e.dst
	if err := unix.Connect(fd, &dst); err != nil && err != unix.EINPROGRESS {
		l.fail(c, 0, errnoName(err))
	}
}

func (l *loop) h() Handler { return l.e.handler() }

// event handles epoll events of c.
func (l *loop) event(h Handler, c *Conn, ev uint32) {
	if c.state == stConnecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = unix.Errno(soerr)
			}
			l.fail(c, 0, errnoName(err))
			return
		}
		if c.tls != nil {
			if !l.tlsHandshake(h, c) {
				return
			}
		} else if !l.upgrade(c) {
			return
		}
	} else if ev&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		if !l.flush(c) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.read(h, c, ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
	}
}

// upgrade sends the upgrade request (over TLS for wss://); false if c
// failed.
func (l *loop) upgrade(c *Conn) bool {
	c.state = stHandshake
	req := l.scratch[:0]
	req = append(req, "GET "...)
	req = append(req, l.e.cfg.Path(c.Key)...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, l.e.host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	l.scratch = req
	return l.write(c, req)
}

// read drains the socket and processes what came. The socket is
// edge-triggered, so it must be read until empty: a read that returns less
// than the buffer emptied it (data arriving later raises a new edge), which
// saves the extra read that would return EAGAIN. When the peer closed
// (hup), it reads on to the end of file.
func (l *loop) read(h Handler, c *Conn, hup bool) {
	for c.state != stClosed {
		n, err := unix.Read(c.fd, l.buf)
		if err == unix.EAGAIN {
			return
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.fail(c, 0, errnoName(err))
			return
		}
		if n == 0 {
			l.fail(c, 0, "eof")
			return
		}
		if c.tls != nil {
			l.readTLS(h, c, l.buf[:n])
		} else {
			l.consume(h, c, l.buf[:n])
		}
		if n < len(l.buf) && !hup {
			return
		}
	}
}

// consume processes input data (plaintext) of c after what c.in kept, and
// keeps what is not a whole unit yet.
func (l *loop) consume(h Handler, c *Conn, data []byte) {
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	rest := l.process(h, c, data)
	if c.state == stClosed {
		return
	}
	if len(rest) == 0 {
		c.in = c.in[:0]
		if cap(c.in) > 4096 {
			c.in = nil
		}
	} else if len(c.in) > 0 {
		c.in = append(c.in[:0], rest...) // overlapping copy is safe: rest is a suffix
	} else {
		c.in = append([]byte(nil), rest...)
	}
}

var (
	crlf2     = []byte("\r\n\r\n")
	status101 = []byte("HTTP/1.1 101")
)

// process consumes whole units (the 101 response, frames) from data and
// returns the unconsumed rest.
func (l *loop) process(h Handler, c *Conn, data []byte) []byte {
	if c.state == stHandshake {
		end := bytes.Index(data, crlf2)
		if end < 0 {
			if len(data) > 8192 {
				l.fail(c, 0, "response too large")
			}
			return data
		}
		if !bytes.HasPrefix(data, status101) {
			reason := "bad response"
			if len(data) >= 12 && bytes.HasPrefix(data, []byte("HTTP/1.")) {
				reason = "http " + string(data[9:12])
			}
			l.fail(c, 0, reason)
			return nil
		}
		c.state = stOpen
		data = data[end+4:]
		h.OnOpen(c)
		if c.state != stOpen {
			return nil
		}
	}
	var hd wsframe.Header
	for len(data) > 0 && c.state == stOpen {
		n, err := hd.Parse(data)
		if err != nil {
			l.fail(c, 0, "protocol: "+err.Error())
			return nil
		}
		if n == 0 || int64(len(data)-n) < hd.Length {
			return data
		}
		payload := data[n : n+int(hd.Length)]
		data = data[n+int(hd.Length):]
		switch hd.Op {
		case wsframe.OpText, wsframe.OpBinary:
			if hd.Fin {
				h.OnMessage(c, hd.Op, payload)
			} else {
				c.fop, c.frag = hd.Op, append(c.frag[:0], payload...)
			}
		case wsframe.OpContinuation:
			c.frag = append(c.frag, payload...)
			if hd.Fin {
				h.OnMessage(c, c.fop, c.frag)
				c.frag = nil
			}
		case wsframe.OpPing:
			l.send(c, wsframe.OpPong, payload)
		case wsframe.OpClose:
			code, reason, _ := wsframe.ParseClosePayload(payload)
			l.scratch = wsframe.AppendMaskedClose(l.scratch[:0], code, "", l.e.mask)
			l.writeLast(c, l.scratch)
			l.fail(c, int(code), string(reason))
			return nil
		}
	}
	return data
}

// Send writes one masked frame with payload to c (on c's loop).
func (c *Conn) Send(op wsframe.OpCode, payload []byte) bool { return c.l.send(c, op, payload) }

// Close closes c without a close handshake; the handler hears OnClose
// with reason "local". It must run on c's loop.
func (c *Conn) Close() { c.l.fail(c, 0, "local") }

// Loop is the index of c's event loop.
func (c *Conn) Loop() int { return c.l.idx }

// Open reports whether c completed the upgrade and is not closed.
func (c *Conn) Open() bool { return c.state == stOpen }

func (l *loop) send(c *Conn, op wsframe.OpCode, payload []byte) bool {
	if c.state != stOpen {
		return false
	}
	l.scratch = wsframe.AppendMaskedFrame(l.scratch[:0], true, op, payload, l.e.mask)
	return l.write(c, l.scratch)
}

// write writes b (encrypted for wss://) or queues what the socket does not
// take; false if c failed.
func (l *loop) write(c *Conn, b []byte) bool {
	if c.tls != nil {
		return l.writeTLS(c, b)
	}
	return l.writeRaw(c, b)
}

// writeLast writes b once, best effort, to a connection about to close.
func (l *loop) writeLast(c *Conn, b []byte) {
	if c.tls != nil {
		c.tls.last = true
		_, _ = c.tls.tc.Write(b)
		return
	}
	_, _ = unix.Write(c.fd, b)
}

// writeRaw writes b to the socket or queues what it does not take; false
// if c failed.
func (l *loop) writeRaw(c *Conn, b []byte) bool {
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return true
	}
	rest, ok := l.writeSome(c, b)
	if len(rest) > 0 {
		c.out = append(c.out, rest...)
	}
	return ok
}

// flush writes queued output (on EPOLLOUT); false if c failed.
func (l *loop) flush(c *Conn) bool {
	rest, ok := l.writeSome(c, c.out)
	c.out = rest
	if len(rest) == 0 {
		c.out = nil
	}
	return ok
}

// writeSome writes b until the socket is full and returns what is left;
// false if c failed (and is closed).
func (l *loop) writeSome(c *Conn, b []byte) ([]byte, bool) {
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		switch {
		case err == unix.EAGAIN:
			return b, true
		case err == unix.EINTR:
		case err != nil:
			l.fail(c, 0, errnoName(err))
			return nil, false
		default:
			b = b[n:]
		}
	}
	return nil, true
}

// fail closes c and reports OnClose once.
func (l *loop) fail(c *Conn, code int, reason string) {
	if c.state == stClosed {
		return
	}
	c.state = stClosed
	if c.fd >= 0 {
		delete(l.conns, c.fd)
		_ = unix.Close(c.fd)
	}
	c.in, c.out, c.frag = nil, nil, nil
	l.e.handler().OnClose(c, code, reason)
}

// errnoName is a short, stable failure reason for a system call error.
func errnoName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		switch en {
		case unix.ECONNREFUSED:
			return "refused"
		case unix.ECONNRESET:
			return "reset"
		case unix.ETIMEDOUT:
			return "timeout"
		case unix.EADDRNOTAVAIL:
			return "no source port"
		case unix.EMFILE, unix.ENFILE:
			return "too many open files"
		case unix.EPIPE:
			return "broken pipe"
		}
		return unix.ErrnoName(en)
	}
	return err.Error()
}
