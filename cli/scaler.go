package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/scaler"
)

// scalerFlags choose and configure the scaling driver behind POST
// /api/nodes and DELETE /api/nodes/{id} (docs/operations.md, "Scaling
// drivers"); the same flags on gateway and dev.
type scalerFlags struct {
	kind, image, network, kubeAPI, kubeToken, kubeNS, kubeDeploy *string
	max                                                          *int
}

func addScalerFlags(fs *flagSet, def string) scalerFlags {
	none := ""
	if def == "" {
		none = " (none: adding and removing backends answers 405)"
	}
	return scalerFlags{
		kind:       fs.String("scaler", def, "scaling driver behind the console's and API's add/remove: dev (in-process, wsgate dev), process (wsgate backend children), docker (containers), kubernetes (a Deployment's replicas)"+none),
		max:        fs.Int("scaler-max", 0, fmt.Sprintf("most backends the driver runs (default %d; dev: %d)", scaler.DefaultMax, scaler.DefaultDevMax)),
		image:      fs.String("scaler-image", scaler.DefaultImage, "docker driver: backend image (present on the engine)"),
		network:    fs.String("scaler-network", scaler.DefaultNetwork, "docker driver: network the backend containers join (host: they get loopback ports)"),
		kubeAPI:    fs.String("scaler-kube-api", "", "kubernetes driver: API server URL (default in-cluster: KUBERNETES_SERVICE_HOST/PORT, the service account's CA)"),
		kubeToken:  fs.String("scaler-kube-token-file", "", "kubernetes driver: bearer token file (default the service account's)"),
		kubeNS:     fs.String("scaler-kube-namespace", "", "kubernetes driver: the Deployment's namespace (default the pod's)"),
		kubeDeploy: fs.String("scaler-kube-deployment", scaler.DefaultDeployment, "kubernetes driver: the backend Deployment"),
	}
}

// check validates the flags for the gateway (dev false) or wsgate dev.
func (f scalerFlags) check(dev, clustered bool, secret []byte) error {
	kinds := []string{scaler.NameDev, scaler.NameProcess, scaler.NameDocker, scaler.NameKubernetes}
	switch k := *f.kind; {
	case k == "" && !dev:
	case !slices.Contains(kinds, k):
		return usageError{fmt.Errorf("--scaler %q: want dev, process, docker or kubernetes", k)}
	case dev && (k == scaler.NameDocker || k == scaler.NameKubernetes):
		return usageError{fmt.Errorf("--scaler %s: wsgate dev's membership lives in its process; run wsgate gateway --amqp --redis --scaler %s", k, k)}
	case !dev && k == scaler.NameDev:
		return usageError{errors.New("--scaler dev: in-process backends are wsgate dev's; the gateway takes process, docker or kubernetes")}
	case !dev && !clustered && (k == scaler.NameProcess || k == scaler.NameDocker):
		return usageError{fmt.Errorf("--scaler %s: its backends announce themselves, so it needs --amqp and --redis", k)}
	case k == scaler.NameDocker && len(secret) == 0:
		return usageError{errors.New("--scaler docker: backends listen beyond loopback, so give --cluster-secret-file (or WSGATE_CLUSTER_SECRET)")}
	}
	if *f.max < 0 || *f.max > 1000 {
		return usageError{fmt.Errorf("--scaler-max %d: want 1..1000 (0 = the driver's default)", *f.max)}
	}
	if *f.kind == scaler.NameDocker && *f.image == "" {
		return usageError{errors.New("--scaler-image: empty")}
	}
	return nil
}

// joinedOn is a Joined check on the gateway g will hold once made.
func joinedOn(g *atomic.Pointer[gateway.Gateway]) func(string) bool {
	return func(id string) bool { return scaler.OnRing(g.Load(), id) }
}

// gatewayScaler makes the driver of wsgate gateway (nil without --scaler);
// a bad option is a usage error naming the flag.
func (f scalerFlags) gatewayScaler(cf clusterFlags, cfg *gateway.Config, joined func(string) bool, log *slog.Logger) (scaler.Scaler, error) {
	var (
		s   scaler.Scaler
		err error
	)
	switch *f.kind {
	case "":
		return nil, nil
	case scaler.NameProcess:
		s, err = scaler.NewProcess(scaler.ProcessConfig{AMQP: *cf.amqp, Redis: *cf.redis, Exchange: *cf.exchange,
			RedisPrefix: *cf.prefix, ClusterSecret: cfg.ClusterSecret, Joined: joined, IDPrefix: cfg.ID + "-b",
			Args: []string{"--keepalive", cfg.KeepAlive.String()}, Max: *f.max, Logger: log})
	case scaler.NameDocker:
		s, err = scaler.NewDocker(scaler.DockerConfig{Image: *f.image, Network: *f.network, Cluster: *cf.exchange,
			AMQP: *cf.amqp, Redis: *cf.redis, Exchange: *cf.exchange, RedisPrefix: *cf.prefix,
			ClusterSecret: cfg.ClusterSecret, Args: []string{"--keepalive", cfg.KeepAlive.String()},
			Joined: joined, Max: *f.max, Logger: log})
	case scaler.NameKubernetes:
		s, err = scaler.NewKubernetes(scaler.KubernetesConfig{API: *f.kubeAPI, TokenFile: *f.kubeToken,
			Namespace: *f.kubeNS, Deployment: *f.kubeDeploy, Max: *f.max, Logger: log})
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("--scaler %s: %w", *f.kind, err)}
	}
	return s, nil
}

// devScaler is wsgate dev's driver maker for the cluster (nil: the
// default dev driver).
func (f scalerFlags) devScaler(keepalive time.Duration, log *slog.Logger) func(membership.Publisher, []byte, func(string) bool) (scaler.Scaler, error) {
	if *f.kind != scaler.NameProcess {
		return nil
	}
	return func(bus membership.Publisher, secret []byte, joined func(string) bool) (scaler.Scaler, error) {
		return scaler.NewProcess(scaler.ProcessConfig{Announce: bus, ClusterSecret: secret, Joined: joined,
			IDPrefix: "node", Args: []string{"--keepalive", keepalive.String()}, Max: *f.max, Logger: log})
	}
}
