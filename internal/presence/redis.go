// Package presence keeps wsgate's shared state in Redis: the node registry
// (which backends are alive, with a TTL their heartbeats refresh) and user
// presence (which sessions of which user are on which gateway and backend).
//
// Keys, all under a configurable prefix P:
//
//	P:nodes            ZSET  node id -> expiry (unix ms)
//	P:node-info        HASH  node id -> JSON membership.Node
//	P:left             ZSET  node id -> tombstone expiry (unix ms): deregistered lately
//	P:gateways         ZSET  gateway id -> expiry (unix ms)
//	P:user:{user}      HASH  "{gateway}/{session}" -> node id
//	P:gw:{gateway}     SET   "{user}\x00{gateway}/{session}", for cleanup when the gateway dies
//	P:counts:{gateway} HASH  node id -> clients of that gateway on that node (expires with the gateway)
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsgate/wsgate/internal/membership"
)

// Redis is the Redis-backed registry and presence store. Safe for
// concurrent use; every method is one round trip (a pipeline or script).
type Redis struct {
	// EncodeNode and DecodeNode, when set, write and read the node
	// registry's entries (signed ones, membership.Signer.EncodeNode and
	// Verifier.DecodeNode); nil: plain JSON. Set before use.
	EncodeNode func(membership.Node) []byte
	DecodeNode func([]byte) (membership.Node, error)

	rdb       *redis.Client
	prefix    string
	healthy   atomic.Bool
	stop      chan struct{}
	closeOnce sync.Once
}

// Dial connects to url (redis://[:pass@]host:port/db) and pings it, so a
// bad address fails at start with a clear error.
func Dial(ctx context.Context, url, prefix string) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		// err may quote the URL, password included: name it redacted.
		return nil, fmt.Errorf("--redis %s: not a redis://[user:password@]host:port/db URL", redact(url))
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 3*time.Second, 3*time.Second, 3*time.Second
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s unreachable: %w", opt.Addr, err)
	}
	if prefix == "" {
		prefix = "wsgate"
	}
	r := &Redis{rdb: rdb, prefix: prefix, stop: make(chan struct{})}
	r.healthy.Store(true)
	go r.watch()
	return r, nil
}

// watch pings every second so Healthy is current without a round trip.
func (r *Redis) watch() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			r.healthy.Store(r.rdb.Ping(ctx).Err() == nil)
			cancel()
		}
	}
}

// Healthy reports whether the last ping (at most a second ago) succeeded.
func (r *Redis) Healthy() bool { return r.healthy.Load() }

// ErrUnavailable is returned by the lookups (Where, Online, Gateways)
// while the last ping failed: they answer at once instead of waiting out
// the client's dial retries on every call (pushes, the console and the
// admin API would each stall for them).
var ErrUnavailable = errors.New("presence: redis unavailable")

func (r *Redis) available() error {
	if !r.Healthy() {
		return ErrUnavailable
	}
	return nil
}

// Close stops the pinger and closes the connection pool. Only the first
// call does anything.
func (r *Redis) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.stop)
		err = r.rdb.Close()
	})
	return err
}

// redact hides the password of a URL; an unparsable one is not shown.
func redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Ping reports whether Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

func (r *Redis) key(parts ...string) string { return r.prefix + ":" + strings.Join(parts, ":") }

// Expiry times are Redis's own clock (TIME inside the scripts), never a
// process's: a gateway or backend whose clock is off must not expire the
// others' entries. Every script runs atomically.
const luaNow = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) `

// registerScript: KEYS nodes, node-info, left; ARGV id, ttl ms, info JSON.
// A registration ends a previous life's tombstone.
var registerScript = redis.NewScript(luaNow + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1`)

// deregisterScript: KEYS nodes, node-info, left; ARGV id, tombstone ms.
var deregisterScript = redis.NewScript(luaNow + `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
return 1`)

// departedScript: KEYS left. Forgets old tombstones, returns the others.
var departedScript = redis.NewScript(luaNow + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`)

// Tombstone is how long a deregistered (gracefully left) node is
// remembered as gone in the registry, whatever gateways still see of it.
const Tombstone = time.Minute

// nodesScript: KEYS nodes, node-info. Forgets expired nodes and returns
// the live ones' ids and infos, alternating.
var nodesScript = redis.NewScript(luaNow + `
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
  redis.call('HDEL', KEYS[2], unpack(dead))
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  local info = redis.call('HGET', KEYS[2], id)
  if info then out[#out + 1] = id out[#out + 1] = info end
end
return out`)

// aliveScript: KEYS gateways, counts:{gw}; ARGV gw, ttl ms, then node id
// and count pairs. Returns 1 when gw was not listed (first beat, reaped,
// or Redis lost its data): its presence must be rewritten.
var aliveScript = redis.NewScript(luaNow + `
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return added`)

// liveScript: KEYS gateways. Returns the gateways whose TTL has not passed.
var liveScript = redis.NewScript(luaNow + `
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')`)

// reapScript: KEYS gateways; ARGV prefix. Removes every gateway whose TTL
// has passed with all its presence, checking and deleting in one step so
// that a gateway refreshing meanwhile is never wiped. Returns their ids.
var reapScript = redis.NewScript(luaNow + `
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
for _, gw in ipairs(dead) do
  local set = ARGV[1] .. ':gw:' .. gw
  for _, m in ipairs(redis.call('SMEMBERS', set)) do
    local sep = string.find(m, '\0', 1, true)
    if sep then redis.call('HDEL', ARGV[1] .. ':user:' .. string.sub(m, 1, sep - 1), string.sub(m, sep + 1)) end
  end
  redis.call('DEL', set, ARGV[1] .. ':counts:' .. gw)
  redis.call('ZREM', KEYS[1], gw)
end
return dead`)

// RegisterNode adds or refreshes n with a TTL; a node that stops
// refreshing drops out of Nodes once the TTL passes.
func (r *Redis) RegisterNode(ctx context.Context, n membership.Node, ttl time.Duration) error {
	info, _ := json.Marshal(n)
	if r.EncodeNode != nil {
		info = r.EncodeNode(n)
	}
	return registerScript.Run(ctx, r.rdb, []string{r.key("nodes"), r.key("node-info"), r.key("left")},
		n.ID, ttl.Milliseconds(), info).Err()
}

// Departed returns the nodes that deregistered (left gracefully) within
// the last Tombstone: a gateway must not keep them on its ring because
// their links are still up while they drain.
func (r *Redis) Departed(ctx context.Context) (map[string]bool, error) {
	return r.idSet(ctx, departedScript, "left")
}

// idSet runs a script on the key P:name that returns ids, as a set.
func (r *Redis) idSet(ctx context.Context, script *redis.Script, name string) (map[string]bool, error) {
	ids, err := script.Run(ctx, r.rdb, []string{r.key(name)}).StringSlice()
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set, nil
}

// DeregisterNode removes a node at once (graceful leave) and leaves a
// tombstone for Departed.
func (r *Redis) DeregisterNode(ctx context.Context, id string) error {
	return deregisterScript.Run(ctx, r.rdb, []string{r.key("nodes"), r.key("node-info"), r.key("left")},
		id, Tombstone.Milliseconds()).Err()
}

// Nodes returns the live nodes sorted by ID, and forgets expired ones.
func (r *Redis) Nodes(ctx context.Context) ([]membership.Node, error) {
	pairs, err := nodesScript.Run(ctx, r.rdb, []string{r.key("nodes"), r.key("node-info")}).StringSlice()
	if err != nil {
		return nil, err
	}
	out := make([]membership.Node, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		var n membership.Node
		if r.DecodeNode != nil {
			var err error
			if n, err = r.DecodeNode([]byte(pairs[i+1])); err != nil || n.ID != pairs[i] {
				continue // dropped and counted by the decoder
			}
		} else if json.Unmarshal([]byte(pairs[i+1]), &n) != nil || n.ID != pairs[i] || n.Validate() != nil {
			continue
		}
		out = append(out, n)
	}
	sortNodes(out)
	return out, nil
}

// Change is one presence update: a session of User on Gateway (session id
// Session) routed to Node was opened (Add) or closed.
type Change struct {
	Add     bool
	User    string
	Session string
	Node    string
}

// Apply writes presence changes of gateway gw in one pipeline.
func (r *Redis) Apply(ctx context.Context, gw string, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	gwSet := r.key("gw", gw)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range changes {
			field := gw + "/" + c.Session
			if c.Add {
				p.HSet(ctx, r.key("user", c.User), field, c.Node)
				p.SAdd(ctx, gwSet, c.User+"\x00"+field)
			} else {
				p.HDel(ctx, r.key("user", c.User), field)
				p.SRem(ctx, gwSet, c.User+"\x00"+field)
			}
		}
		return nil
	})
	return err
}

// Location is where one session of a user is.
type Location struct {
	Gateway string `json:"gateway"`
	Session string `json:"session"`
	Node    string `json:"node"`
}

// Where returns every session of user, on live gateways only.
func (r *Redis) Where(ctx context.Context, user string) ([]Location, error) {
	if err := r.available(); err != nil {
		return nil, err
	}
	all, err := r.rdb.HGetAll(ctx, r.key("user", user)).Result()
	if err != nil {
		return nil, err
	}
	live, err := r.liveGateways(ctx)
	if err != nil {
		return nil, err
	}
	out := []Location{}
	for field, node := range all {
		gw, sess, _ := strings.Cut(field, "/")
		if live[gw] {
			out = append(out, Location{Gateway: gw, Session: sess, Node: node})
		}
	}
	return out, nil
}

// GatewayAlive refreshes gateway gw's TTL and its per-node client counts.
// revived reports that gw was not listed before (its first beat, or its
// entry was reaped or lost in a Redis restart): the caller must rewrite
// its presence.
func (r *Redis) GatewayAlive(ctx context.Context, gw string, ttl time.Duration, counts map[string]int) (revived bool, err error) {
	args := make([]any, 0, 2+2*len(counts))
	args = append(args, gw, ttl.Milliseconds())
	for n, c := range counts {
		args = append(args, n, c)
	}
	added, err := aliveScript.Run(ctx, r.rdb, []string{r.key("gateways"), r.key("counts", gw)}, args...).Int()
	return added == 1, err
}

// ResetGateway deletes every presence entry of gateway gw (before a full
// resync, or after it died).
func (r *Redis) ResetGateway(ctx context.Context, gw string) error {
	gwSet := r.key("gw", gw)
	members, err := r.rdb.SMembers(ctx, gwSet).Result()
	if err != nil {
		return err
	}
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			user, field, _ := strings.Cut(m, "\x00")
			p.HDel(ctx, r.key("user", user), field)
		}
		p.Del(ctx, gwSet, r.key("counts", gw))
		return nil
	})
	return err
}

// ReapGateways removes the presence of gateways whose TTL has passed and
// returns their ids. Any gateway may call it; it is idempotent and atomic.
func (r *Redis) ReapGateways(ctx context.Context) ([]string, error) {
	return reapScript.Run(ctx, r.rdb, []string{r.key("gateways")}, r.prefix).StringSlice()
}

// Online returns the clients per node over all live gateways.
func (r *Redis) Online(ctx context.Context) (map[string]int, error) {
	gws, err := r.Gateways(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, counts := range gws {
		for n, c := range counts {
			out[n] += c
		}
	}
	return out, nil
}

// Gateways returns every live gateway with its clients per node (as of
// its last beat).
func (r *Redis) Gateways(ctx context.Context) (map[string]map[string]int, error) {
	if err := r.available(); err != nil {
		return nil, err
	}
	live, err := r.liveGateways(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]int, len(live))
	for gw := range live {
		counts, err := r.rdb.HGetAll(ctx, r.key("counts", gw)).Result()
		if err != nil {
			return nil, err
		}
		m := make(map[string]int, len(counts))
		for n, c := range counts {
			m[n], _ = strconv.Atoi(c)
		}
		out[gw] = m
	}
	return out, nil
}

func (r *Redis) liveGateways(ctx context.Context) (map[string]bool, error) {
	return r.idSet(ctx, liveScript, "gateways")
}
