package scaler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/scaler"
)

// fakeEngine speaks the few Docker Engine API endpoints the docker driver
// uses, and records what it was asked.
type fakeEngine struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*fakeContainer // by engine id
	creates    []createBody
	calls      []string // "METHOD /path" without the version prefix
	exitOnRun  bool     // containers exit at once (a backend that cannot start)
}

type fakeContainer struct {
	ID, Name string
	Labels   map[string]string
	State    string // created, running, exited
}

// createBody is the part of POST /containers/create the driver fills.
type createBody struct {
	Image      string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	HostConfig struct {
		NetworkMode string
	}
	NetworkingConfig struct {
		EndpointsConfig map[string]any
	}
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func newFakeEngine(t *testing.T) (*fakeEngine, string) {
	f := &fakeEngine{containers: map[string]*fakeContainer{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, "tcp://" + srv.Listener.Addr().String()
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("API-Version", "1.41")
	w.Header().Set("OSType", "linux")
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+path)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/_ping":
		_, _ = w.Write([]byte("OK"))
	case r.Method == "POST" && path == "/containers/create":
		var b createBody
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, `{"message":"bad body"}`, 400)
			return
		}
		f.creates = append(f.creates, b)
		f.seq++
		id := fmt.Sprintf("c%063d", f.seq)
		f.containers[id] = &fakeContainer{ID: id, Name: r.URL.Query().Get("name"), Labels: b.Labels, State: "created"}
		writeJSON(w, 201, map[string]any{"Id": id, "Warnings": []string{}})
	case r.Method == "GET" && path == "/containers/json":
		var filters map[string]map[string]bool
		_ = json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters)
		out := []map[string]any{}
		for _, c := range f.containers {
			if c.State != "running" && r.URL.Query().Get("all") != "1" {
				continue
			}
			match := true
			for l := range filters["label"] {
				k, v, _ := strings.Cut(l, "=")
				if c.Labels[k] != v {
					match = false
				}
			}
			if match {
				out = append(out, map[string]any{"Id": c.ID, "Names": []string{"/" + c.Name}, "Labels": c.Labels, "State": c.State})
			}
		}
		writeJSON(w, 200, out)
	case len(parts) == 3 && parts[0] == "containers" && f.containers[parts[1]] != nil:
		c := f.containers[parts[1]]
		switch r.Method + " " + parts[2] {
		case "POST start":
			c.State = "running"
			if f.exitOnRun {
				c.State = "exited"
			}
			w.WriteHeader(204)
		case "POST stop":
			if r.URL.Query().Get("t") == "" {
				http.Error(w, `{"message":"no stop timeout"}`, 400)
				return
			}
			c.State = "exited"
			w.WriteHeader(204)
		case "GET json":
			writeJSON(w, 200, map[string]any{"Id": c.ID, "Name": "/" + c.Name, "Config": map[string]any{"Labels": c.Labels},
				"State": map[string]any{"Status": c.State, "Running": c.State == "running", "ExitCode": map[bool]int{true: 2}[c.State == "exited"]}})
		default:
			http.Error(w, `{"message":"unexpected"}`, 404)
		}
	case r.Method == "DELETE" && len(parts) == 2 && parts[0] == "containers" && f.containers[parts[1]] != nil:
		if f.containers[parts[1]].State == "running" {
			http.Error(w, `{"message":"container is running"}`, 409)
			return
		}
		delete(f.containers, parts[1])
		w.WriteHeader(204)
	default:
		http.Error(w, `{"message":"no such endpoint or container"}`, 404)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TestDockerFakeEngine checks the driver's requests against a fake engine:
// image, command line without the secret, environment with it, labels,
// network, the maximum counted over its own containers only, removal of
// its own containers only.
func TestDockerFakeEngine(t *testing.T) {
	f, host := newFakeEngine(t)
	secret := "docker-driver-secret-0123456789"
	// Another cluster's container on the same engine.
	f.containers["foreign"] = &fakeContainer{ID: "foreign", Name: "other-backend-1",
		Labels: map[string]string{scaler.LabelCluster: "other", scaler.LabelNode: "other-backend-1"}, State: "running"}
	d, err := scaler.NewDocker(scaler.DockerConfig{Host: host, Image: "wsgate:test", Network: "wsnet", Cluster: "c1",
		AMQP: "amqp://u:p@rabbitmq:5672/", Redis: "redis://redis:6379/0", Exchange: "c1", RedisPrefix: "c1",
		ClusterSecret: []byte(secret), Max: 2, DrainTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	var ids []string
	for range 2 {
		id, err := d.AddNode()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := d.AddNode(); !errors.Is(err, scaler.ErrMax) {
		t.Fatalf("AddNode beyond Max 2: %v, want ErrMax", err)
	}
	for i, b := range f.creates {
		id := ids[i]
		if !strings.HasPrefix(id, "c1-backend-") {
			t.Errorf("node id %q", id)
		}
		if b.Image != "wsgate:test" {
			t.Errorf("image %q", b.Image)
		}
		if len(b.Cmd) < 3 || b.Cmd[0] != "backend" || !slices.Contains(b.Cmd, id) || !slices.Contains(b.Cmd, "0.0.0.0:9000") {
			t.Errorf("command %q", b.Cmd)
		}
		if strings.Contains(strings.Join(b.Cmd, " "), secret) || strings.Contains(strings.Join(b.Cmd, " "), "amqp://") {
			t.Errorf("secret or URL on the command line: %q", b.Cmd)
		}
		for _, kv := range []string{"WSGATE_CLUSTER_SECRET=" + secret, "WSGATE_AMQP=amqp://u:p@rabbitmq:5672/",
			"WSGATE_REDIS=redis://redis:6379/0", "WSGATE_EXCHANGE=c1", "WSGATE_REDIS_PREFIX=c1"} {
			if !slices.Contains(b.Env, kv) {
				t.Errorf("env %q lacks %s", b.Env, kv)
			}
		}
		if b.Labels[scaler.LabelCluster] != "c1" || b.Labels[scaler.LabelNode] != id {
			t.Errorf("labels %v", b.Labels)
		}
		if b.HostConfig.NetworkMode != "wsnet" || b.NetworkingConfig.EndpointsConfig["wsnet"] == nil {
			t.Errorf("network %q %v", b.HostConfig.NetworkMode, b.NetworkingConfig.EndpointsConfig)
		}
	}
	got, err := d.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(ids)); !slices.Equal(got, want) {
		t.Fatalf("Nodes = %v, want %v (not the other cluster's)", got, want)
	}
	if err := d.RemoveNode("other-backend-1"); !errors.Is(err, gateway.ErrUnknownNode) {
		t.Fatalf("removing another cluster's container: %v, want ErrUnknownNode", err)
	}
	if err := d.RemoveNode(ids[0]); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	n := len(f.containers)
	var stops, deletes int
	for _, c := range f.calls {
		stops += map[bool]int{true: 1}[strings.HasSuffix(c, "/stop")]
		deletes += map[bool]int{true: 1}[strings.HasPrefix(c, "DELETE ")]
	}
	f.mu.Unlock()
	if n != 2 || stops != 1 || deletes != 1 {
		t.Fatalf("after RemoveNode: %d containers (want 2), %d stops, %d deletes (want 1, 1)", n, stops, deletes)
	}
	// Below the maximum again.
	if _, err := d.AddNode(); err != nil {
		t.Fatal(err)
	}

	// A backend that exits before it joins: a clear error, and the
	// container is removed.
	f.mu.Lock()
	f.exitOnRun = true
	f.mu.Unlock()
	if err := d.RemoveNode(ids[1]); err != nil {
		t.Fatal(err)
	}
	_, err = d.AddNode()
	if err == nil || !strings.Contains(err.Error(), "before it joined") {
		t.Fatalf("AddNode of a container that exits: %v", err)
	}
	if ids, _ := d.Nodes(context.Background()); len(ids) != 1 {
		t.Fatalf("Nodes = %v after a failed start, want one", ids)
	}
	f.mu.Lock()
	for _, c := range f.containers {
		if c.State == "exited" && c.Labels[scaler.LabelCluster] == "c1" {
			t.Errorf("failed container %s left behind", c.Name)
		}
	}
	f.mu.Unlock()
}

// TestDockerEngine runs backend containers on the local Docker engine: an
// image FROM scratch holding the static binary, on the host network (the
// test's Redis and RabbitMQ listen on loopback). Without a reachable
// engine it skips, unless WSGATE_DOCKER_TESTS=1 makes that a failure.
func TestDockerEngine(t *testing.T) {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		if os.Getenv("WSGATE_DOCKER_TESTS") == "1" {
			t.Fatalf("WSGATE_DOCKER_TESTS=1 but the Docker engine is not reachable: %v\n%s", err, out)
		}
		t.Skipf("SKIPPED, not passed: no reachable Docker engine (%v); WSGATE_DOCKER_TESTS=1 makes this a failure", err)
	}
	name := clusterName(t)
	image := "wsgate-scaler-test:" + name
	dir := t.TempDir()
	bin, err := os.ReadFile(binary())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wsgate"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	dockerfile := "FROM scratch\nCOPY wsgate /wsgate\nENTRYPOINT [\"/wsgate\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("docker", "build", "-q", "-t", image, dir)
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Whatever the test left: its containers, then its image.
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+scaler.LabelCluster+"="+name).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
		_ = exec.Command("docker", "rmi", "-f", image).Run()
	})
	secret := []byte("docker-engine-test-secret-0123456789")
	var gp atomic.Pointer[gateway.Gateway]
	d, err := scaler.NewDocker(scaler.DockerConfig{Image: image, Network: "host", Cluster: name,
		AMQP: amqpURL, Redis: redisURL, Exchange: name, RedisPrefix: name, ClusterSecret: secret,
		Args: []string{"--heartbeat", "200ms", "--node-ttl", "1s"}, Joined: joinedOn(&gp), Max: 2,
		DrainTimeout: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	gp.Store(startGateway(t, name, secret, d))
	g := gp.Load()
	a, err := d.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.AddNode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddNode(); !errors.Is(err, scaler.ErrMax) {
		t.Fatalf("AddNode beyond Max 2: %v", err)
	}
	c := connect(t, g.Addr(), "docker-user")
	if c.node != a && c.node != b {
		t.Fatalf("client on %q, want %s or %s", c.node, a, b)
	}
	code := make(chan int, 1)
	go func() { code <- c.closed(t) }()
	if err := d.RemoveNode(c.node); err != nil {
		t.Fatal(err)
	}
	if cc := <-code; cc != 1012 {
		t.Fatalf("close %d, want 1012", cc)
	}
	if again := connect(t, g.Addr(), "docker-user"); again.node == c.node {
		t.Fatalf("client back on the removed node %s", c.node)
	}
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+scaler.LabelNode+"="+c.node).Output()
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("container of %s not removed: %s", c.node, out)
	}
}
