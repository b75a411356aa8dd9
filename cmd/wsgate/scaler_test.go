package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/testutil"
)

func TestScalerFlagErrors(t *testing.T) {
	cluster := []string{"--amqp", amqpURL, "--redis", redisURL}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--scaler", "lambda"}, "--scaler \"lambda\""},
		{[]string{"dev", "--scaler", "docker"}, "--scaler docker"},
		{[]string{"dev", "--scaler", "kubernetes"}, "--scaler kubernetes"},
		{[]string{"dev", "--scaler-max", "-1"}, "--scaler-max"},
		{[]string{"dev", "--backends", "5", "--scaler-max", "4"}, "--scaler-max 4"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--scaler", "dev"}, "--scaler dev"},
		{[]string{"gateway", "--backend", "a=127.0.0.1:1", "--scaler", "process"}, "--scaler process"},
		{append([]string{"gateway", "--scaler", "docker"}, cluster...), "--scaler docker"},
		{append([]string{"gateway", "--scaler", "kubernetes", "--scaler-kube-api", "ftp://x"}, cluster...), "--scaler kubernetes"},
		{append([]string{"gateway", "--scaler", "kubernetes", "--scaler-kube-api", "https://127.0.0.1:1", "--scaler-kube-token-file", "/nonexistent"}, cluster...), "--scaler kubernetes"},
	}
	for _, tc := range cases {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = append(os.Environ(), "WSGATE_CLUSTER_SECRET=") // the docker case must lack a secret
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("wsgate %v: exit %v, output %q; want exit 2 mentioning %q", tc.args, err, out, tc.want)
		}
	}
}

// TestGatewayProcessScaler: `wsgate gateway --scaler process` adds and
// removes backend children through the admin API; they stop with it.
func TestGatewayProcessScaler(t *testing.T) {
	e := newClusterEnv(t)
	id := "sg-" + e.name
	g := e.gateway(t, "--id", id, "--scaler", "process", "--scaler-max", "2")
	var a, b struct{ ID string }
	g.post(t, "/api/nodes", "{}", &a)
	g.post(t, "/api/nodes", "{}", &b)
	if a.ID != id+"-b-1" || b.ID != id+"-b-2" {
		t.Fatalf("added %q and %q", a.ID, b.ID)
	}
	g.waitMembers(t, a.ID+","+b.ID)
	r, err := http.Post("http://"+g.admin+"/api/nodes", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusConflict || !strings.Contains(body.String(), "--scaler-max") {
		t.Fatalf("third node at --scaler-max 2: %s %s; want 409 naming --scaler-max", r.Status, body.String())
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+g.admin+"/api/nodes/"+a.ID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s: %s", a.ID, resp.Status)
	}
	g.waitMembers(t, b.ID)
	if pids := processesWith(id + "-b-1\x00"); len(pids) > 0 {
		t.Fatalf("removed backend still runs: %v", pids)
	}
	if len(processesWith(id+"-b-2")) != 1 {
		t.Fatal("no child process for " + b.ID)
	}
	// SIGTERM: the gateway drains and stops its children.
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway exit: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("gateway did not exit within 60s of SIGTERM")
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if pids := processesWith(id + "-b-"); len(pids) > 0 {
			return &os.PathError{Op: "child survived the gateway", Path: strings.Join(pids, ",")}
		}
		return nil
	})
}

// processesWith lists the pids of processes whose command line holds s.
func processesWith(s string) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}
