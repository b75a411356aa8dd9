package scaler

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/gateway"
)

// In-cluster service account files (Kubernetes mounts them in every pod).
const (
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	DefaultDeployment = "wsgate-backend"
)

// KubernetesConfig configures the kubernetes driver.
type KubernetesConfig struct {
	// API is the API server's URL; default in-cluster:
	// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
	API string
	// TokenFile holds the bearer token (re-read on every call: projected
	// tokens rotate); default ServiceAccountDir/token.
	TokenFile string
	// CAFile is the API server's CA (PEM); default ServiceAccountDir/ca.crt
	// when it exists; "" with an http:// API (tests).
	CAFile string
	// Namespace of the Deployment; default the pod's (ServiceAccountDir/
	// namespace), else "default".
	Namespace string
	// Deployment is the backend Deployment's name; default DefaultDeployment.
	Deployment string
	// Max is the most replicas; default DefaultMax.
	Max    int
	Logger *slog.Logger // default slog.Default()
	// Client is the HTTP client; default one trusting CAFile, 10s timeout.
	Client *http.Client
}

// Kubernetes scales a Deployment through its scale subresource
// (GET/PUT /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale):
// AddNode is replicas+1, RemoveNode replicas-1. Kubernetes, not wsgate,
// creates and picks the pods, so node ids are advisory: AddNode returns
// "replica-N" (N the new count) at once, before the pod exists, and
// RemoveNode accepts any id it listed (Nodes: replica-1..replica-N) or any
// id of a node the gateway knows, and removes one pod of Kubernetes'
// choosing (pods drain on SIGTERM like any backend). The service account
// needs get, update and patch on deployments/scale.
type Kubernetes struct {
	cfg   KubernetesConfig
	scale string // the scale subresource's URL
	mu    sync.Mutex
}

// kubeScale is the autoscaling/v1 Scale object (the fields used).
type kubeScale struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Replicas int `json:"replicas"`
	} `json:"spec"`
	Status map[string]any `json:"status,omitempty"`
}

// NewKubernetes checks cfg (in-cluster defaults) and returns the driver.
func NewKubernetes(cfg KubernetesConfig) (*Kubernetes, error) {
	if cfg.API == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("scaler: kubernetes driver: not in a pod (no KUBERNETES_SERVICE_HOST/PORT): give --scaler-kube-api")
		}
		cfg.API = "https://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(cfg.API)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("scaler: kubernetes API %q: want https://host:port", cfg.API)
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = ServiceAccountDir + "/token"
	}
	if cfg.CAFile == "" && u.Scheme == "https" {
		if _, err := os.Stat(ServiceAccountDir + "/ca.crt"); err == nil {
			cfg.CAFile = ServiceAccountDir + "/ca.crt"
		}
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
		if b, err := os.ReadFile(ServiceAccountDir + "/namespace"); err == nil && len(bytes.TrimSpace(b)) > 0 {
			cfg.Namespace = string(bytes.TrimSpace(b))
		}
	}
	if cfg.Deployment == "" {
		cfg.Deployment = DefaultDeployment
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := readToken(cfg.TokenFile); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("scaler: kubernetes CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("scaler: kubernetes CA %s: no PEM certificate", cfg.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		cfg.Client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	return &Kubernetes{cfg: cfg, scale: strings.TrimSuffix(cfg.API, "/") + "/apis/apps/v1/namespaces/" +
		url.PathEscape(cfg.Namespace) + "/deployments/" + url.PathEscape(cfg.Deployment) + "/scale"}, nil
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("scaler: kubernetes token: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// Name is "kubernetes".
func (k *Kubernetes) Name() string { return NameKubernetes }

// Max is the most replicas.
func (k *Kubernetes) Max() int { return k.cfg.Max }

// call sends method to the scale subresource with body (a Scale) and
// decodes the Scale answered.
func (k *Kubernetes) call(ctx context.Context, method string, body *kubeScale) (*kubeScale, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.scale, rd)
	if err != nil {
		return nil, err
	}
	tok, err := readToken(k.cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	what := fmt.Sprintf("%s deployment %s/%s scale", method, k.cfg.Namespace, k.cfg.Deployment)
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scaler: kubernetes: %s: %w", what, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		// The API's Status object says why (forbidden, not found, conflict).
		var st struct{ Message, Reason string }
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return nil, fmt.Errorf("scaler: kubernetes: %s: %s: %s", what, resp.Status, msg)
	}
	var s kubeScale
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("scaler: kubernetes: %s: bad answer: %w", what, err)
	}
	return &s, nil
}

// setReplicas reads the scale, lets change pick the new count (or fail),
// and writes it back; the resourceVersion read makes a concurrent change
// a conflict rather than a lost update.
func (k *Kubernetes) setReplicas(change func(n int) (int, error)) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := k.call(ctx, http.MethodGet, nil)
	if err != nil {
		return 0, err
	}
	n, err := change(s.Spec.Replicas)
	if err != nil {
		return 0, err
	}
	s.Spec.Replicas, s.Status = n, nil
	if s.APIVersion == "" {
		s.APIVersion, s.Kind = "autoscaling/v1", "Scale"
	}
	if _, err := k.call(ctx, http.MethodPut, s); err != nil {
		return 0, err
	}
	k.cfg.Logger.Info("backend deployment scaled", "deployment", k.cfg.Namespace+"/"+k.cfg.Deployment, "replicas", n)
	return n, nil
}

// AddNode raises the Deployment's replicas by one and returns
// "replica-N" (N the new count): the pod's name is not known yet; it
// joins when Kubernetes has started it.
func (k *Kubernetes) AddNode() (string, error) {
	n, err := k.setReplicas(func(n int) (int, error) {
		if n >= k.cfg.Max {
			return 0, maxError(NameKubernetes, n, k.cfg.Max)
		}
		return n + 1, nil
	})
	if err != nil {
		return "", err
	}
	return "replica-" + strconv.Itoa(n), nil
}

// RemoveNode lowers the Deployment's replicas by one. The id is advisory:
// Kubernetes picks the pod. At zero replicas it is gateway.ErrUnknownNode.
func (k *Kubernetes) RemoveNode(id string) error {
	_, err := k.setReplicas(func(n int) (int, error) {
		if n < 1 {
			return 0, gateway.ErrUnknownNode
		}
		return n - 1, nil
	})
	return err
}

// Nodes lists replica-1..replica-N for the Deployment's N replicas: the
// count, not pod names (see Kubernetes).
func (k *Kubernetes) Nodes(ctx context.Context) ([]string, error) {
	s, err := k.call(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	ids := make([]string, s.Spec.Replicas)
	for i := range ids {
		ids[i] = "replica-" + strconv.Itoa(i+1)
	}
	return ids, nil
}

// Close does nothing: the Deployment keeps its replicas.
func (k *Kubernetes) Close(context.Context) error { return nil }
