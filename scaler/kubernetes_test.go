package scaler_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/scaler"
)

// fakeKube is an API server holding one Deployment's scale subresource.
type fakeKube struct {
	mu       sync.Mutex
	replicas int
	version  int
	auths    []string // Authorization headers seen
	puts     int
	fail     int // answer the next PUT with this status
}

const scalePath = "/apis/apps/v1/namespaces/ws/deployments/backend/scale"

func (f *fakeKube) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	if r.Header.Get("Authorization") != "Bearer kube-token" {
		writeJSON(w, 401, map[string]any{"kind": "Status", "message": "Unauthorized", "reason": "Unauthorized"})
		return
	}
	if r.URL.Path != scalePath {
		writeJSON(w, 404, map[string]any{"kind": "Status", "message": "deployments.apps not found", "reason": "NotFound"})
		return
	}
	scale := func() map[string]any {
		return map[string]any{"apiVersion": "autoscaling/v1", "kind": "Scale",
			"metadata": map[string]any{"name": "backend", "namespace": "ws", "resourceVersion": itoa(f.version)},
			"spec":     map[string]any{"replicas": f.replicas}, "status": map[string]any{"replicas": f.replicas}}
	}
	switch r.Method {
	case "GET":
		writeJSON(w, 200, scale())
	case "PUT":
		f.puts++
		if f.fail != 0 {
			writeJSON(w, f.fail, map[string]any{"kind": "Status", "reason": "Forbidden",
				"message": `deployments.apps "backend" is forbidden: User "system:serviceaccount:ws:wsgate" cannot update resource "deployments/scale"`})
			f.fail = 0
			return
		}
		var s struct {
			Kind     string
			Metadata struct{ ResourceVersion string }
			Spec     struct{ Replicas int }
		}
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.Kind != "Scale" || r.Header.Get("Content-Type") != "application/json" {
			writeJSON(w, 400, map[string]any{"kind": "Status", "message": "bad Scale"})
			return
		}
		if s.Metadata.ResourceVersion != itoa(f.version) {
			writeJSON(w, 409, map[string]any{"kind": "Status", "message": "the object has been modified", "reason": "Conflict"})
			return
		}
		f.replicas, f.version = s.Spec.Replicas, f.version+1
		writeJSON(w, 200, scale())
	default:
		w.WriteHeader(405)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// newKube serves f and returns the driver for its Deployment and its URL.
func newKube(t *testing.T, f *fakeKube, max int) (*scaler.Kubernetes, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	k, err := scaler.NewKubernetes(scaler.KubernetesConfig{API: srv.URL, TokenFile: writeToken(t, "kube-token\n"),
		Namespace: "ws", Deployment: "backend", Max: max, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return k, srv.URL
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestKubernetesScale(t *testing.T) {
	f := &fakeKube{replicas: 1}
	k, _ := newKube(t, f, 3)
	for want := 2; want <= 3; want++ {
		id, err := k.AddNode()
		if err != nil {
			t.Fatal(err)
		}
		if id != "replica-"+itoa(want) || f.replicas != want {
			t.Fatalf("AddNode = %q, replicas %d; want replica-%d", id, f.replicas, want)
		}
	}
	if _, err := k.AddNode(); !errors.Is(err, scaler.ErrMax) || f.replicas != 3 {
		t.Fatalf("AddNode at Max 3: %v (replicas %d), want ErrMax", err, f.replicas)
	}
	ids, err := k.Nodes(context.Background())
	if err != nil || !slices.Equal(ids, []string{"replica-1", "replica-2", "replica-3"}) {
		t.Fatalf("Nodes = %v %v", ids, err)
	}
	// The id is advisory: any removes one replica.
	if err := k.RemoveNode("wsgate-backend-7d9f-abcde"); err != nil || f.replicas != 2 {
		t.Fatalf("RemoveNode: %v, replicas %d", err, f.replicas)
	}
	for _, a := range f.auths {
		if a != "Bearer kube-token" {
			t.Fatalf("Authorization %q", a)
		}
	}
	// An error from the API surfaces with its message.
	f.fail = http.StatusForbidden
	_, err = k.AddNode()
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "cannot update resource") {
		t.Fatalf("forbidden PUT: %v", err)
	}
	if f.replicas != 2 {
		t.Fatalf("replicas %d after a refused PUT", f.replicas)
	}
	for range 2 {
		if err := k.RemoveNode("x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.RemoveNode("x"); !errors.Is(err, gateway.ErrUnknownNode) {
		t.Fatalf("RemoveNode at 0 replicas: %v, want ErrUnknownNode", err)
	}
}

func TestKubernetesErrors(t *testing.T) {
	f := &fakeKube{}
	_, url := newKube(t, f, 3)
	// A wrong token: the 401 surfaces.
	bad, err := scaler.NewKubernetes(scaler.KubernetesConfig{API: url, TokenFile: writeToken(t, "wrong"),
		Namespace: "ws", Deployment: "backend", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.AddNode(); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	// A deployment that does not exist.
	missing, err := scaler.NewKubernetes(scaler.KubernetesConfig{API: url, TokenFile: writeToken(t, "kube-token"),
		Namespace: "ws", Deployment: "nope", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Nodes(context.Background()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing deployment: %v", err)
	}
	// Not in a pod, no --scaler-kube-api.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := scaler.NewKubernetes(scaler.KubernetesConfig{}); err == nil || !strings.Contains(err.Error(), "--scaler-kube-api") {
		t.Fatalf("outside a pod: %v", err)
	}
	if _, err := scaler.NewKubernetes(scaler.KubernetesConfig{API: "ftp://x", TokenFile: writeToken(t, "kube-token")}); err == nil {
		t.Fatal("ftp:// API accepted")
	}
}
