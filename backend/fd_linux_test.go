//go:build linux

package backend_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/internal/gwtest"
	"github.com/wsgate/wsgate/internal/testutil"
)

// fdChildEnv makes TestAcceptFDExhaustion run as the child: a node in a
// process with a low descriptor limit.
const fdChildEnv = "WSGATE_BACKEND_FD_CHILD"

// fdReport is what the child reports on "stats".
type fdReport struct {
	Stats     backend.Stats
	Failing   int64 // "accept failing" log lines
	Recovered int64 // "accept recovered" log lines
}

// countLog counts the accept loop's log lines; other records are dropped.
type countLog struct{ failing, recovered *atomic.Int64 }

func (h countLog) Enabled(context.Context, slog.Level) bool { return true }
func (h countLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h countLog) WithGroup(string) slog.Handler            { return h }
func (h countLog) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.HasPrefix(r.Message, "accept failing"):
		h.failing.Add(1)
	case strings.HasPrefix(r.Message, "accept recovered"):
		h.recovered.Add(1)
	}
	return nil
}

// fdChild runs the node with RLIMIT_NOFILE lowered and answers "stats"
// lines on stdin with "stats <json>" on stdout until stdin closes.
func fdChild(t *testing.T) {
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = uint64(max(64, len(open)+32))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	var failing, recovered atomic.Int64
	n, err := backend.NewNode(backend.Config{
		ID: "fd-child", Listen: "127.0.0.1:0",
		Logger: slog.New(countLog{&failing, &recovered}),
		// Only descriptors run out: the flood is silent and must hold them.
		MaxLinks: 100000, MaxPendingLinks: 100000, HelloTimeout: time.Minute,
	}, newRecorder(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	fmt.Printf("\naddr %s\n", n.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		b, _ := json.Marshal(fdReport{n.Stats(), failing.Load(), recovered.Load()})
		fmt.Printf("stats %s\n", b)
	}
}

// fdParent drives the child process over its stdin and stdout.
type fdParent struct {
	t     *testing.T
	stdin io.Writer
	lines chan string
}

// line returns the next stdout line of the child starting with prefix.
func (p *fdParent) line(prefix string) string {
	p.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("child exited while waiting for %q", prefix)
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest
			}
		case <-timeout:
			p.t.Fatalf("no %q line from the child", prefix)
		}
	}
}

func (p *fdParent) report() fdReport {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, "stats\n"); err != nil {
		p.t.Fatal(err)
	}
	var r fdReport
	if err := json.Unmarshal([]byte(p.line("stats ")), &r); err != nil {
		p.t.Fatal(err)
	}
	return r
}

// lockedBuffer collects the child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestAcceptFDExhaustion: a node whose process runs out of descriptors
// under a flood of connections keeps serving its existing link, refuses
// pending connections on its reserve descriptor (counted, logged once per
// episode, no spinning), and accepts a real link again within a few
// seconds of descriptors freeing up.
func TestAcceptFDExhaustion(t *testing.T) {
	if os.Getenv(fdChildEnv) == "1" {
		fdChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptFDExhaustion$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), fdChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	p := &fdParent{t: t, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close() // the child closes its node and exits
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("child: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("child did not exit\n%s", stderr.String())
		}
	})
	addr := p.line("addr ")

	g := gwtest.Dial(t, addr, "gw-keep")
	g.Open(1, "u1", "/ws")
	echo(t, g, 1, "before")

	// Flood: far more silent connections than the child has descriptors.
	// The kernel completes them (listen backlog) whether accepted or not.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			_ = c.Close()
		}
	}()
	for i := range 300 {
		// From many source addresses: one address may hold only
		// MaxPendingLinksPerSource handshake slots.
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, byte(1+i%100))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood dial: %v", err)
		}
		flood = append(flood, c)
	}
	var rep fdReport
	var first uint64
	var t0 time.Time
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		rep = p.report()
		if first = rep.Stats.LinksRejected.FDExhausted; first < 1 {
			return fmt.Errorf("%+v", rep)
		}
		t0 = time.Now()
		return nil
	})
	// No spinning: refusals are paced by the backoff (5 ms doubling), so
	// three more take at least the two backoff steps after the one under
	// way when the first was seen: 10 + 20 ms.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		rep = p.report()
		if rep.Stats.LinksRejected.FDExhausted < first+3 {
			return fmt.Errorf("%+v", rep)
		}
		return nil
	})
	if d := time.Since(t0); d < 25*time.Millisecond {
		t.Fatalf("3 refusals in %v: the accept loop does not back off", d)
	}
	if rep.Failing != 1 || rep.Recovered != 0 {
		t.Fatalf("accept failure logged %d times (recovered %d) in one episode", rep.Failing, rep.Recovered)
	}
	if rep.Stats.Links < 2 || rep.Stats.Links >= 300 {
		t.Fatalf("Links = %d: want the flood only partly accepted", rep.Stats.Links)
	}
	// The established link is served meanwhile.
	echo(t, g, 1, "during")

	// Descriptors free up: a real link is accepted within a few seconds.
	for _, c := range flood {
		_ = c.Close()
	}
	flood = nil
	start := time.Now()
	g2 := gwtest.Dial(t, addr, "gw-new")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("new link took %v after descriptors freed", d)
	}
	g2.Open(1, "u2", "/ws")
	echo(t, g2, 1, "after")
	echo(t, g, 1, "still")
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		rep = p.report()
		// Accepting the closed flood from the backlog can run out of
		// descriptors again (new episodes), but each episode logs one
		// line when it starts and one when it ends: wait for the last to end.
		if rep.Stats.Links != 2 || rep.Stats.LinksPending != 0 || rep.Recovered < 1 || rep.Failing != rep.Recovered {
			return fmt.Errorf("%+v", rep)
		}
		return nil
	})
}
