package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/testutil"
)

// startLimited starts `wsgate args...` under a shell that lowers the open
// file limit to nofile first (soft and hard), so descriptor exhaustion is
// reached with a few hundred sockets.
func startLimited(t *testing.T, nofile int, args ...string) *proc {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + a + "'"
	}
	return startCmd(t, "sh", "-c", "ulimit -n "+strconv.Itoa(nofile)+" && exec "+binary+" "+strings.Join(quoted, " "))
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// TestDescriptorFlood: a flood of raw connects (no request) against a
// gateway whose process may hold only 256 descriptors leaves it serving
// its existing client, and it takes new clients again once the flood goes.
// With the default --max-conns (derived from the limit) the flood meets the
// connection cap (503s); with a cap above the limit it meets descriptor
// exhaustion itself (EMFILE), which the accept loop survives.
func TestDescriptorFlood(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  []string
		reason string
	}{
		{"default limits", nil, "max_conns"},
		{"cap above the descriptor limit", []string{"--max-conns", "100000"}, "fd_exhausted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, baddr := startBackend(t, "fd1", "127.0.0.1:0")
			args := append([]string{"gateway", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
				"--backend", "fd1=" + baddr, "--handshake-timeout", "30s"}, tc.extra...)
			p := startLimited(t, 256, args...)
			m := p.waitLog(t, `gateway started.* listen=(\S+) admin=(\S+)`)
			addr, admin := m[1], m[2]

			old, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws/old", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			echo := func(text string) error {
				_ = old.SetReadDeadline(time.Now().Add(5 * time.Second))
				_ = old.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := old.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
					return err
				}
				for { // skip the welcome
					_, b, err := old.ReadMessage()
					if err != nil {
						return err
					}
					if string(b) == text {
						return nil
					}
				}
			}
			if err := echo("before"); err != nil {
				t.Fatal(err)
			}

			var flood []net.Conn
			for i := range 400 {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i%8))}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue // the accept queue may be full: that is the flood's business
				}
				flood = append(flood, c)
			}
			// The flood is in when the gateway holds its cap, or every
			// descriptor it may have (counted in /proc: the admin listener
			// may have none left to answer with).
			pid := p.cmd.Process.Pid
			testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
				if n := len(fds); n < 190 {
					return fmt.Errorf("gateway holds %d descriptors", n)
				}
				return nil
			})
			// Not ready: 503, or, out of descriptors, no answer at all (the
			// admin listener has none to accept the probe with; a probe that
			// times out fails, as a Kubernetes readiness probe does).
			probe := http.Client{Timeout: 2 * time.Second}
			r, err := probe.Get("http://" + admin + "/readyz")
			switch {
			case err == nil:
				r.Body.Close()
				if r.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("/readyz during the flood: %d, want 503", r.StatusCode)
				}
			case tc.reason == "max_conns":
				t.Fatalf("/readyz during the flood: %v; below the descriptor limit the admin API must answer", err)
			}
			if err := echo("during"); err != nil {
				t.Fatalf("existing client during the flood: %v", err)
			}
			for _, c := range flood {
				c.Close()
			}
			gone := time.Now()
			testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws/new", nil)
				if err != nil {
					return err
				}
				ws.Close()
				return nil
			})
			t.Logf("new client accepted %v after the flood closed", time.Since(gone).Round(time.Millisecond))
			testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
				if v := testutil.Metric(t, admin, `wsgate_gateway_rejected_total{reason="`+tc.reason+`"}`); v < 1 {
					return fmt.Errorf("rejected{%s} = %v", tc.reason, v)
				}
				return nil
			})
			if err := echo("after"); err != nil {
				t.Fatalf("existing client after the flood: %v", err)
			}
			testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
				if s := httpStatus(t, "http://"+admin+"/readyz"); s != http.StatusOK {
					return fmt.Errorf("/readyz %d", s)
				}
				return nil
			})
			if s := httpStatus(t, "http://"+admin+"/healthz"); s != http.StatusOK {
				t.Fatalf("/healthz after the flood: %d", s)
			}
		})
	}
}

// TestRestartAtOnce: a gateway (and a backend) binds its port again right
// after the previous process on it stopped, although the closed client
// connections sit in TIME_WAIT on that port (SO_REUSEADDR).
func TestRestartAtOnce(t *testing.T) {
	port := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	gaddr, baddr := port(), port()
	stop := func(p *proc, what string, round int) {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("round %d: %s exited with %d", round, what, ee.ExitCode())
			}
		}
	}
	for round := range 2 {
		bp, b := startBackend(t, "rb", baddr, "--admin", "-")
		p := start(t, "gateway", "--listen", gaddr, "--admin", "-", "--backend", "rb="+b)
		p.waitLog(t, `gateway started`)
		// Clients the gateway closes on shutdown: the server side closes
		// first, so those connections wait in TIME_WAIT on gaddr.
		for i := range 5 {
			c, err := dialWS(gaddr, "/ws/r"+strconv.Itoa(i), net.IPv4(127, 0, 0, 1))
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
		stop(p, "gateway", round)
		stop(bp, "backend", round)
	}
}
