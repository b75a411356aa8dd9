package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsgate/wsgate/internal/tlscert"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// TLS at the edge.
//
// The client listener terminates TLS on the event loops, as it does the
// WebSocket upgrade: no goroutine per connection. The TLS engine is
// github.com/lesismal/llib's non-blocking fork of crypto/tls: ciphertext
// that gnet read is appended to the connection's TLS state and decrypted
// records are read out; records written are encrypted and handed to gnet's
// Write. A TLS session's gnet context is its *tlsConn, and the session's
// conn is the *tlsConn too, so the session reader and writers above see
// plaintext through the same gnet.Conn methods a plain session uses.

// tlsReadAhead bounds the plaintext decrypted ahead of the session reader
// in one pass: a client that pipelines megabytes is decrypted and relayed
// in pieces, not buffered whole.
const tlsReadAhead = 64 << 10

// DefaultTLSReload is how often the certificate and key files are checked
// for a change (SIGHUP reloads at once).
const DefaultTLSReload = 5 * time.Second

// resp400PlainOnTLS answers a plain HTTP request sent to the TLS port.
var resp400PlainOnTLS = httpResponse(400, "Bad Request", "", "this port speaks TLS: use wss:// (https://)")

// tlsCipherSuites are the TLS 1.2 suites offered: forward-secret AEADs only
// (TLS 1.3's suites are not configurable and are all AEADs).
var tlsCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// edgeTLS is the client listener's TLS: the configuration every
// connection shares and the certificate, which a reload swaps atomically
// (handshakes in progress keep the one they started with).
type edgeTLS struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	notAfter          atomic.Int64 // unix seconds; the leaf's expiry, for metrics
	sum               [32]byte     // of the files last loaded (owned by reload's caller, under mu)
	mu                sync.Mutex   // serializes reloads
	config            *tls.Config
}

// newEdgeTLS loads the certificate and key; errors name the flags.
func newEdgeTLS(certFile, keyFile string) (*edgeTLS, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("gateway: --tls-cert and --tls-key go together")
	}
	e := &edgeTLS{certFile: certFile, keyFile: keyFile}
	if _, err := e.reload(); err != nil {
		return nil, err
	}
	e.config = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tlsCipherSuites,
		NextProtos:     []string{"http/1.1"}, // RFC 6455 runs over HTTP/1.1
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.cert.Load(), nil },
	}
	return e, nil
}

// reload reads the certificate and key files and swaps them in if they
// changed and parse; on an error the certificate in use stays. changed
// reports a swap.
func (e *edgeTLS) reload() (changed bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	certPEM, err := os.ReadFile(e.certFile)
	if err != nil {
		return false, fmt.Errorf("gateway: --tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(e.keyFile)
	if err != nil {
		return false, fmt.Errorf("gateway: --tls-key: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write(keyPEM)
	var sum [32]byte
	h.Sum(sum[:0])
	if sum == e.sum {
		return false, nil
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("gateway: --tls-cert %s / --tls-key %s: %w", e.certFile, e.keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return false, fmt.Errorf("gateway: --tls-cert %s: %w", e.certFile, err)
		}
	}
	e.notAfter.Store(c.Leaf.NotAfter.Unix())
	e.cert.Store(&c)
	e.sum = sum
	return true, nil
}

// ReloadTLS re-reads the --tls-cert and --tls-key files now (SIGHUP) and
// swaps the certificate in for new handshakes. On an error (a file
// missing, a key that does not match) the certificate in use stays and the
// error is returned. Without TLS it does nothing.
func (g *Gateway) ReloadTLS() error {
	if g.tls == nil {
		return nil
	}
	changed, err := g.tls.reload()
	switch {
	case err != nil:
		g.metrics.tlsReload("error")
		g.log.Error("TLS certificate reload failed; the current certificate stays", "err", err)
	case changed:
		g.metrics.tlsReload("ok")
		g.log.Info("TLS certificate reloaded", "cert", g.tls.certFile,
			"not_after", time.Unix(g.tls.notAfter.Load(), 0).UTC().Format(time.RFC3339))
	}
	return err
}

// every runs fn with the tick's time every d on a goroutine of its own
// until ctx ends (counted in g.wg).
func (g *Gateway) every(ctx context.Context, d time.Duration, fn func(now time.Time)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				fn(now)
			}
		}
	}()
}

// tlsConn is a client connection with TLS: gnet's conn (embedded: address,
// descriptor, outbound queue) with plaintext reads and writes.
//
// Invariant: owned by its loop's goroutine, like its session. Between
// callbacks it holds no buffer but rest (an incomplete frame or request
// head left over, rare) and what the TLS state keeps; while the loop
// processes its input, in is the loop's scratch buffer.
type tlsConn struct {
	gnet.Conn
	tc   *tls.Conn
	loop *loop
	s    *session // the client session, or nil on a link
	k    *link    // the backend link (--link-tls-*), or nil on a client connection
	in   []byte   // decrypted input; only during tlsTraffic
	off  int      // bytes of in consumed by the session reader
	rest []byte   // unconsumed plaintext carried to the next traffic
}

// tlsRaw is the view of a tlsConn that the TLS engine writes records to:
// gnet's conn, except that Close does nothing (the gateway closes the
// connection through gnet; the engine must not close one gnet may reuse).
type tlsRaw tlsConn

func (*tlsRaw) Close() error { return nil }

// wrapTLS starts TLS on a new client connection c of session s.
func (e *edgeTLS) wrap(c gnet.Conn, s *session) *tlsConn {
	t := &tlsConn{Conn: c, loop: s.loop, s: s}
	t.tc = tls.NewConn((*tlsRaw)(t), e.config, false, true, tlsBuffers)
	s.conn = t
	return t
}

// InboundBuffered is the decrypted input not yet consumed.
func (t *tlsConn) InboundBuffered() int { return len(t.in) - t.off }

// Peek returns the next n bytes of decrypted input without consuming them
// (all of it when n <= 0 or more than there is).
func (t *tlsConn) Peek(n int) ([]byte, error) {
	p := t.in[t.off:]
	if n > 0 && n <= len(p) {
		p = p[:n]
	}
	return p, nil
}

// Discard consumes n bytes of decrypted input.
func (t *tlsConn) Discard(n int) (int, error) {
	n = min(n, len(t.in)-t.off)
	t.off += n
	return n, nil
}

// Write encrypts b into one or more records and queues them.
func (t *tlsConn) Write(b []byte) (int, error) { return t.tc.Write(b) }

// Writev writes the pieces as one write (one record for a small frame, not
// one per piece), gathered in the loop's scratch buffer.
func (t *tlsConn) Writev(bs [][]byte) (int, error) {
	l := t.loop
	buf := l.tlsOut[:0]
	for _, b := range bs {
		buf = append(buf, b...)
	}
	n, err := t.tc.Write(buf)
	if cap(buf) <= tlsReadAhead {
		l.tlsOut = buf[:0]
	}
	return n, err
}

// Close sends the TLS close_notify alert (after a completed handshake)
// and closes the connection once gnet has written what is queued.
func (t *tlsConn) Close() error {
	_ = t.tc.CloseWrite() // an error only before the handshake finished: nothing to notify
	return t.Conn.Close()
}

// decrypt reads the TLS engine's decrypted records into t.in until it has
// read tlsReadAhead bytes or nothing is left; more reports the former. (A
// reader that needs more than it has, a link's large frame, gets it in the
// next pass: the bound is on what one pass adds, not on what waits.)
func (t *tlsConn) decrypt() (more bool, err error) {
	for got := 0; got < tlsReadAhead; {
		if cap(t.in)-len(t.in) < 4096 {
			if t.off > 0 { // compact first: the session reader consumed the front
				t.in = t.in[:copy(t.in, t.in[t.off:])]
				t.off = 0
			}
			if cap(t.in)-len(t.in) < 4096 {
				t.in = append(t.in[:cap(t.in)], make([]byte, 16<<10)...)[:len(t.in)]
			}
		}
		n, err := t.tc.Read(t.in[len(t.in):cap(t.in)])
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
		t.in = t.in[:len(t.in)+n]
		got += n
	}
	return true, nil
}

// tlsTraffic runs a TLS client's input through the TLS engine (the
// handshake, then decryption) and the plaintext through the session
// reader, in bounded passes.
func (l *loop) tlsTraffic(t *tlsConn, c gnet.Conn) gnet.Action {
	raw, _ := c.Next(-1)
	if _, err := t.tc.Append(raw); err != nil {
		return gnet.Close
	}
	t.in = append(l.tlsIn[:0], t.rest...)
	t.off, t.rest = 0, t.rest[:0]
	act := gnet.None
	for {
		more, err := t.decrypt()
		if err != nil {
			act = l.tlsFailed(t, raw, err)
			break
		}
		if act = t.consume(); act != gnet.None || !more {
			break
		}
	}
	switch left := t.in[t.off:]; {
	case len(left) > 0 && act == gnet.None:
		t.rest = append(t.rest, left...)
	case t.s != nil || cap(t.rest) > maxGathered:
		t.rest = nil // an idle client keeps no buffer; a link keeps its own
	}
	if cap(t.in) <= 2*tlsReadAhead {
		l.tlsIn = t.in[:0]
	}
	t.in, t.off = nil, 0
	t.tc.ResetOrFreeBuffer() // gives back the ciphertext buffer once it is consumed
	return act
}

// consume hands the decrypted input to its reader: the session's or the
// link's.
func (t *tlsConn) consume() gnet.Action {
	l := t.loop
	if t.s != nil {
		return l.onTraffic(t.s, t)
	}
	k := t.k
	if k.closed {
		return gnet.None
	}
	return l.linkTraffic(k, t)
}

// tlsFailed ends a connection whose TLS failed: a failed handshake (no
// common version or suite, a bad certificate request, not TLS at all) or a
// record that does not decrypt. A plain HTTP request on the TLS port gets
// a plain-text 400 saying so, as Go's and nginx's servers answer it.
func (l *loop) tlsFailed(t *tlsConn, raw []byte, err error) gnet.Action {
	if k := t.k; k != nil {
		l.g.metrics.linkAuthFailed(k.node)
		l.g.log.Error("link TLS failed, closing link", "node", k.node, "addr", k.addr, "err", err)
		l.linkFailed(k, wsframe.CloseTryAgainLater, "backend unavailable")
		return gnet.None
	}
	s := t.s
	if s.state == stHandshake {
		l.g.metrics.handshakeFailed("tls")
		if rh := (tls.RecordHeaderError{}); errors.As(err, &rh) && looksLikeHTTP(raw) {
			_, _ = t.Conn.Write(resp400PlainOnTLS)
		}
		l.g.log.Debug("TLS handshake failed", "remote", t.RemoteAddr(), "err", err)
	} else {
		l.g.metrics.reject("tls_error")
	}
	s.state = stClosed
	return gnet.Close
}

// looksLikeHTTP reports whether b starts like an HTTP/1 request.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "OPTIONS "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
}

// tlsBuffers is the TLS engine's buffer allocator for every connection:
// ciphertext and record buffers come from size-class pools and go back
// when a connection has consumed them, so an idle TLS client holds none.
var tlsBuffers tls.Allocator = &poolAllocator{}

// poolAllocator implements the TLS engine's Allocator with sync.Pools of
// power-of-two size classes from 512 B to 64 KiB; other sizes come from
// and go to the garbage collector.
type poolAllocator struct {
	pools [8]sync.Pool // 512 << i
}

func (a *poolAllocator) class(size int) int {
	for i := range a.pools {
		if size <= 512<<i {
			return i
		}
	}
	return -1
}

// Malloc returns a buffer of length size.
func (a *poolAllocator) Malloc(size int) *[]byte {
	i := a.class(size)
	if i < 0 {
		b := make([]byte, size)
		return &b
	}
	if p, ok := a.pools[i].Get().(*[]byte); ok {
		*p = (*p)[:size]
		return p
	}
	b := make([]byte, size, 512<<i)
	return &b
}

// Realloc resizes buf to size, keeping its content.
func (a *poolAllocator) Realloc(buf *[]byte, size int) *[]byte {
	if size <= cap(*buf) {
		*buf = (*buf)[:size]
		return buf
	}
	nb := a.Malloc(size)
	copy(*nb, *buf)
	a.Free(buf)
	return nb
}

// Append appends more to buf, moving it to a larger class when full.
func (a *poolAllocator) Append(buf *[]byte, more ...byte) *[]byte { return appendTo(a, buf, more) }

// AppendString appends more to buf.
func (a *poolAllocator) AppendString(buf *[]byte, more string) *[]byte { return appendTo(a, buf, more) }

func appendTo[S ~[]byte | ~string](a *poolAllocator, buf *[]byte, more S) *[]byte {
	n := len(*buf)
	buf = a.Realloc(buf, n+len(more))
	copy((*buf)[n:], more)
	return buf
}

// Free gives buf back to its class's pool (a buffer of another capacity
// is left to the garbage collector).
func (a *poolAllocator) Free(buf *[]byte) {
	if buf == nil {
		return
	}
	c := cap(*buf)
	if i := a.class(c); i >= 0 && c == 512<<i {
		*buf = (*buf)[:0]
		a.pools[i].Put(buf)
	}
}

// linkTLS is the gateway's side of mutual TLS on backend links
// (--link-tls-cert, --link-tls-key, --link-tls-ca): the gateway shows its
// certificate and accepts a backend whose certificate chains to the CA and
// names the address the gateway dialled.
type linkTLS struct {
	base *tls.Config
}

// newLinkTLS loads the gateway's link certificate and the CA; errors name
// the flags.
func newLinkTLS(certFile, keyFile, caFile string) (*linkTLS, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("gateway: --link-tls-cert, --link-tls-key and --link-tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("gateway: --link-tls-cert %s / --link-tls-key %s: %w", certFile, keyFile, err)
	}
	roots, err := tlscert.CAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("gateway: --link-tls-ca: %w", err)
	}
	return &linkTLS{base: &tls.Config{
		MinVersion:   tls.VersionTLS13, // both ends are wsgate: no older version to speak
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
	}}, nil
}

// dial connects to a backend and completes the TLS handshake, blocking
// (the TLS engine's client side cannot resume a handshake across
// non-blocking reads): the data links run it on their dialling goroutine
// and then hand the socket to the loop (linkTLSOpened), the control link
// uses the returned conn as is. The handshake is bounded by timeout.
func (lt *linkTLS) dial(ctx context.Context, addr string, timeout time.Duration) (raw net.Conn, tc *tls.Conn, err error) {
	d := net.Dialer{Timeout: timeout}
	if raw, err = d.DialContext(ctx, "tcp", addr); err != nil {
		return nil, nil, err
	}
	cfg := lt.base.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(addr)
	tc = tls.NewConn(raw, cfg, true, false, tlsBuffers)
	_ = raw.SetDeadline(time.Now().Add(timeout))
	if err = tc.Handshake(); err != nil {
		_ = raw.Close()
		return nil, nil, &linkTLSError{err}
	}
	_ = raw.SetDeadline(time.Time{})
	return raw, tc, nil
}

// linkTLSError is a failed TLS handshake with a backend (counted as a
// link authentication failure).
type linkTLSError struct{ err error }

func (e *linkTLSError) Error() string { return "link TLS: " + e.err.Error() }
func (e *linkTLSError) Unwrap() error { return e.err }

// linkTLSOpened runs on the loop when a link whose TLS handshake was done
// by dial is registered: the TLS state goes on in non-blocking mode over
// gnet's conn, and the link is open.
func (l *loop) linkTLSOpened(k *link, c gnet.Conn) {
	t := &tlsConn{Conn: c, loop: l, k: k, tc: k.tlsHandshaken}
	k.tlsHandshaken = nil
	t.tc.ResetConn((*tlsRaw)(t), true, tlsBuffers)
	c.SetContext(t)
	l.linkTLSUp(k, t)
}

// linkTLSUp makes a link whose TLS handshake completed open: what was
// written meanwhile goes out, encrypted.
func (l *loop) linkTLSUp(k *link, t *tlsConn) {
	k.conn = t
	k.lastRecv = time.Now()
	if len(k.pending) > 0 {
		_, _ = t.Write(k.pending)
	}
	k.pending = nil
	l.g.log.Debug("link open (TLS)", "node", k.node, "addr", k.addr)
}
