package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/internal/testutil"
)

// openStream opens GET /api/console/stream with token (empty: none).
func openStream(t *testing.T, g *gateway.Gateway, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+g.AdminAddr()+"/api/console/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// readEvent reads the stream until an event named name and returns its data.
func readEvent(t *testing.T, sc *bufio.Scanner, name string) string {
	t.Helper()
	want := "event: " + name
	for sc.Scan() {
		if sc.Text() == want && sc.Scan() {
			return strings.TrimPrefix(sc.Text(), "data: ")
		}
	}
	t.Fatalf("stream ended before an event %q: %v", name, sc.Err())
	return ""
}

// TestConsoleStreamAttacks: the console's endpoints are behind the admin
// token, the number of open streams is bounded, and shutting the gateway
// down ends open streams instead of hanging on them.
func TestConsoleStreamAttacks(t *testing.T) {
	const token = "console-token-0123456789"
	c := startCluster(t, 1, func(cfg *gateway.Config) { cfg.AdminToken = token })
	g := c.Gateway()
	for _, path := range []string{"/api/console", "/api/console/stream"} {
		if code := adminReq(t, g, "GET", path, "", "", "", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", path, code)
		}
		if code := adminReq(t, g, "GET", path, "", "", "wrong-token-0123456789", ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", path, code)
		}
	}
	var open []*http.Response
	t.Cleanup(func() {
		for _, r := range open {
			r.Body.Close()
		}
	})
	for i := range 32 {
		r := openStream(t, g, token)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i, r.StatusCode)
		}
		open = append(open, r)
	}
	if r := openStream(t, g, token); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream 33: %d, want 503", r.StatusCode)
		r.Body.Close()
	}
	sc := bufio.NewScanner(open[0].Body)
	if s := readEvent(t, sc, "sample"); !strings.Contains(s, `"conns":`) {
		t.Errorf("sample %s", s)
	}
	// Closing a stream frees its slot.
	open[31].Body.Close()
	open = open[:31]
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r := openStream(t, g, token)
		if r.StatusCode != http.StatusOK {
			r.Body.Close()
			return fmt.Errorf("a stream after one closed: %d", r.StatusCode)
		}
		open = append(open, r)
		return nil
	})
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(done)
	}()
	g.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an open console stream outlived the gateway")
	}
}

// TestConsoleRebalanceEvent: adding a node records the ring change, the
// join and one rebalance summary with the clients moved, in the event log
// and the rebalance histogram; link round trips are measured.
func TestConsoleRebalanceEvent(t *testing.T) {
	c := startCluster(t, 2, func(cfg *gateway.Config) { cfg.KeepAlive = 50 * time.Millisecond })
	for i := range 40 {
		dial(t, c, fmt.Sprintf("/ws/u%d", i))
	}
	var added struct{ ID string }
	if code := admin(t, c, "POST", "/api/nodes", `{}`, &added); code != http.StatusCreated {
		t.Fatalf("add node: %d", code)
	}
	adminAddr := c.Gateway().AdminAddr()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var snap struct {
			Events []gateway.Event `json:"events"`
		}
		admin(t, c, "GET", "/api/console", "", &snap)
		var joined, rebalanced bool
		for _, e := range snap.Events {
			joined = joined || e.Kind == "join" && strings.Contains(e.Text, added.ID)
			var moved int
			if e.Kind == "rebalance" {
				if _, err := fmt.Sscanf(e.Text[strings.Index(e.Text, "done: ")+6:], "%d clients moved", &moved); err == nil && moved > 0 {
					rebalanced = true
				}
			}
		}
		if !joined || !rebalanced {
			return fmt.Errorf("events %+v: want the join of %s and a rebalance that moved clients", snap.Events, added.ID)
		}
		return nil
	})
	if n := testutil.Metric(t, adminAddr, "wsgate_gateway_rebalance_duration_seconds_count"); n < 1 {
		t.Errorf("rebalance_duration_seconds_count = %v", n)
	}
	if n := testutil.Metric(t, adminAddr, "wsgate_gateway_handshake_duration_seconds_count"); n < 40 {
		t.Errorf("handshake_duration_seconds_count = %v, want >= 40", n)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := testutil.Metric(t, adminAddr, "wsgate_gateway_link_rtt_seconds_count"); n < 1 {
			return fmt.Errorf("link_rtt_seconds_count = %v", n)
		}
		return nil
	})
}

// TestRelayRoundTripSampled: request/reply traffic is sampled into the
// relay round-trip histogram (one message in 64 per loop), and the
// per-node connection gauge and ring info are exported.
func TestRelayRoundTripSampled(t *testing.T) {
	c := startCluster(t, 2, nil)
	ws, _ := dial(t, c, "/ws/probe")
	for i := range 300 {
		if err := ws.WriteMessage(1, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	adminAddr := c.Gateway().AdminAddr()
	if n := testutil.Metric(t, adminAddr, "wsgate_gateway_relay_roundtrip_seconds_count"); n < 1 {
		t.Errorf("relay_roundtrip_seconds_count = %v after 300 echoes", n)
	}
	node := owner(t, c, "probe")
	if n := testutil.Metric(t, adminAddr, `wsgate_gateway_node_connections{node="`+node+`"}`); n != 1 {
		t.Errorf("node_connections{%s} = %v, want 1", node, n)
	}
	v := fmt.Sprintf("%016x", c.Gateway().Ring().Version())
	if n := testutil.Metric(t, adminAddr, `wsgate_gateway_ring_info{version="`+v+`"}`); n != 1 {
		t.Errorf("ring_info{version=%s} = %v, want 1", v, n)
	}
}

// TestClosesSentByCode: every close the gateway starts is counted by code,
// once per client. (It caught a double close frame: closing the last
// session of a retiring link made the link close that session again.)
func TestClosesSentByCode(t *testing.T) {
	c := startCluster(t, 2, nil)
	ws, _ := dial(t, c, "/ws/closer")
	node := owner(t, c, "closer")
	if code := admin(t, c, "DELETE", "/api/nodes/"+node, "", nil); code != http.StatusAccepted {
		t.Fatalf("remove %s: %d", node, code)
	}
	if code, _ := closeCode(t, ws); code != 1012 {
		t.Fatalf("close %d, want 1012", code)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := testutil.Metric(t, c.Gateway().AdminAddr(), `wsgate_gateway_closes_sent_total{code="1012"}`); n != 1 {
			return fmt.Errorf("closes_sent_total{1012} = %v, want 1", n)
		}
		return nil
	})
}
