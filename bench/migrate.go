package bench

import (
	"bytes"
	"context"
	"math"
	"sort"
	"strconv"
	"strings"
)

// The rebalance scenario against a gateway with --rebalance migrate
// (Config.Migrate): the connections are demo counter sessions, each sends
// a timestamped message at Config.Rate, and every answer
//
//	{"type":3,"content":"<count>:<timestamp>...","serverUserCount":N,"serverIp":"<node>",...}
//
// must carry the previous count plus one, from whichever node holds the
// session now. A moved client is seen by the node in its answers; the
// pause it saw comes from the gateway's migration_pause_seconds histogram.

// counterPath adds counter=1 to each request path.
func counterPath(path func(string) string) func(string) string {
	if path == nil {
		path = DefaultPath
	}
	return func(key string) string {
		p := path(key)
		if strings.Contains(p, "?") {
			return p + "&counter=1"
		}
		return p + "?counter=1"
	}
}

var contentField = []byte(`"content":"`)

// onCount checks a counter answer on c's loop: its count, its round trip,
// and the node that sent it.
func (r *runner) onCount(c *Conn, p []byte) {
	i := bytes.Index(p, contentField)
	if i < 0 {
		return // a push or another event: not an answer
	}
	body := p[i+len(contentField):]
	colon := bytes.IndexByte(body, ':')
	if colon < 0 {
		return
	}
	n, err := strconv.ParseInt(string(body[:colon]), 10, 64)
	if err != nil {
		return
	}
	if n != r.counts[c.ID]+1 {
		r.badCounts.Add(1)
	}
	r.counts[c.ID] = n
	if t, ok := stamp(body[colon+1:]); ok && r.recording.Load() {
		recordNanos(r.lat[c.Loop()], r.e.Now()-t)
		r.received.Add(1)
	}
	if ip := serverOf(p); ip != nil {
		if cur := r.owner[c.ID].Load(); cur == nil || *cur != string(ip) {
			s := string(ip)
			r.owner[c.ID].Store(&s)
		}
	}
}

// serverOf is the serverIp field of a demo event, nil if none.
func serverOf(p []byte) []byte {
	i := bytes.Index(p, serverIPField)
	if i < 0 {
		return nil
	}
	p = p[i+len(serverIPField):]
	if j := bytes.IndexByte(p, '"'); j >= 0 {
		return p[:j]
	}
	return nil
}

// startCounting turns the welcomed connections into counter senders at
// Config.Rate messages/s each.
func (r *runner) startCounting() {
	r.counts = make([]int64, r.cfg.Conns)
	r.mode.Store(modeCount)
	r.sending.Store(true)
	r.startRate(r.prepareSend())
}

// migrationStep ends a rebalance step: it waits until the gateway has no
// migration under way and fills in what the step's migrations did.
func (r *runner) migrationStep(st *RebalanceStep, m0 migrationSample) error {
	var m1 migrationSample
	prev := -1.0
	err := r.waitFor(st.Change+": migrations settle", func() bool {
		var err error
		if m1, err = r.sampleMigrations(r.ctx); err != nil || len(m1.buckets) == 0 {
			return false
		}
		n := m1.buckets[len(m1.buckets)-1].count
		done := n == prev
		prev = n
		return done
	})
	r.recording.Store(false)
	r.e.ExecAll(func(int) {}) // a barrier: no loop is inside a recordNanos now
	st.Migrated = int(m1.byResult["ok"] - m0.byResult["ok"])
	st.MigrateLost = int(m1.byResult["lost"] - m0.byResult["lost"])
	st.PauseMs = pauseBetween(m0, m1)
	st.BadCounts = r.badCounts.Load()
	st.RoundTrip = summarize(r.lat...)
	return err
}

// migrationSample is the gateway's migration metrics at one moment.
type migrationSample struct {
	buckets  []histBucket // migration_pause_seconds, cumulative, by le
	sum      float64
	byResult map[string]float64 // migrations_total
}

type histBucket struct {
	le    float64
	count float64
}

// sampleMigrations reads the gateway's migration metrics.
func (r *runner) sampleMigrations(ctx context.Context) (migrationSample, error) {
	b, err := httpGet(ctx, "http://"+r.cfg.Admin+"/metrics")
	if err != nil {
		return migrationSample{}, err
	}
	return parseMigrations(b), nil
}

func parseMigrations(b []byte) migrationSample {
	const (
		bucket = "wsgate_gateway_migration_pause_seconds_bucket{le=\""
		sum    = "wsgate_gateway_migration_pause_seconds_sum"
		total  = "wsgate_gateway_migrations_total{result=\""
	)
	s := migrationSample{byResult: map[string]float64{}}
	eachSample(b, func(series string, v float64) {
		switch {
		case strings.HasPrefix(series, bucket):
			le, _, _ := strings.Cut(series[len(bucket):], `"`)
			if f, err := strconv.ParseFloat(le, 64); err == nil { // "+Inf" parses as +Inf
				s.buckets = append(s.buckets, histBucket{f, v})
			}
		case series == sum:
			s.sum = v
		case strings.HasPrefix(series, total):
			result, _, _ := strings.Cut(series[len(total):], `"`)
			s.byResult[result] = v
		}
	})
	sort.Slice(s.buckets, func(i, j int) bool { return s.buckets[i].le < s.buckets[j].le })
	return s
}

// pauseBetween summarizes the pauses recorded between two samples (ms):
// quantiles interpolated within buckets, max the top of the highest bucket
// hit. Nil when none.
func pauseBetween(a, b migrationSample) *Latency {
	if len(b.buckets) == 0 || len(a.buckets) != len(b.buckets) {
		return nil
	}
	diff := make([]histBucket, len(b.buckets))
	for i := range diff {
		diff[i] = histBucket{b.buckets[i].le, b.buckets[i].count - a.buckets[i].count}
	}
	total := diff[len(diff)-1].count
	if total <= 0 {
		return nil
	}
	q := func(p float64) float64 {
		want := p * total
		lo, prev := 0.0, 0.0
		for _, d := range diff {
			if d.count >= want {
				hi := d.le
				if math.IsInf(hi, 1) {
					return lo * 1000
				}
				if d.count == prev {
					return hi * 1000
				}
				return (lo + (hi-lo)*(want-prev)/(d.count-prev)) * 1000
			}
			lo, prev = d.le, d.count
		}
		return lo * 1000
	}
	var max float64
	for i, d := range diff {
		if d.count >= total {
			max = d.le * 1000
			if math.IsInf(d.le, 1) && i > 0 {
				max = diff[i-1].le * 1000
			}
			break
		}
	}
	return &Latency{Count: int64(total), Mean: (b.sum - a.sum) / total * 1000,
		P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: max}
}
