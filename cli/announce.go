package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/membership"
)

// runAnnounce is `wsgate announce`: a sidecar that makes a plain WebSocket
// server (one that cannot announce itself) a cluster member. It joins
// while the server answers its health check (a WebSocket upgrade), sends
// heartbeats, and leaves when the check fails --health-failures times in a
// row or on SIGTERM; it joins again when the server answers again.
func runAnnounce(ctx context.Context, args []string) error {
	fs := newFlagSet("wsgate announce")
	id := fs.String("id", "", "node id of the upstream, unique in the cluster (required)")
	up := fs.String("upstream", "", "the upstream's URL as gateways dial it: ws://host:port[/path] (required)")
	weight := fs.Int("weight", 1, "share of keys relative to other nodes (1..100)")
	hb := addHeartbeatFlags(fs, "registry TTL: an announcer silent this long (crashed) drops the upstream")
	every := fs.Duration("health-interval", 2*time.Second, "how often the upstream is checked with a WebSocket upgrade")
	timeout := fs.Duration("health-timeout", 2*time.Second, "how long one check may take")
	failures := fs.Int("health-failures", 2, "failed checks in a row that make the upstream leave")
	clusterFile := fs.String("cluster-secret-file", "", clusterSecretUsage)
	cf := addClusterFlags(fs)
	log, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	clustered, err := cf.enabled()
	switch {
	case err != nil:
		return err
	case !clustered:
		return usageError{errors.New("wsgate announce needs --amqp and --redis (the cluster the upstream joins)")}
	case *id == "" || *up == "":
		return usageError{errors.New("--id and --upstream are required")}
	case hb.check() != nil:
		return hb.check()
	case *every <= 0 || *timeout <= 0 || *failures < 1:
		return usageError{errors.New("--health-interval and --health-timeout must be positive and --health-failures at least 1")}
	}
	self := membership.Node{ID: *id, Addr: *up, Weight: *weight}
	if err := self.Validate(); err == nil && !self.Plain() {
		return usageError{fmt.Errorf("--upstream %q: want a ws:// URL", *up)}
	} else if err != nil {
		return usageError{fmt.Errorf("--upstream: %w", err)}
	}
	cs, err := secret(*clusterFile, "cluster-secret-file", "WSGATE_CLUSTER_SECRET")
	if err != nil {
		return err
	}
	cf.warnShared(log)
	d, err := cf.dial(ctx, "wsgate-announce-"+*id, log)
	if err != nil {
		return err
	}
	defer d.close()
	ann := hb.announcer(d, *cf.exchange, self, cs, log)
	log.Info("announcing a plain upstream", "id", self.ID, "upstream", self.Addr)
	joined, failed := false, 0
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		err := gateway.ProbeUpstream(cctx, self.Addr, []byte(cs), self.ID)
		cancel()
		switch {
		case ctx.Err() != nil:
		case err == nil && !joined:
			if jerr := ann.Join(ctx); jerr != nil {
				log.Warn("join failed; trying again at the next check", "err", jerr)
			} else {
				joined = true
				log.Info("upstream healthy: joined", "id", self.ID)
			}
			failed = 0
		case err == nil:
			failed = 0
		default:
			failed++
			log.Warn("upstream health check failed", "upstream", self.Addr, "failures", failed, "err", err)
			if joined && failed >= *failures {
				leave(context.Background(), ann, log)
				joined = false
			}
		}
		select {
		case <-ctx.Done():
			if joined {
				leave(context.Background(), ann, log)
			}
			return nil
		case <-tick.C:
		}
	}
}

// heartbeatFlags are --heartbeat and --node-ttl, the same on `wsgate
// backend` and `wsgate announce`.
type heartbeatFlags struct{ every, ttl *time.Duration }

func addHeartbeatFlags(fs *flagSet, ttlUsage string) heartbeatFlags {
	return heartbeatFlags{
		every: fs.Duration("heartbeat", 2*time.Second, "heartbeat interval (registry refresh and event)"),
		ttl:   fs.Duration("node-ttl", 6*time.Second, ttlUsage),
	}
}

// check: one late heartbeat must not drop a live node.
func (f heartbeatFlags) check() error {
	if *f.every <= 0 || *f.ttl < 2**f.every {
		return usageError{fmt.Errorf("--node-ttl %v must be at least twice --heartbeat %v", *f.ttl, *f.every)}
	}
	return nil
}

// announcer makes self a member of the cluster d reaches, its events and
// registry entry signed with the cluster secret when there is one.
func (f heartbeatFlags) announcer(d *deps, exchange string, self membership.Node, secret string, log *slog.Logger) *membership.Announcer {
	ann := &membership.Announcer{Registry: d.rdb, Broker: d.mq, Exchange: exchange, Node: self,
		Interval: *f.every, TTL: *f.ttl, Log: log}
	if secret != "" {
		ann.Sign = membership.NewSigner([]byte(secret))
		d.rdb.EncodeNode = ann.Sign.EncodeNode
	}
	return ann
}

// leave announces that the node leaves (gateways move its clients),
// waiting at most 5 s (and no longer than ctx).
func leave(ctx context.Context, ann *membership.Announcer, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := ann.Leave(ctx); err != nil {
		log.Warn("leave not fully announced; gateways take the node off when its registry entry expires or its links close", "err", err)
		return
	}
	log.Info("left the cluster", "id", ann.Node.ID)
}
