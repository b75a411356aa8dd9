package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// promtool is Prometheus's checker (Debian's prometheus package, which
// scripts/services.sh installs); a missing one fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("no promtool on PATH: run scripts/services.sh (it installs Debian's prometheus package)")
	}
	return p
}

// checkMetrics fetches a /metrics page and runs `promtool check metrics`
// on it (naming, units, _total suffixes, help texts); it returns the page.
func checkMetrics(t *testing.T, tool, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics %s: %v\n%s", url, err, out)
	}
	return string(body)
}

// TestMetricsLint: the gateway's and a backend's /metrics pass promtool.
func TestMetricsLint(t *testing.T) {
	tool := promtool(t)
	bp, addr := startBackend(t, "m1", "127.0.0.1:0")
	badmin := backendAdmin(t, bp)
	g := startGateway(t, "--backend", "m1="+addr)
	connect(t, g, "lint") // a session, so per-node and traffic series exist
	checkMetrics(t, tool, "http://"+g.admin+"/metrics")
	page := checkMetrics(t, tool, "http://"+badmin+"/metrics")
	// The Grafana dashboard's backend series exist (its gateway series are
	// checked in gateway's TestGrafanaDashboard).
	dash, err := os.ReadFile("../../deploy/grafana/wsgate.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`wsgate_backend_[a-z_]+`).FindAllString(string(dash), -1) {
		if !strings.Contains(page, "# HELP "+name+" ") {
			t.Errorf("the Grafana dashboard uses %s, which a backend does not export", name)
		}
	}
}
