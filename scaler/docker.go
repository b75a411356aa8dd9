package scaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/wsgate/wsgate/gateway"
)

// Labels the docker driver puts on its containers.
const (
	LabelCluster = "wsgate.cluster" // the cluster's name: the driver lists and removes only these
	LabelNode    = "wsgate.node"    // the node id (the container's name)
)

// Docker driver defaults.
const (
	DefaultImage   = "wsgate:latest"
	DefaultNetwork = "bridge"
	// DefaultLinkPort is the link port inside a container (not published:
	// gateways reach the container on its network).
	DefaultLinkPort = 9000
)

// DockerConfig configures the docker driver.
type DockerConfig struct {
	// Host is the Engine API address (unix:///var/run/docker.sock,
	// tcp://host:2375); default DOCKER_HOST, else the local socket. The API
	// version is negotiated with the engine.
	Host string
	// Image is the backend image (wsgate's, entrypoint the binary);
	// default DefaultImage. It must be present on the engine (not pulled).
	Image string
	// Network is the Docker network the containers join; default
	// DefaultNetwork. On a bridge or user network a backend listens on
	// DefaultLinkPort and advertises its own address on that network (its
	// only non-loopback IPv4); on "host" each gets a free 127.0.0.1 port,
	// given as --listen and --advertise, and reaches Redis and RabbitMQ on
	// the host's loopback.
	Network string
	// Cluster is the value of the wsgate.cluster label; required (the CLI
	// uses --exchange).
	Cluster string
	// AMQP, Redis, Exchange, RedisPrefix and ClusterSecret reach each
	// container in its environment (WSGATE_*), not its command line.
	AMQP, Redis, Exchange, RedisPrefix string
	ClusterSecret                      []byte
	// Args are more `wsgate backend` flags.
	Args []string
	// Joined reports whether node id has joined (OnRing on the gateway);
	// nil: a running container counts as joined.
	Joined func(id string) bool
	// Max is the most running containers of the cluster; default DefaultMax.
	Max int
	// JoinTimeout bounds AddNode; default DefaultJoinTimeout.
	JoinTimeout time.Duration
	// DrainTimeout is each backend's --drain-timeout; default 30s.
	DrainTimeout time.Duration
	// StopTimeout is the engine's wait after SIGTERM before SIGKILL;
	// default DrainTimeout + 10s.
	StopTimeout time.Duration
	Logger      *slog.Logger // default slog.Default()
}

// Docker creates, starts, stops and removes backend containers through
// the Docker Engine API: the replaced system's dashboard feature. Node ids
// are container names, <cluster>-backend-<random>. Containers outlive the
// driver (and the gateway): a restarted gateway finds them by label.
type Docker struct {
	cfg DockerConfig
	api *client.Client

	mu       sync.Mutex
	starting int
}

var dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// NewDocker checks cfg and connects to the engine (lazily: the first call
// negotiates the API version).
func NewDocker(cfg DockerConfig) (*Docker, error) {
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if !dockerName.MatchString(cfg.Cluster) {
		return nil, fmt.Errorf("scaler: docker driver: cluster name %q: want letters, digits, _ . - (the --exchange)", cfg.Cluster)
	}
	if cfg.AMQP == "" || cfg.Redis == "" {
		return nil, errors.New("scaler: the docker driver needs cluster membership (--amqp and --redis): containers announce themselves")
	}
	defaultLimits(&cfg.Max, &cfg.JoinTimeout, &cfg.DrainTimeout, &cfg.StopTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	api, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("scaler: docker: %w", err)
	}
	return &Docker{cfg: cfg, api: api}, nil
}

// Name is "docker".
func (d *Docker) Name() string { return NameDocker }

// Max is the most running containers of the cluster.
func (d *Docker) Max() int { return d.cfg.Max }

// list returns the cluster's containers (running only unless all), or
// those of node id when id is given.
func (d *Docker) list(ctx context.Context, all bool, id string) ([]container.Summary, error) {
	f := client.Filters{}.Add("label", LabelCluster+"="+d.cfg.Cluster)
	if id != "" {
		f = f.Add("label", LabelNode+"="+id)
	}
	res, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: all, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("scaler: docker: list containers: %w", err)
	}
	return res.Items, nil
}

// Nodes lists the ids of the cluster's running containers, sorted.
func (d *Docker) Nodes(ctx context.Context) ([]string, error) {
	cs, err := d.list(ctx, false, "")
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.Labels[LabelNode])
	}
	slices.Sort(ids)
	return ids, nil
}

// AddNode creates and starts a backend container and returns its id once
// it has joined (see DockerConfig.Joined); a container that fails to is
// removed.
func (d *Docker) AddNode() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.JoinTimeout+10*time.Second)
	defer cancel()
	d.mu.Lock()
	running, err := d.list(ctx, false, "")
	if err != nil {
		d.mu.Unlock()
		return "", err
	}
	if n := len(running) + d.starting; n >= d.cfg.Max {
		d.mu.Unlock()
		return "", maxError(NameDocker, n, d.cfg.Max)
	}
	d.starting++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.starting--
		d.mu.Unlock()
	}()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := d.cfg.Cluster + "-backend-" + hex.EncodeToString(rnd[:])
	cid, err := d.create(ctx, id)
	if err != nil {
		return "", err
	}
	if err := d.start(ctx, cid, id); err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = d.api.ContainerRemove(rctx, cid, client.ContainerRemoveOptions{Force: true})
		rcancel()
		return "", err
	}
	d.cfg.Logger.Info("backend container joined", "node", id, "container", shortID(cid), "image", d.cfg.Image, "network", d.cfg.Network)
	return id, nil
}

// create creates container id: the backend's flags on its command line,
// the cluster's settings (and secret) in its environment.
func (d *Docker) create(ctx context.Context, id string) (string, error) {
	listen, advertise := "0.0.0.0:"+strconv.Itoa(DefaultLinkPort), ""
	if d.cfg.Network == "host" {
		ports, err := freePorts(1)
		if err != nil {
			return "", err
		}
		listen, advertise = ports[0], ports[0]
	}
	cmd := []string{"backend", "--id", id, "--listen", listen, "--admin", "-",
		"--drain-timeout", d.cfg.DrainTimeout.String()}
	if advertise != "" {
		cmd = append(cmd, "--advertise", advertise)
	}
	env := []string{"WSGATE_AMQP=" + d.cfg.AMQP, "WSGATE_REDIS=" + d.cfg.Redis}
	for k, v := range map[string]string{"WSGATE_EXCHANGE": d.cfg.Exchange, "WSGATE_REDIS_PREFIX": d.cfg.RedisPrefix,
		"WSGATE_CLUSTER_SECRET": string(d.cfg.ClusterSecret)} {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	slices.Sort(env)
	stop := int(d.cfg.StopTimeout / time.Second)
	res, err := d.api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: id,
		Config: &container.Config{
			Image:       d.cfg.Image,
			Cmd:         append(cmd, d.cfg.Args...),
			Env:         env,
			Labels:      map[string]string{LabelCluster: d.cfg.Cluster, LabelNode: id},
			StopTimeout: &stop,
		},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(d.cfg.Network)},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			d.cfg.Network: {}}},
	})
	if err != nil {
		return "", fmt.Errorf("scaler: docker: create %s from %s: %w", id, d.cfg.Image, err)
	}
	return res.ID, nil
}

// start starts container cid and waits until it runs and, with Joined,
// until node id has joined.
func (d *Docker) start(ctx context.Context, cid, id string) error {
	if _, err := d.api.ContainerStart(ctx, cid, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("scaler: docker: start %s: %w", id, err)
	}
	return pollUntil(ctx, d.cfg.JoinTimeout, 50*time.Millisecond, "backend container "+id+" joining", func() (bool, error) {
		in, err := d.api.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
		if err != nil {
			return false, fmt.Errorf("scaler: docker: inspect %s: %w", id, err)
		}
		if st := in.Container.State; st == nil || !st.Running {
			if st != nil && st.Status != container.StateCreated {
				return false, fmt.Errorf("scaler: docker: backend container %s is %s (exit code %d) before it joined: see docker logs %s",
					id, st.Status, st.ExitCode, id)
			}
			return false, nil
		}
		return d.cfg.Joined == nil || d.cfg.Joined(id), nil
	})
}

// RemoveNode stops container id (SIGTERM: the backend leaves and drains;
// SIGKILL after StopTimeout) and removes it; gateway.ErrUnknownNode if the
// cluster has no such container.
func (d *Docker) RemoveNode(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.StopTimeout+30*time.Second)
	defer cancel()
	cs, err := d.list(ctx, true, id)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		return gateway.ErrUnknownNode
	}
	stop := int(d.cfg.StopTimeout / time.Second)
	for _, c := range cs {
		if _, err := d.api.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &stop}); err != nil {
			return fmt.Errorf("scaler: docker: stop %s: %w", id, err)
		}
		if _, err := d.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{}); err != nil {
			return fmt.Errorf("scaler: docker: remove %s: %w", id, err)
		}
	}
	d.cfg.Logger.Info("backend container removed", "node", id)
	return nil
}

// Close releases the API client; the containers keep running.
func (d *Docker) Close(context.Context) error { return d.api.Close() }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
