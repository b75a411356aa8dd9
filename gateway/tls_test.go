package gateway_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/devcluster"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
	"github.com/wsgate/wsgate/internal/tlscert"
)

// tlsFiles writes a fresh self-signed certificate into dir and returns
// its files and a pool that trusts it.
func tlsFiles(t testing.TB, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	certFile, keyFile, err := tlscert.Write(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("certificate does not parse")
	}
	return certFile, keyFile, roots
}

// startTLSCluster starts a dev cluster whose client listener speaks TLS
// with a fresh certificate; roots trusts it.
func startTLSCluster(t testing.TB, tune func(*gateway.Config)) (c *devcluster.Cluster, roots *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, roots = tlsFiles(t, t.TempDir())
	c = startCluster(t, 2, func(cfg *gateway.Config) {
		cfg.TLSCert, cfg.TLSKey = certFile, keyFile
		if tune != nil {
			tune(cfg)
		}
	})
	return c, roots, certFile, keyFile
}

// dialTLS opens a wss:// client that verifies the server's certificate
// against roots.
func dialTLS(addr, path string, roots *x509.CertPool, tune func(*tls.Config)) (*websocket.Conn, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if tune != nil {
		tune(cfg)
	}
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: cfg}
	ws, resp, err := d.Dial("wss://"+addr+path, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return ws, err
}

// serverSerial is the serial number of the certificate a new TLS
// connection to addr is shown.
func serverSerial(t testing.TB, addr string, roots *x509.CertPool) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSEcho: a real client that verifies the certificate connects with
// wss://, negotiates TLS 1.3 and http/1.1 by ALPN, gets the welcome, and
// messages of every size go both ways (1 MiB crosses many TLS records, and
// a burst of small ones arrives in few).
func TestTLSEcho(t *testing.T) {
	c, roots, _, _ := startTLSCluster(t, nil)
	var state tls.ConnectionState
	ws, err := dialTLS(c.Gateway().Addr(), "/ws/alice", roots, func(cfg *tls.Config) {
		cfg.NextProtos = []string{"http/1.1"}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { state = cs; return nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if state.Version != tls.VersionTLS13 || state.NegotiatedProtocol != "http/1.1" {
		t.Errorf("negotiated version %x, ALPN %q; want TLS 1.3 and http/1.1", state.Version, state.NegotiatedProtocol)
	}
	if w := readWelcome(t, ws); w.ServerIP != owner(t, c, "alice") {
		t.Errorf("alice landed on %s, owner is %s", w.ServerIP, owner(t, c, "alice"))
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for _, msg := range [][]byte{[]byte("hello over TLS"), nil, big} {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := ws.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: got %d bytes, err %v", len(msg), len(got), err)
		}
	}
	const burst = 200
	for i := range burst {
		if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range burst {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != fmt.Sprintf("m%03d", i) {
			t.Fatalf("burst message %d: %q, %v", i, got, err)
		}
	}
	// A push through the admin API reaches the TLS client.
	var sent struct{ Delivered int }
	admin(t, c, "POST", "/api/send", `{"userId":"alice","message":"pushed"}`, &sent)
	if _, got, err := ws.ReadMessage(); err != nil || !strings.Contains(string(got), "pushed") {
		t.Fatalf("push: %q, %v", got, err)
	}
}

// TestTLSTLS12 checks the TLS 1.2 path (the other key schedule and record
// format) end to end.
func TestTLSTLS12(t *testing.T) {
	c, roots, _, _ := startTLSCluster(t, nil)
	ws, err := dialTLS(c.Gateway().Addr(), "/ws/bob", roots, func(cfg *tls.Config) { cfg.MaxVersion = tls.VersionTLS12 })
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("tls12")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "tls12" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// TestTLSRefusals attacks the TLS listener: an untrusted certificate is
// refused by a verifying client; TLS 1.1, a plain-text request, garbage
// and a client that never finishes its handshake are refused by the
// gateway and counted, and none of it stops a good client.
func TestTLSRefusals(t *testing.T) {
	c, roots, _, _ := startTLSCluster(t, func(cfg *gateway.Config) { cfg.HandshakeTimeout = 300 * time.Millisecond })
	addr, adminAddr := c.Gateway().Addr(), c.Gateway().AdminAddr()

	// A client that does not trust the certificate refuses it.
	_, err := dialTLS(addr, "/ws/x", x509.NewCertPool(), nil)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("untrusted certificate: err %v, want x509.UnknownAuthorityError", err)
	}
	// TLS 1.1 is below the floor.
	_, err = dialTLS(addr, "/ws/x", roots, func(cfg *tls.Config) { cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 })
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1: err %v, want a protocol version alert", err)
	}
	// Plain HTTP on the TLS port gets a plain-text 400 that says why.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /ws/x HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", addr)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 400")) || !bytes.Contains(resp, []byte("wss://")) {
		t.Errorf("plain HTTP on the TLS port: %q", resp)
	}
	// Garbage that is not TLS is closed.
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write(bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, 4))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(conn) // returns at the close; a hang fails on the deadline below
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// A client that starts a handshake and stalls is closed at the
	// handshake timeout (the TLS handshake and the upgrade share it).
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x80}) // a record header, no body
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("stalled handshake: %v (want a close from the gateway)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stalled handshake closed after %v", d)
	}
	conn.Close()

	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := testutil.Metric(t, adminAddr, `wsgate_gateway_handshakes_total{result="tls"}`); n < 4 {
			return fmt.Errorf("handshakes_total{result=tls} = %v, want >= 4 (untrusted, TLS 1.1, plain HTTP, garbage)", n)
		}
		if n := testutil.Metric(t, adminAddr, `wsgate_gateway_handshakes_total{result="timeout"}`); n < 1 {
			return fmt.Errorf("handshakes_total{result=timeout} = %v", n)
		}
		return nil
	})
	ws, err := dialTLS(addr, "/ws/good", roots, nil)
	if err != nil {
		t.Fatalf("a good client after the attacks: %v", err)
	}
	readWelcome(t, ws)
	ws.Close()
}

// TestTLSReload: a new certificate in the files is served to new
// connections (by the file check and by ReloadTLS) while open ones stay;
// a bad pair is refused, counted, and the served certificate stays.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	c, rootsA, certFile, keyFile := startTLSCluster(t, func(cfg *gateway.Config) { cfg.TLSReload = 50 * time.Millisecond })
	addr, adminAddr := c.Gateway().Addr(), c.Gateway().AdminAddr()
	serialA := serverSerial(t, addr, rootsA)
	ws, err := dialTLS(addr, "/ws/stays", rootsA, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)

	// Replace both files with a new pair: the watcher picks it up.
	certB, keyB, rootsB := tlsFiles(t, dir)
	replace := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(dst), "tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dst); err != nil { // atomic, as cert-manager and certbot do
			t.Fatal(err)
		}
	}
	replace(keyB, keyFile)
	replace(certB, certFile)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: rootsB, ServerName: "127.0.0.1"})
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	if s := serverSerial(t, addr, rootsB); s == serialA {
		t.Fatal("still serving the old certificate")
	}
	if n := testutil.Metric(t, adminAddr, `wsgate_gateway_tls_reloads_total{result="ok"}`); n < 1 {
		t.Errorf("tls_reloads_total{ok} = %v", n)
	}
	// The connection made with the old certificate is still served.
	if err := ws.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := ws.ReadMessage(); err != nil || string(got) != "still here" {
		t.Fatalf("old connection after reload: %q, %v", got, err)
	}

	// A key that does not match the certificate: refused, the served
	// certificate stays.
	otherKey := filepath.Join(t.TempDir(), "other")
	if err := os.MkdirAll(otherKey, 0o700); err != nil {
		t.Fatal(err)
	}
	_, keyC, _ := tlsFiles(t, otherKey)
	replace(keyC, keyFile)
	err = c.Gateway().ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("mismatched pair: ReloadTLS = %v, want an error naming the flags", err)
	}
	if n := testutil.Metric(t, adminAddr, `wsgate_gateway_tls_reloads_total{result="error"}`); n < 1 {
		t.Errorf("tls_reloads_total{error} = %v", n)
	}
	if serverSerial(t, addr, rootsB) == serialA {
		t.Error("a failed reload changed the certificate")
	}
	if exp := testutil.Metric(t, adminAddr, "wsgate_gateway_tls_certificate_expiry_seconds"); exp < float64(time.Now().Unix()) {
		t.Errorf("tls_certificate_expiry_seconds = %v", exp)
	}
}

// TestTLSLimits: a connection refused by a limit on the TLS listener is
// closed before any TLS work and counted.
func TestTLSLimits(t *testing.T) {
	c, roots, _, _ := startTLSCluster(t, func(cfg *gateway.Config) { cfg.MaxConns = 1 })
	addr := c.Gateway().Addr()
	ws, err := dialTLS(addr, "/ws/first", roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readWelcome(t, ws)
	if _, err := dialTLS(addr, "/ws/second", roots, nil); err == nil {
		t.Fatal("a second client got in past --max-conns 1")
	}
	if n := testutil.Metric(t, c.Gateway().AdminAddr(), `wsgate_gateway_rejected_total{reason="max_conns"}`); n != 1 {
		t.Errorf("rejected_total{max_conns} = %v, want 1", n)
	}
}

// TestTLSConfigErrors: bad TLS settings are refused at start, naming the flag.
func TestTLSConfigErrors(t *testing.T) {
	certFile, keyFile, _ := tlsFiles(t, t.TempDir())
	_, otherKey, _ := tlsFiles(t, t.TempDir())
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"cert only", certFile, "", "--tls-cert and --tls-key go together"},
		{"key only", "", keyFile, "--tls-cert and --tls-key go together"},
		{"missing cert", "/nonexistent/cert.pem", keyFile, "--tls-cert"},
		{"missing key", certFile, "/nonexistent/key.pem", "--tls-key"},
		{"mismatched", certFile, otherKey, "--tls-cert"},
		{"garbage", garbage, keyFile, "--tls-cert"},
	} {
		_, err := gateway.New(gateway.Config{Members: staticMembers(t), TLSCert: tc.cert, TLSKey: tc.key})
		var ce *gateway.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want a ConfigError naming %q", tc.name, err, tc.want)
		}
	}
}
