package scaler_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/presence"
	"github.com/wsgate/wsgate/internal/rabbit"
	"github.com/wsgate/wsgate/scaler"
)

// The process and docker tests run the real binary, built once here; the
// cluster tests use the machine's RabbitMQ and Redis (`make test` starts
// them with scripts/services.sh) and fail, never skip, without them.

const (
	amqpURL  = "amqp://guest:guest@127.0.0.1:5672/"
	redisURL = "redis://127.0.0.1:6379/0"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-scaler-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	// Static, so the docker test can put it in a FROM scratch image.
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "wsgate"), "../cmd/wsgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func binary() string { return filepath.Join(binDir, "wsgate") }

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// logWriter keeps the children's logs and prints them if the test fails.
type logWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newLogWriter(t *testing.T) *logWriter {
	w := &logWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			w.mu.Lock()
			t.Logf("children's logs:\n%s", w.b.String())
			w.mu.Unlock()
		}
	})
	return w
}

var seq atomic.Int64

// clusterName is a test's own exchange and Redis key prefix; its keys and
// exchanges are deleted when the test ends.
func clusterName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("wsgate-scaler-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, seq.Add(1))
	t.Cleanup(func() {
		ctx := context.Background()
		opt, _ := redis.ParseURL(redisURL)
		rdb := redis.NewClient(opt)
		if keys, _ := rdb.Keys(ctx, name+":*").Result(); len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
		if conn, err := amqp.Dial(amqpURL); err == nil {
			if ch, err := conn.Channel(); err == nil {
				_ = ch.ExchangeDelete(name, false, false)
				_ = ch.ExchangeDelete(name+".broadcast", false, false)
			}
			conn.Close()
		}
	})
	return name
}

// startGateway starts an in-process gateway that follows the cluster name
// (RabbitMQ events, Redis registry) with nodes as its node manager.
func startGateway(t *testing.T, name string, secret []byte, nodes gateway.NodeManager) *gateway.Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := testLogger(t)
	rdb, err := presence.Dial(ctx, redisURL, name)
	if err != nil {
		t.Fatalf("Redis at %s: %v (run scripts/services.sh)", redisURL, err)
	}
	t.Cleanup(func() { rdb.Close() })
	mq, err := rabbit.Dial(ctx, rabbit.Config{URL: amqpURL, Name: "scaler-test-" + name, Log: log})
	if err != nil {
		t.Fatalf("RabbitMQ at %s: %v (run scripts/services.sh)", amqpURL, err)
	}
	t.Cleanup(func() { mq.Close() })
	v := membership.NewVerifier(secret)
	rdb.DecodeNode = v.DecodeNode
	members := &membership.Cluster{Registry: rdb, Broker: mq, Exchange: name, Reconcile: 300 * time.Millisecond, Verify: v, Log: log}
	g, err := gateway.New(gateway.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Members: members, Presence: rdb,
		ClusterSecret: secret, Nodes: nodes, Logger: log, CloseTimeout: time.Second, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	members.Alive = g.NodeAlive
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return g
}

// client is a WebSocket client of the demo app with the node it landed on.
type client struct {
	ws        *websocket.Conn
	key, node string
}

// connect dials key through the gateway at addr and reads the welcome.
func connect(t *testing.T, addr, key string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws/"+key, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", key, err)
	}
	t.Cleanup(func() { ws.Close() })
	var w struct {
		ServerIP string `json:"serverIp"`
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&w); err != nil {
		t.Fatalf("welcome of %s: %v", key, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return &client{ws: ws, key: key, node: w.ServerIP}
}

// closed reads until the client is closed and returns the close code.
func (c *client) closed(t *testing.T) int {
	t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("client on %s: %v, want a close frame", c.node, err)
		}
	}
}

// gone reports whether process pid no longer exists.
func gone(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

// joinedOn is a Joined check on the gateway g holds once it is started.
func joinedOn(g *atomic.Pointer[gateway.Gateway]) func(string) bool {
	return func(id string) bool { return scaler.OnRing(g.Load(), id) }
}

// nodesOf is the driver's node list, failing the test on an error.
func nodesOf(t *testing.T, s scaler.Scaler) []string {
	t.Helper()
	ids, err := s.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
