package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWaitGateway: the scale tool accepts a gateway only when it answers
// as itself with every backend on its ring; another process on its admin
// port (the port was free when chosen, not reserved) or a gateway that
// ended is not taken for it.
func TestWaitGateway(t *testing.T) {
	info := func(id string, ring int, healthy ...bool) *httptest.Server {
		mux := http.NewServeMux()
		mux.HandleFunc("/api/info", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, `{"id":%q,"ringMembers":%d}`, id, ring)
		})
		mux.HandleFunc("/api/nodes", func(w http.ResponseWriter, _ *http.Request) {
			var nodes []string
			for i := range ring {
				nodes = append(nodes, fmt.Sprintf(`{"healthy":%v}`, i >= len(healthy) || healthy[i]))
			}
			fmt.Fprint(w, "["+strings.Join(nodes, ",")+"]")
		})
		return httptest.NewServer(mux)
	}
	run := func(t *testing.T, name string, args ...string) *scaleProc {
		c := &scaleCluster{bin: name, out: t.TempDir()}
		p, err := c.start(nil, "log", args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
		return p
	}
	for _, tc := range []struct {
		name     string
		srv      *httptest.Server
		ended    bool
		wantErr  string
		wantKind error
	}{
		{name: "itself, ring full", srv: info("g1", 3)},
		{name: "another process on its port", srv: info("g7", 3), wantErr: `answers as "g7"`},
		{name: "ring not full", srv: info("g1", 2), wantErr: "with 2"},
		{name: "a link down", srv: info("g1", 3, true, false, true), wantErr: "2 healthy"},
		{name: "ended", srv: info("g7", 3), ended: true, wantKind: errEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.srv.Close()
			p := run(t, "sleep", "60")
			if tc.ended {
				p = run(t, "true")
				<-p.done
			}
			err := waitGateway(context.Background(), p, strings.TrimPrefix(tc.srv.URL, "http://"), "g1", 3, 500*time.Millisecond)
			switch {
			case tc.wantErr == "" && tc.wantKind == nil:
				if err != nil {
					t.Fatal(err)
				}
			case tc.wantKind != nil:
				if !errors.Is(err, tc.wantKind) {
					t.Fatalf("err = %v, want %v", err, tc.wantKind)
				}
			case err == nil || !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

// TestScaleChartPhases: the run's chart marks where each phase ended, a
// dashed line and a label each, even for a phase recorded after the last
// sample.
func TestScaleChartPhases(t *testing.T) {
	m := &memSampler{t0: time.Now()}
	m.s.samples = []scaleSample{{secs: 0}, {secs: 10, sockets: 2000}, {secs: 20, sockets: 2000}}
	for _, name := range []string{"connected", "idle measured", "broadcasts done", "pushes done"} {
		m.mark(name)
	}
	m.s.phases[0].secs, m.s.phases[3].secs = 5, 25 // the last past the samples
	svg := m.s.chart(&ScaleReport{Conns: 1000})
	if n := strings.Count(svg, `stroke-dasharray`); n != 4 {
		t.Fatalf("%d phase lines, want 4", n)
	}
	for _, want := range []string{"5 s: connected", "idle measured", "broadcasts done", "25 s: pushes done"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart has no label %q", want)
		}
	}
}
