package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/presence"
	"github.com/wsgate/wsgate/internal/testutil"
)

// resetCounter is the real Redis store with its full rewrites counted.
type resetCounter struct {
	Presence
	resets atomic.Int32
}

func (r *resetCounter) ResetGateway(ctx context.Context, gw string) error {
	r.resets.Add(1)
	return r.Presence.ResetGateway(ctx, gw)
}

// TestPresenceWriteRetried: a presence write that times out (Redis frozen
// behind a proxy, as a Redis too busy to answer) goes back to the head of
// the queue and, once Redis answers, lands in order; the gateway's
// presence is not wiped and rewritten (a resync per timeout made a slow
// Redis slower at 700,000 clients). A queue grown past the sessions a
// resync would write is dropped for one resync.
func TestPresenceWriteRetried(t *testing.T) {
	ctx := context.Background()
	px := testutil.NewProxy(t, "127.0.0.1:6379")
	prefix := fmt.Sprintf("presence-retry-%d", time.Now().UnixNano())
	rs, err := presence.Dial(ctx, "redis://"+px.Addr()+"/0", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	store := &resetCounter{Presence: rs}
	l := testLoop(t, func(c *Config) { c.ID = "gw-retry"; c.PresenceFlush = 10 * time.Millisecond; c.MaxConns = 100 })
	w := &presenceWriter{g: l.g, store: store}
	add := func(user, session string, on bool) {
		w.mu.Lock()
		w.queue = append(w.queue, presence.Change{Add: on, User: user, Session: session, Node: "a"})
		w.mu.Unlock()
	}
	where := func(user string) []presence.Location {
		locs, err := rs.Where(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return locs
	}
	drain := func() {
		testutil.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
			w.flush(ctx)
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.queue) > 0 || !w.wait.IsZero() {
				return fmt.Errorf("%d changes queued, next try at %v", len(w.queue), w.wait)
			}
			return nil
		})
	}
	if _, err := rs.GatewayAlive(ctx, "gw-retry", time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	add("u1", "0.1", true)
	add("u2", "0.2", true)
	drain()

	px.Freeze(testutil.FromTarget, true)
	add("u1", "0.1", false)
	add("u3", "0.3", true)
	w.flush(ctx) // times out after 3 s
	w.mu.Lock()
	queued := len(w.queue)
	w.mu.Unlock()
	if queued != 2 || w.wait.IsZero() || w.dirty.Load() {
		t.Fatalf("after a timeout: %d queued (want 2), backoff %v, dirty %v", queued, w.wait, w.dirty.Load())
	}
	add("u3", "0.3", false) // later changes queue behind the failed ones
	add("u3", "0.4", true)
	px.Freeze(testutil.FromTarget, false)
	drain()
	if got := where("u1"); len(got) != 0 {
		t.Errorf("u1 still present: %v", got)
	}
	if got := where("u2"); len(got) != 1 {
		t.Errorf("u2: %v", got)
	}
	if got := where("u3"); len(got) != 1 || got[0].Session != "0.4" {
		t.Errorf("u3: %v, want only session 0.4", got)
	}
	if n := store.resets.Load(); n != 0 {
		t.Errorf("%d resyncs for a write that timed out, want 0", n)
	}

	// More failed changes than a resync would write: dropped, resync owed.
	px.SetDown(true)
	for i := range 2*100 + 1024 + 1 {
		add("u9", fmt.Sprint("0.", i), true)
	}
	w.wait = time.Time{}
	w.flush(ctx)
	if !w.dirty.Load() || len(w.queue) != 0 {
		t.Fatalf("overgrown queue: dirty %v, %d queued", w.dirty.Load(), len(w.queue))
	}
}

// TestTCPKeepAliveFollowsPings: client sockets' keepalive is 60 s, or twice
// the ping interval when that is longer, so pings always come first.
func TestTCPKeepAliveFollowsPings(t *testing.T) {
	for _, tc := range []struct{ ping, want time.Duration }{
		{-1, time.Minute}, // pings off
		{30 * time.Second, time.Minute},
		{2 * time.Minute, 4 * time.Minute},
		{5 * time.Minute, 10 * time.Minute},
	} {
		if got := tcpKeepAlive(&Config{PingInterval: tc.ping}); got != tc.want {
			t.Errorf("ping %v: keepalive %v, want %v", tc.ping, got, tc.want)
		}
	}
}
