package bench

import (
	"math"
	"strings"
	"testing"
)

func TestStamp(t *testing.T) {
	b := make([]byte, 64)
	for _, v := range []int64{0, 1, 123456789, math.MaxInt64} {
		putStamp(b, v)
		got, ok := stamp(b)
		if !ok || got != v {
			t.Fatalf("stamp(putStamp(%d)) = %d, %v", v, got, ok)
		}
	}
	for _, bad := range []string{"short", "0123456789abcdeX", "0123456789ABCDEF"} {
		if _, ok := stamp([]byte(bad)); ok {
			t.Errorf("stamp(%q) accepted", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "42 (we (ird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 4 0 100 1000 200\n"
	cpu, err := parseStatCPU([]byte(line))
	if err != nil || cpu != 4.0 {
		t.Fatalf("parseStatCPU = %v, %v; want 4 s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("42 (x) S 1 2")); err == nil {
		t.Fatal("short line accepted")
	}
}

func TestParseKBAndMetrics(t *testing.T) {
	if got := parseKB([]byte("Rss:  100 kB\nPss:   12 kB\n"), "Pss:"); got != 12*1024 {
		t.Fatalf("parseKB = %v", got)
	}
	m := parseMetrics([]byte("# HELP x\ngo_memstats_heap_inuse_bytes 1.5e+06\nwsgate_clients{loop=\"0\"} 3\nprocess_cpu_seconds_total 2.25\n"))
	if m["go_memstats_heap_inuse_bytes"] != 1.5e6 || m["process_cpu_seconds_total"] != 2.25 || len(m) != 2 {
		t.Fatalf("parseMetrics = %v", m)
	}
}

func TestWelcomeServer(t *testing.T) {
	w := `{"type":2,"content":"connected","serverUserCount":3,"serverIp":"node-2","timestamp":1}`
	if got := welcomeServer([]byte(w)); got != "node-2" {
		t.Fatalf("welcomeServer = %q", got)
	}
	if got := welcomeServer([]byte("hello")); got != "" {
		t.Fatalf("welcomeServer(no field) = %q", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Scenario: Echo, Addr: "127.0.0.1:1"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.Conns != DefaultConns || c.Keys != c.Conns || c.Size != DefaultSize || c.Target != c.Addr || c.Warmup != DefaultWarmup {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for _, bad := range []Config{
		{Scenario: Echo, Size: 8},
		{Scenario: "frob"},
		{Scenario: Broadcast},
		{Scenario: Rebalance},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestSummarizeMarkdownChart(t *testing.T) {
	lat := func(p99 float64) *Latency { return &Latency{Count: 10, P50: 1, P90: 2, P99: p99, P999: p99, Max: p99} }
	results := []*Result{
		{Target: "wsgate", Scenario: Echo, Throughput: 300, Latency: lat(3), CPUPerMillion: 2},
		{Target: "nginx", Scenario: Echo, Throughput: 100, Latency: lat(9), CPUPerMillion: 4},
		{Target: "wsgate", Scenario: Echo, Throughput: 200, Latency: lat(5), CPUPerMillion: 2},
		{Target: "wsgate", Scenario: Connect, HandshakeRate: 5000, Failures: map[string]int{"refused": 2}},
	}
	sums := Summarize(results)
	if len(sums) != 3 || sums[0].Scenario != Connect {
		t.Fatalf("Summarize: %+v", sums)
	}
	if sums[1].Target != "wsgate" || sums[1].Rounds != 2 || sums[1].Figures[0].Value != 250 {
		t.Fatalf("median over rounds: %+v", sums[1])
	}
	if f := sums[0].Figures[4]; f.Name != "failures" || f.Value != 2 {
		t.Fatalf("failures figure: %+v", f)
	}
	var md strings.Builder
	WriteMarkdown(&md, sums, "wsgate")
	for _, want := range []string{"**echo**", "| wsgate | 2 | 250 |", "| *wsgate / nginx* | | *2.50×* |", "**connect**", "5,000"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	svg := Chart(sums)
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "echo: msgs/s") || strings.Count(svg, "<rect") < 5 {
		t.Errorf("chart:\n%s", svg)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{math.NaN(): "–", 0: "0", 1234567: "1,234,567", -1234: "-1,234",
		12.345: "12.3", 1.2345: "1.23", 0.01234: "0.012", 10: "10", 1234.5: "1,234"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	if median(nil) != 0 || median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Fatal("median")
	}
}

// TestSummarizeTLSApart: plain and TLS results of the same target and
// scenario are summarized, tabled and charted apart.
func TestSummarizeTLSApart(t *testing.T) {
	const info = "TLS 1.3, TLS_AES_128_GCM_SHA256, X25519"
	results := []*Result{
		{Target: "wsgate", Scenario: Connect, HandshakeRate: 20000},
		{Target: "wsgate", Scenario: Connect, HandshakeRate: 6000, TLS: tlsNoHandshake},
		{Target: "wsgate", Scenario: Connect, HandshakeRate: 5000, TLS: info},
		{Target: "nginx", Scenario: Connect, HandshakeRate: 2500, TLS: info},
	}
	sums := Summarize(results)
	if len(sums) != 3 || sums[0].TLS != "" || sums[1].TLS != info || sums[1].Rounds != 2 || sums[1].Figures[0].Value != 5500 {
		t.Fatalf("Summarize: %+v", sums)
	}
	var md strings.Builder
	WriteMarkdown(&md, sums, "wsgate")
	for _, want := range []string{"**connect**", "| wsgate | 1 | 20,000 |", "**connect, over TLS (wss://)**",
		"| wsgate | 2 | 5,500 |", "| *wsgate / nginx* | | *2.20×* |", "- nginx: " + info} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if svg := Chart(sums); !strings.Contains(svg, ">wsgate (TLS)<") || !strings.Contains(svg, ">wsgate<") {
		t.Errorf("chart labels:\n%s", svg)
	}
}

func TestSourcesFor(t *testing.T) {
	for _, tc := range []struct{ conns, want int }{
		{0, 16}, {1000, 16}, {6999, 16}, {7000, 17}, {100000, 30}, {1000000, 158}, {10000000, MaxSources},
	} {
		if got := SourcesFor(tc.conns); got != tc.want {
			t.Errorf("SourcesFor(%d) = %d, want %d", tc.conns, got, tc.want)
		}
		if got := SourcesFor(tc.conns); got < MaxSources && tc.conns/got > ConnsPerSource {
			t.Errorf("SourcesFor(%d) = %d: %d connections a source", tc.conns, got, tc.conns/got)
		}
	}
}
