package gateway

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/internal/membership"
	"github.com/wsgate/wsgate/internal/tlscert"
)

// TestGrafanaDashboard: deploy/grafana/wsgate.json is a dashboard Grafana
// imports (valid JSON, panels with Prometheus targets), and every gateway
// metric its queries use exists (wsgate_backend_* names are checked
// against a backend's page in cmd/wsgate's TestMetricsLint).
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/wsgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("not a dashboard: title %q uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	certFile, keyFile, err := tlscert.Write(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := membership.NewStatic([]membership.Node{{ID: "n", Addr: "127.0.0.1:1"}})
	g, err := New(Config{Members: src, TLSCert: certFile, TLSKey: keyFile, Health: map[string]func() bool{"redis": func() bool { return true }}})
	if err != nil {
		t.Fatal(err)
	}
	have := g.metrics.registered.names()
	series := regexp.MustCompile(`wsgate_gateway_[a-z_]+`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range series.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					name = strings.TrimSuffix(name, suffix)
				}
				if !slices.Contains(have, name) {
					t.Errorf("panel %q uses %s, which the gateway does not export", p.Title, name)
				}
			}
		}
	}
}
