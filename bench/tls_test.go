package bench

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/tlscert"
)

// TestConnSize: TLS hangs off one pointer that took the padding of the
// plain fields, so a plain connection is as large as before wss://.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 136 {
		t.Fatalf("Conn is %d bytes, was 136 before wss://", n)
	}
}

// tlsEchoServer is a wss:// echo server on a random loopback port (Go's
// crypto/tls and gorilla/websocket): it sends the demo app's welcome, then
// echoes every message. resumed counts handshakes that resumed a session.
type tlsEchoServer struct {
	addr    string
	caFile  string // the self-signed certificate, its own CA
	resumed atomic.Int64
	full    atomic.Int64
}

func startTLSEcho(t *testing.T, tune func(*tls.Config)) *tlsEchoServer {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate(time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsEchoServer{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(s.caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.DidResume {
			s.resumed.Add(1)
		} else {
			s.full.Add(1)
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if ws.WriteMessage(websocket.TextMessage, []byte(`{"type":2,"serverIp":"tls-echo"}`)) != nil {
			return
		}
		for {
			op, p, err := ws.ReadMessage()
			if err != nil || ws.WriteMessage(op, p) != nil {
				return
			}
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes of TestTLSWrongCA
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if tune != nil {
		tune(srv.TLS)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.addr = srv.Listener.Addr().String()
	return s
}

// TestTLSEchoThroughEngine connects and echoes over wss:// with the
// server's certificate verified, against TLS 1.3, TLS 1.2 (three replayed
// attempts per handshake), a server that asks for P-256 (a
// HelloRetryRequest), and with session resumption.
func TestTLSEchoThroughEngine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tune   func(*tls.Config)
		resume bool
		want   []string // in Result.TLS
	}{
		{"tls13", nil, false, []string{"TLS 1.3", "X25519", "server key ECDSA P-256", "certificate verified", "full handshakes"}},
		{"tls12", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, false, []string{"TLS 1.2", "TLS_ECDHE_ECDSA_WITH", "X25519"}},
		{"p256-retry", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256} }, false, []string{"TLS 1.3", "P-256"}},
		{"resume", nil, true, []string{"TLS 1.3", "session resumption on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startTLSEcho(t, tc.tune)
			// 4 handshakes at a time, so later ones find tickets of earlier ones.
			r, err := Run(context.Background(), Config{Scenario: Echo, Addr: s.addr, Conns: 40, Sources: 2, Loops: 2, Inflight: 4,
				TLS:      &TLSConfig{CAFile: s.caFile, Resume: tc.resume},
				Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Failures != nil || r.Connected != 40 || r.Messages == 0 || r.Latency == nil {
				t.Fatalf("echo over TLS: connected %d, messages %d, failures %v", r.Connected, r.Messages, r.Failures)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.TLS, w) {
					t.Errorf("Result.TLS %q lacks %q", r.TLS, w)
				}
			}
			resumed, full := s.resumed.Load(), s.full.Load()
			if tc.resume && resumed == 0 || !tc.resume && resumed != 0 {
				t.Errorf("resume %v: the server saw %d resumed and %d full handshakes", tc.resume, resumed, full)
			}
		})
	}
}

// TestTLSWrongCA: a server certificate the CA did not sign fails every
// connection with the verification error as its reason, promptly.
func TestTLSWrongCA(t *testing.T) {
	s := startTLSEcho(t, nil)
	other := startTLSEcho(t, nil) // another self-signed certificate
	start := time.Now()
	r, err := Run(context.Background(), Config{Scenario: Connect, Addr: s.addr, Conns: 20, Loops: 2,
		TLS: &TLSConfig{CAFile: other.caFile}, Timeout: 20 * time.Second})
	if err == nil || r == nil || r.Connected != 0 {
		t.Fatalf("connect with the wrong CA: err %v, result %+v", err, r)
	}
	if len(r.Failures) != 1 {
		t.Fatalf("failures: %v", r.Failures)
	}
	for reason, n := range r.Failures {
		if n != 20 || !strings.HasPrefix(reason, "tls: ") || !strings.Contains(reason, "x509") {
			t.Fatalf("failures: %v", r.Failures)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("failing took %v", d)
	}
	// Without verification the same server is fine, and the result says so.
	r, err = Run(context.Background(), Config{Scenario: Connect, Addr: s.addr, Conns: 20, Loops: 2,
		TLS: &TLSConfig{Insecure: true}, Timeout: 20 * time.Second})
	if err != nil || r.Connected != 20 || !strings.Contains(r.TLS, "NOT verified") {
		t.Fatalf("insecure: err %v, connected %d, TLS %q", err, r.Connected, r.TLS)
	}
}

// TestTLSPlainServer: wss:// to a server that answers in plain HTTP fails
// with a TLS reason, not a hang.
func TestTLSPlainServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	r, err := Run(context.Background(), Config{Scenario: Connect, Addr: srv.Listener.Addr().String(), Conns: 5, Loops: 1,
		TLS: &TLSConfig{Insecure: true}, Timeout: 20 * time.Second})
	if err == nil || r.Connected != 0 {
		t.Fatalf("err %v, connected %d", err, r.Connected)
	}
	for reason := range r.Failures {
		if !strings.HasPrefix(reason, "tls: ") && reason != "eof" {
			t.Fatalf("failures: %v", r.Failures)
		}
	}
}

func TestSplitURL(t *testing.T) {
	for in, want := range map[string]struct {
		hp     string
		secure bool
	}{
		"127.0.0.1:8080": {"127.0.0.1:8080", false}, "ws://127.0.0.1:80/": {"127.0.0.1:80", false},
		"wss://localhost:8443": {"localhost:8443", true},
	} {
		hp, secure, err := SplitURL(in)
		if err != nil || hp != want.hp || secure != want.secure {
			t.Errorf("SplitURL(%q) = %q, %v, %v", in, hp, secure, err)
		}
	}
	for _, bad := range []string{"https://127.0.0.1:1", "wss://127.0.0.1:1/ws", "127.0.0.1"} {
		if _, _, err := SplitURL(bad); err == nil {
			t.Errorf("SplitURL(%q) accepted", bad)
		}
	}
}

// TestPeerConfigsTLS renders the TLS round's certificate and the peers'
// configurations, plain and TLS; where nginx and HAProxy are installed it
// has them check the files.
func TestPeerConfigsTLS(t *testing.T) {
	out := t.TempDir()
	tf, err := writeTLSFiles(filepath.Join(out, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(tf.Cert, tf.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(tf.PEM, tf.PEM); err != nil {
		t.Fatalf("combined PEM: %v", err)
	}
	backends := []backendProc{{ID: "b1", Link: "127.0.0.1:1", WS: "127.0.0.1:2"}}
	for _, tc := range []struct {
		peer, file, tmpl string
		want             []string
	}{
		{"nginx", "nginx.conf", nginxConf, []string{"listen 127.0.0.1:3 ssl reuseport", "ssl_certificate " + tf.Cert + ";",
			"ssl_certificate_key " + tf.Key + ";", "ssl_protocols TLSv1.2 TLSv1.3;"}},
		{"haproxy", "haproxy.cfg", haproxyConf, []string{"bind 127.0.0.1:3 backlog 4096 ssl crt " + tf.PEM + " alpn http/1.1",
			"ssl-default-bind-options ssl-min-ver TLSv1.2"}},
	} {
		for _, files := range []*tlsFiles{nil, tf} {
			sub := "plain"
			if files != nil {
				sub = "tls"
			}
			dir, conf, err := writeConfig(filepath.Join(out, sub), tc.peer, tc.file, tc.tmpl, "127.0.0.1:3", backends, files)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(conf)
			for _, w := range tc.want {
				if got := strings.Contains(string(b), w); got != (files != nil) {
					t.Errorf("%s (TLS %v): %q present: %v\n%s", tc.peer, files != nil, w, got, b)
				}
			}
			checkPeerConfig(t, tc.peer, dir, conf)
		}
	}
}

// checkPeerConfig runs the peer's own configuration check if it is
// installed (nginx -t, haproxy -c).
func checkPeerConfig(t *testing.T, peer, dir, conf string) {
	t.Helper()
	bin, err := exec.LookPath(peer)
	if err != nil {
		return
	}
	args := []string{"-c", "-f", conf}
	if peer == "nginx" {
		if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		args = []string{"-t", "-q", "-p", dir, "-c", conf, "-g", "error_log stderr;"}
	}
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Errorf("%s %v: %v\n%s", peer, args, err, b)
	}
}
