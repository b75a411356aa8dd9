package bench

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	ltls "github.com/lesismal/llib/std/crypto/tls"
	"golang.org/x/sys/unix"
)

// wss:// in the engine.
//
// TLS runs on the event loops like everything else: the TLS engine is
// github.com/lesismal/llib's non-blocking fork of crypto/tls. Ciphertext the
// loop read is appended to the connection's TLS state and plaintext is read
// out of it; records it writes go through a small net.Conn adapter whose
// Write is the loop's non-blocking write (queued on EAGAIN, flushed on
// EPOLLOUT). A plain connection carries one nil pointer for all this.
//
// The client handshake of that engine is not resumable: in non-blocking mode
// it returns "data not enough" when the server's answer is not complete
// yet, and the next call starts the handshake over, with a new ClientHello
// (its server side keeps a state machine; its client side does not). So the
// engine replays it: every attempt runs a fresh TLS client over all the
// bytes the server sent so far, with the same random bytes (Config.Rand
// replays what the first attempt drew), the same clock and the same
// session, so it writes the same bytes again; the adapter checks them
// against what was already sent and sends only what is new. A TLS 1.3
// handshake takes two attempts (the ClientHello, then the server's whole
// flight, which servers write at once), TLS 1.2 three; the repeated work is
// one ClientHello (an X25519 key pair) per handshake. Should an attempt ever
// write something else, the connection fails with errNotReplayable rather
// than go on with a transcript the server does not share.

// TLSConfig is the client side of wss://.
type TLSConfig struct {
	// CAFile is a PEM file with the certificates that may sign the server's
	// (a self-signed certificate is its own); empty: the system's roots.
	CAFile string
	// Insecure skips verification of the server's certificate.
	Insecure bool
	// ServerName is the name verified (and sent as SNI unless it is an
	// address); default the host of the target address.
	ServerName string
	// Resume lets connections resume the TLS sessions (tickets) of earlier
	// ones. Off, every connection makes a full handshake, so handshakes/s
	// and the target's CPU per handshake are the full cost.
	Resume bool
}

// tlsCurves are the key exchange groups offered, in order: X25519, then
// P-256. The engine's default list starts with the post-quantum hybrid
// X25519MLKEM768, which the OpenSSL 3.0 behind nginx and HAProxy here does
// not have; offering only these two makes every target negotiate the same.
var tlsCurves = []ltls.CurveID{ltls.X25519, ltls.CurveP256}

// errNotReplayable fails a handshake whose replay wrote other bytes than
// the attempt before it.
var errNotReplayable = errors.New("tls: handshake replay wrote different bytes")

// notEnough is the TLS engine's error text for "wait for more input".
const notEnough = "data not enough"

// tlsNoHandshake is Result.TLS of a wss:// run where no handshake completed.
const tlsNoHandshake = "TLS (no handshake completed)"

// maxHandshakeInput bounds what a server may send before its handshake
// completes (certificate chains are a few KiB).
const maxHandshakeInput = 256 << 10

// tlsClient is an engine's TLS setup: the configuration each loop clones
// and what the first completed handshake negotiated.
type tlsClient struct {
	cfg      *ltls.Config
	insecure bool
	resume   bool
	info     atomic.Pointer[string]
}

// newTLSClient builds the client configuration for host (the target's
// host, the default ServerName).
func newTLSClient(tc *TLSConfig, host string) (*tlsClient, error) {
	cfg := &ltls.Config{
		ServerName:         tc.ServerName,
		InsecureSkipVerify: tc.Insecure,
		MinVersion:         ltls.VersionTLS12,
		CurvePreferences:   tlsCurves,
		NextProtos:         []string{"http/1.1"},
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if tc.CAFile != "" {
		pem, err := os.ReadFile(tc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bench: TLS CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bench: TLS CA %s: no PEM certificate in it", tc.CAFile)
		}
	}
	if tc.Resume {
		cfg.ClientSessionCache = ltls.NewLRUClientSessionCache(64)
	} else {
		cfg.SessionTicketsDisabled = true
	}
	return &tlsClient{cfg: cfg, insecure: tc.Insecure, resume: tc.Resume}, nil
}

// loopTLS is a loop's TLS configuration. Its Rand, Time and session cache
// serve the handshake attempt running on the loop (cur) from that
// connection's recorded values, so a replay draws what the first attempt
// drew; outside an attempt they are crypto/rand, time.Now and the shared
// cache.
type loopTLS struct {
	cfg *ltls.Config
	cur *tlsConn
}

func newLoopTLS(tc *tlsClient) *loopTLS {
	lt := &loopTLS{}
	lt.cfg = tc.cfg.Clone()
	lt.cfg.Rand = lt
	lt.cfg.Time = lt.now
	if tc.resume {
		lt.cfg.ClientSessionCache = pinnedCache{lt: lt, shared: tc.cfg.ClientSessionCache}
	}
	return lt
}

// Read implements io.Reader for Config.Rand: replayed bytes for the
// attempt running, more drawn from crypto/rand (and recorded) past them.
func (lt *loopTLS) Read(p []byte) (int, error) {
	t := lt.cur
	if t == nil {
		return rand.Read(p)
	}
	if end := t.rpos + len(p); end > len(t.rnd) {
		old := len(t.rnd)
		t.rnd = append(t.rnd, make([]byte, end-old)...)
		if _, err := rand.Read(t.rnd[old:]); err != nil {
			return 0, err
		}
	}
	n := copy(p, t.rnd[t.rpos:])
	t.rpos += n
	return n, nil
}

// now is Config.Time: the first attempt's time during a handshake (ticket
// ages go into the ClientHello), else the time.
func (lt *loopTLS) now() time.Time {
	t := lt.cur
	if t == nil {
		return time.Now()
	}
	if t.t0.IsZero() {
		t.t0 = time.Now()
	}
	return t.t0
}

// pinnedCache gives every attempt of a handshake the session its first
// attempt found (other connections may store newer tickets meanwhile) and
// ignores the deletions an unfinished attempt makes.
type pinnedCache struct {
	lt     *loopTLS
	shared ltls.ClientSessionCache
}

// Get implements ltls.ClientSessionCache.
func (p pinnedCache) Get(key string) (*ltls.ClientSessionState, bool) {
	t := p.lt.cur
	if t == nil {
		return p.shared.Get(key)
	}
	if !t.pinned {
		t.sess, _ = p.shared.Get(key)
		t.pinned = true
	}
	return t.sess, t.sess != nil
}

// Put implements ltls.ClientSessionCache.
func (p pinnedCache) Put(key string, cs *ltls.ClientSessionState) {
	if cs != nil {
		p.shared.Put(key, cs)
	}
}

// tlsConn is the TLS state of a wss:// connection, and the net.Conn the
// TLS engine writes records to.
type tlsConn struct {
	c  *Conn
	tc *ltls.Conn // the TLS engine; a new one per handshake attempt

	// During the handshake only:
	got    []byte    // everything the server sent
	sent   []byte    // everything written, which a replay must write again
	pos    int       // bytes of sent this attempt wrote so far
	rnd    []byte    // random bytes drawn
	rpos   int       // bytes of rnd this attempt drew so far
	t0     time.Time // the first attempt's clock
	sess   *ltls.ClientSessionState
	pinned bool

	last bool // writing a last record (the close reply): best effort, errors ignored
}

// Write implements net.Conn: the TLS engine's records go out through the
// loop's non-blocking write. During the handshake the bytes an earlier
// attempt already sent are checked and skipped.
func (t *tlsConn) Write(b []byte) (int, error) {
	c, n := t.c, len(b)
	if t.last {
		_, _ = unix.Write(c.fd, b)
		return n, nil
	}
	if c.state == stTLS {
		if k := min(len(b), len(t.sent)-t.pos); k > 0 {
			if !bytes.Equal(b[:k], t.sent[t.pos:t.pos+k]) {
				return 0, errNotReplayable
			}
			t.pos += k
			b = b[k:]
		}
		if len(b) == 0 {
			return n, nil
		}
		t.sent = append(t.sent, b...)
		t.pos += len(b)
	}
	if !c.l.writeRaw(c, b) {
		return 0, net.ErrClosed
	}
	return n, nil
}

// Read implements net.Conn; the engine is fed through Append, never reads.
func (t *tlsConn) Read([]byte) (int, error) { return 0, io.EOF }

// Close implements net.Conn; the loop closes the socket.
func (t *tlsConn) Close() error { return nil }

// LocalAddr implements net.Conn.
func (t *tlsConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

// RemoteAddr implements net.Conn.
func (t *tlsConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// SetDeadline implements net.Conn (no deadlines: the loop never blocks).
func (t *tlsConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.Conn.
func (t *tlsConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.Conn.
func (t *tlsConn) SetWriteDeadline(time.Time) error { return nil }

// tlsHandshake runs one handshake attempt of c over everything the server
// sent so far: the first writes the ClientHello; the one that completes
// sends the upgrade request. It returns false if c failed.
func (l *loop) tlsHandshake(h Handler, c *Conn) bool {
	t := c.tls
	c.state = stTLS
	t.tc = ltls.NewConn(t, l.tls.cfg, true, true)
	if len(t.got) > 0 {
		if _, err := t.tc.Append(t.got); err != nil {
			l.fail(c, 0, tlsReason(err))
			return false
		}
	}
	t.pos, t.rpos = 0, 0
	l.tls.cur = t
	err := t.tc.Handshake()
	l.tls.cur = nil
	if c.state == stClosed {
		return false
	}
	if err != nil {
		if err.Error() == notEnough {
			return true
		}
		l.fail(c, 0, tlsReason(err))
		return false
	}
	if l.e.tls.info.Load() == nil {
		info := l.e.tls.describe(t.tc.ConnectionState(), serverGroup(t.got))
		l.e.tls.info.CompareAndSwap(nil, &info)
	}
	t.got, t.sent, t.rnd, t.sess = nil, nil, nil, nil
	if !l.upgrade(c) {
		return false
	}
	return l.drainTLS(h, c)
}

// readTLS takes ciphertext read from c's socket.
func (l *loop) readTLS(h Handler, c *Conn, data []byte) {
	t := c.tls
	if c.state == stTLS {
		if len(t.got)+len(data) > maxHandshakeInput {
			l.fail(c, 0, "tls: handshake too large")
			return
		}
		t.got = append(t.got, data...)
		l.tlsHandshake(h, c)
		return
	}
	if _, err := t.tc.Append(data); err != nil {
		l.fail(c, 0, tlsReason(err))
		return
	}
	l.drainTLS(h, c)
}

// drainTLS reads every whole record's plaintext out of c's TLS engine and
// processes it; false if c failed.
func (l *loop) drainTLS(h Handler, c *Conn) bool {
	if l.tbuf == nil {
		l.tbuf = make([]byte, 32<<10)
	}
	for c.state != stClosed {
		n, err := c.tls.tc.Read(l.tbuf)
		if n > 0 {
			l.consume(h, c, l.tbuf[:n])
		}
		if err != nil {
			l.fail(c, 0, tlsReason(err))
			return false
		}
		if n == 0 {
			return true
		}
	}
	return false
}

// writeTLS encrypts b onto c; false if c failed.
func (l *loop) writeTLS(c *Conn, b []byte) bool {
	_, err := c.tls.tc.Write(b)
	if c.state == stClosed {
		return false
	}
	if err != nil {
		l.fail(c, 0, tlsReason(err))
		return false
	}
	return true
}

// tlsReason is a failure reason for a TLS error: the engine's own text,
// which starts with "tls: " for handshake, alert and record errors.
func tlsReason(err error) string {
	if err == io.EOF {
		return "eof"
	}
	s := err.Error()
	if !strings.HasPrefix(s, "tls: ") {
		s = "tls: " + s
	}
	return s
}

// describe names what a handshake negotiated, for reports: version, cipher
// suite, key exchange group, the server's key and whether it was verified.
func (tc *tlsClient) describe(st ltls.ConnectionState, group ltls.CurveID) string {
	parts := []string{versionName(st.Version), ltls.CipherSuiteName(st.CipherSuite)}
	if group != 0 {
		parts = append(parts, group.String())
	}
	if len(st.PeerCertificates) > 0 {
		parts = append(parts, "server key "+keyName(st.PeerCertificates[0].PublicKey))
	}
	if tc.insecure {
		parts = append(parts, "certificate NOT verified (--tls-insecure)")
	} else {
		parts = append(parts, "certificate verified")
	}
	if tc.resume {
		parts = append(parts, "session resumption on")
	} else {
		parts = append(parts, "full handshakes")
	}
	return strings.Join(parts, ", ")
}

func versionName(v uint16) string {
	switch v {
	case ltls.VersionTLS13:
		return "TLS 1.3"
	case ltls.VersionTLS12:
		return "TLS 1.2"
	}
	return "TLS 0x" + strconv.FormatUint(uint64(v), 16)
}

func keyName(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA " + strconv.Itoa(k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// serverGroup finds the key exchange group in the server's first bytes b
// (the plaintext handshake records that open its answer): the key_share of
// a TLS 1.3 ServerHello (the last one, after a HelloRetryRequest), or the
// named curve of a TLS 1.2 ServerKeyExchange; 0 if there is none.
func serverGroup(b []byte) ltls.CurveID {
	var hs []byte
	for len(b) >= 5 && b[0] == 22 { // handshake records
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			break
		}
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
	}
	var group ltls.CurveID
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			break
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		switch typ {
		case 2: // ServerHello
			if g := helloKeyShare(body); g != 0 {
				group = g
			}
		case 12: // ServerKeyExchange: ECParameters, curve_type named_curve (3)
			if len(body) >= 3 && body[0] == 3 {
				group = ltls.CurveID(body[1])<<8 | ltls.CurveID(body[2])
			}
		}
	}
	return group
}

// helloKeyShare is the group of a ServerHello's key_share extension, or 0.
func helloKeyShare(b []byte) ltls.CurveID {
	// legacy_version (2), random (32), legacy_session_id <0..32>,
	// cipher_suite (2), compression (1), extensions <0..2^16-1>.
	if len(b) < 35 {
		return 0
	}
	sid := int(b[34])
	if len(b) < 35+sid+3+2 {
		return 0
	}
	ext := b[35+sid+3+2:]
	for len(ext) >= 4 {
		typ, n := int(ext[0])<<8|int(ext[1]), int(ext[2])<<8|int(ext[3])
		if len(ext) < 4+n {
			return 0
		}
		if typ == 51 && n >= 2 { // key_share: the group first
			return ltls.CurveID(ext[4])<<8 | ltls.CurveID(ext[5])
		}
		ext = ext[4+n:]
	}
	return 0
}

// TLSInfo describes what the first completed TLS handshake negotiated
// ("TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ..."); "" for plain
// WebSocket or before any handshake completed.
func (e *Engine) TLSInfo() string {
	if e.tls == nil {
		return ""
	}
	if p := e.tls.info.Load(); p != nil {
		return *p
	}
	return ""
}

// SplitURL reads a target given as host:port, ws://host:port or
// wss://host:port (a trailing "/" allowed) and returns host:port and
// whether it is wss://.
func SplitURL(target string) (hostport string, secure bool, err error) {
	rest := target
	switch {
	case strings.HasPrefix(rest, "wss://"):
		rest, secure = rest[len("wss://"):], true
	case strings.HasPrefix(rest, "ws://"):
		rest = rest[len("ws://"):]
	case strings.Contains(rest, "://"):
		return "", false, fmt.Errorf("bench: target %q: want ws:// or wss://", target)
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.Contains(rest, "/") {
		return "", false, fmt.Errorf("bench: target %q: no path, please (each connection's path comes from its key)", target)
	}
	if _, _, err := net.SplitHostPort(rest); err != nil {
		return "", false, fmt.Errorf("bench: target %q: %w", target, err)
	}
	return rest, secure, nil
}
