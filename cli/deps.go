package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/wsgate/wsgate/internal/presence"
	"github.com/wsgate/wsgate/internal/rabbit"
)

// clusterFlags are the flags that join a process to a real cluster
// (RabbitMQ membership, Redis registry and presence).
type clusterFlags struct {
	amqp, redis, exchange, prefix *string
}

func addClusterFlags(fs *flagSet) clusterFlags {
	return clusterFlags{
		amqp:     fs.String("amqp", "", "RabbitMQ URL for membership events and broadcasts, e.g. amqp://guest:guest@127.0.0.1:5672/"),
		redis:    fs.String("redis", "", "Redis URL for the node registry and presence, e.g. redis://127.0.0.1:6379/0"),
		exchange: fs.String("exchange", defaultClusterName, "RabbitMQ exchange name (membership; broadcasts use <name>.broadcast); one per cluster"),
		prefix:   fs.String("redis-prefix", defaultClusterName, "prefix of every Redis key; one per cluster"),
	}
}

// enabled reports whether cluster mode was asked for, and checks that both
// services were given.
func (c clusterFlags) enabled() (bool, error) {
	switch {
	case *c.amqp == "" && *c.redis == "":
		return false, nil
	case *c.amqp == "" || *c.redis == "":
		return false, usageError{errors.New("--amqp and --redis go together (cluster mode needs both)")}
	}
	if _, err := redis.ParseURL(*c.redis); err != nil {
		return false, usageError{fmt.Errorf("--redis %q: %w (want redis://[user:password@]host:port/db or rediss://)", *c.redis, err)}
	}
	if _, err := amqp.ParseURI(*c.amqp); err != nil {
		return false, usageError{fmt.Errorf("--amqp %q: %w (want amqp://user:password@host:port/vhost or amqps://)", *c.amqp, err)}
	}
	return true, nil
}

// warnShared warns when cluster mode runs on the default exchange and
// Redis prefix: two clusters sharing a RabbitMQ and a Redis that way would
// silently merge into one.
func (c clusterFlags) warnShared(log *slog.Logger) {
	if *c.exchange == defaultClusterName && *c.prefix == defaultClusterName {
		log.Warn("using the default --exchange and --redis-prefix (" + defaultClusterName + "): clusters that share this RabbitMQ and Redis would merge; give each cluster its own name")
	}
}

// defaultClusterName is the default --exchange and --redis-prefix.
const defaultClusterName = "wsgate"

// deps are the connections of cluster mode.
type deps struct {
	mq  *rabbit.Client
	rdb *presence.Redis
}

// dial connects to Redis and RabbitMQ; an unreachable one is named in the error.
func (c clusterFlags) dial(ctx context.Context, name string, log *slog.Logger) (*deps, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rdb, err := presence.Dial(ctx, *c.redis, *c.prefix)
	if err != nil {
		return nil, err
	}
	mq, err := rabbit.Dial(ctx, rabbit.Config{URL: *c.amqp, Name: name, Log: log})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &deps{mq: mq, rdb: rdb}, nil
}

func (d *deps) health() map[string]func() bool {
	return map[string]func() bool{"redis": d.rdb.Healthy, "rabbitmq": d.mq.Healthy}
}

func (d *deps) close() {
	_ = d.mq.Close()
	_ = d.rdb.Close()
}

// instanceID is the default id of a process: the host name and the port it
// listens on, unique per instance on a host and stable across restarts.
func instanceID(listen string) string {
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(listen)
	if port == "" || port == "0" {
		return fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return host + "-" + port
}

// advertised is the address gateways dial for a backend listening on
// addr: addr itself, or, when addr is a wildcard address, this host's first
// non-loopback IPv4 address with addr's port (what a gateway in another
// container or pod reaches; a host name often does not resolve there), or
// the host name when there is no such address.
func advertised(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		if ip := firstRoutable(ifaddrs); ip != nil {
			return net.JoinHostPort(ip.String(), port)
		}
	}
	h, _ := os.Hostname()
	return net.JoinHostPort(strings.ToLower(h), port)
}

// firstRoutable is the first IPv4 address in addrs that is neither
// loopback nor link-local.
func firstRoutable(addrs []net.Addr) net.IP {
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := n.IP.To4(); ip4 != nil && !ip4.IsLoopback() && !ip4.IsLinkLocalUnicast() {
			return ip4
		}
	}
	return nil
}
