package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Figure is one number a result reports, with how to compare it.
type Figure struct {
	Name   string  // e.g. "msgs/s"
	Value  float64 // NaN when not measured
	Higher bool    // true if more is better
}

// Figures lists r's headline numbers, in table order.
func Figures(r *Result) []Figure {
	f := func(name string, v float64, higher bool) Figure { return Figure{name, v, higher} }
	lat := func(prefix string, l *Latency) []Figure {
		if l == nil {
			nan := math.NaN()
			l = &Latency{P50: nan, P90: nan, P99: nan, P999: nan, Max: nan}
		}
		return []Figure{f(prefix+"p50 ms", l.P50, false), f(prefix+"p90 ms", l.P90, false),
			f(prefix+"p99 ms", l.P99, false), f(prefix+"p99.9 ms", l.P999, false), f(prefix+"max ms", l.Max, false)}
	}
	failed := 0
	for _, n := range r.Failures {
		failed += n
	}
	switch r.Scenario {
	case Connect:
		p99 := math.NaN()
		if r.Handshake != nil {
			p99 = r.Handshake.P99
		}
		return []Figure{f("handshakes/s", r.HandshakeRate, true), f("seconds to connect all", r.ConnectSecs, false), f("handshake p99 ms", p99, false),
			f("CPU ms/1k handshakes", nanIfZero(r.CPUPerThousand), false), f("failures", float64(failed), false)}
	case Idle:
		return []Figure{f("memory B/conn", r.MemPerConn, false), f("Go heap B/conn", nanIfZero(r.HeapPerConn), false),
			f("idle CPU %", r.IdleCPU, false), f("failures", float64(failed), false)}
	case Echo:
		out := []Figure{f("msgs/s", r.Throughput, true)}
		out = append(out, lat("", r.Latency)...)
		return append(out, f("CPU s/M msgs", r.CPUPerMillion, false),
			f("backends CPU s/M msgs", nanIfZero(r.BackendCPUPerMillion), false), f("failures", float64(failed), false))
	case Push:
		out := []Figure{f("pushes/s", r.PushRate, true)}
		out = append(out, lat("delivery ", r.Delivery)...)
		return append(out, f("last after return ms", maxOf(r.LastAfterReply), false), f("missing", float64(r.Missing), false))
	case Broadcast:
		return []Figure{f("last after return ms (median)", median(append([]float64(nil), r.LastAfterReply...)), false),
			f("last after return ms (max)", maxOf(r.LastAfterReply), false),
			f("last after call ms (median)", median(append([]float64(nil), r.LastAfterCall...)), false),
			f("CPU ms/broadcast", nanIfZero(r.CPUPerBroadcast), false), f("missing", float64(r.Missing), false)}
	case Rebalance:
		var out []Figure
		for _, s := range r.Steps {
			verb := strings.Fields(s.Change)[0]
			out = append(out, f(verb+" moved", s.Fraction, false), f(verb+" ideal", s.Ideal, false),
				f(verb+" needless closes", float64(s.NeedlessClose), false), f(verb+" missed", float64(s.Missed), false))
			if s.PauseMs == nil && s.Migrated == 0 {
				out = append(out, f(verb+" reconnected s", s.ReconnectSecs, false))
				continue
			}
			out = append(out, f(verb+" migrated", float64(s.Migrated), false), f(verb+" without state", float64(s.MigrateLost), false),
				f(verb+" all moved s", s.ReconnectSecs, false), f(verb+" bad counts", float64(s.BadCounts), false))
			out = append(out, lat(verb+" pause ", s.PauseMs)...)
			if s.RoundTrip != nil {
				out = append(out, f(verb+" round trip p99 ms", s.RoundTrip.P99, false), f(verb+" round trip max ms", s.RoundTrip.Max, false))
			}
		}
		return append(out, f("drops", float64(r.Drops), false))
	}
	return nil
}

// nanIfZero marks an unmeasured figure (zero) as missing.
func nanIfZero(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	m := xs[0]
	for _, x := range xs[1:] {
		m = math.Max(m, x)
	}
	return m
}

// Summary is the median of each figure over a target's rounds of one
// scenario, over plain WebSocket or over TLS.
type Summary struct {
	Scenario string
	Target   string
	// TLS is what the target's wss:// connections negotiated (Result.TLS
	// of its first round that completed a handshake); empty for plain.
	TLS     string
	Rounds  int
	Figures []Figure
}

// Label is the target's name in charts: " (TLS)" follows it over wss://.
func (s Summary) Label() string {
	if s.TLS != "" {
		return s.Target + " (TLS)"
	}
	return s.Target
}

// Summarize groups results by scenario, plain or TLS, and target (in
// first-seen order, plain before TLS) and takes each figure's median over
// the rounds.
func Summarize(results []*Result) []Summary {
	type k struct {
		s, t string
		tls  bool
	}
	var order []k
	groups := map[k][]*Result{}
	for _, r := range results {
		key := k{r.Scenario, r.Target, r.TLS != ""}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], r)
	}
	sort.SliceStable(order, func(i, j int) bool {
		if a, b := scenarioIndex(order[i].s), scenarioIndex(order[j].s); a != b {
			return a < b
		}
		return !order[i].tls && order[j].tls
	})
	var out []Summary
	for _, key := range order {
		rs := groups[key]
		base := Figures(rs[0])
		for i := range base {
			var vs []float64
			for _, r := range rs {
				if fs := Figures(r); i < len(fs) && !math.IsNaN(fs[i].Value) {
					vs = append(vs, fs[i].Value)
				}
			}
			base[i].Value = math.NaN()
			if len(vs) > 0 {
				base[i].Value = median(vs)
			}
		}
		sum := Summary{Scenario: key.s, Target: key.t, Rounds: len(rs), Figures: base}
		for _, r := range rs {
			if sum.TLS == "" || sum.TLS == tlsNoHandshake {
				sum.TLS = r.TLS
			}
		}
		out = append(out, sum)
	}
	return out
}

func scenarioIndex(s string) int {
	for i, x := range Scenarios {
		if x == s {
			return i
		}
	}
	return len(Scenarios)
}

// formatValue prints v with precision suited to its size.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return addCommas(strconv.FormatFloat(v, 'f', 0, 64))
	case math.Abs(v) >= 1000:
		return addCommas(strconv.FormatFloat(v, 'f', 0, 64))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func addCommas(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// WriteMarkdown writes one table per scenario, plain and over TLS apart
// (rows: targets; columns: figures, medians over rounds) and, when ref
// names a target, a ratio row ref / peer for every figure of every other
// target. Under a TLS table, what each target negotiated.
func WriteMarkdown(w io.Writer, sums []Summary, ref string) {
	for i := 0; i < len(sums); {
		j := i
		for j < len(sums) && sums[j].Scenario == sums[i].Scenario && (sums[j].TLS != "") == (sums[i].TLS != "") {
			j++
		}
		group := sums[i:j]
		title := group[0].Scenario
		if group[0].TLS != "" {
			title += ", over TLS (wss://)"
		}
		fmt.Fprintf(w, "\n**%s**\n\n| target | rounds |", title)
		for _, f := range group[0].Figures {
			fmt.Fprintf(w, " %s |", f.Name)
		}
		fmt.Fprint(w, "\n| --- | --- |")
		fmt.Fprint(w, strings.Repeat(" --- |", len(group[0].Figures)))
		fmt.Fprintln(w)
		for _, s := range group {
			fmt.Fprintf(w, "| %s | %d |", s.Target, s.Rounds)
			for _, f := range s.Figures {
				fmt.Fprintf(w, " %s |", formatValue(f.Value))
			}
			fmt.Fprintln(w)
		}
		if rs := ratios(group, ref); len(rs) > 0 {
			for _, line := range rs {
				fmt.Fprintln(w, line)
			}
		}
		if group[0].TLS != "" {
			fmt.Fprintln(w)
			for _, s := range group {
				fmt.Fprintf(w, "- %s: %s\n", s.Target, s.TLS)
			}
		}
		i = j
	}
}

// ratios renders "| ref / peer | | r1 | r2 |..." rows for a scenario group.
func ratios(group []Summary, ref string) []string {
	var base *Summary
	for i := range group {
		if group[i].Target == ref {
			base = &group[i]
		}
	}
	if base == nil || len(group) < 2 {
		return nil
	}
	var out []string
	for _, s := range group {
		if s.Target == ref {
			continue
		}
		line := fmt.Sprintf("| *%s / %s* | |", ref, s.Target)
		for i, f := range base.Figures {
			r := math.NaN()
			if i < len(s.Figures) && s.Figures[i].Value != 0 {
				r = f.Value / s.Figures[i].Value
			}
			if math.IsNaN(r) || math.IsInf(r, 0) {
				line += " – |"
			} else {
				line += " *" + strconv.FormatFloat(r, 'f', 2, 64) + "×* |"
			}
		}
		out = append(out, line)
	}
	return out
}

// WriteFiles writes results.json, results.md and results.svg into dir.
func WriteFiles(dir string, results []*Result, ref string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	sums := Summarize(results)
	var md strings.Builder
	WriteMarkdown(&md, sums, ref)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.svg"), []byte(Chart(sums)), 0o644)
}

// chartFigures are the figures the chart draws, one panel each.
var chartFigures = []struct{ scenario, figure string }{
	{Echo, "msgs/s"},
	{Echo, "p50 ms"}, {Echo, "p99 ms"}, {Echo, "p99.9 ms"},
	{Echo, "CPU s/M msgs"},
	{Connect, "handshakes/s"},
	{Connect, "CPU ms/1k handshakes"},
	{Idle, "memory B/conn"},
	{Broadcast, "last after return ms (median)"},
}

// Chart renders an SVG with one horizontal bar panel per charted figure
// that was measured, one bar per target.
func Chart(sums []Summary) string {
	type bar struct {
		label string
		v     float64
	}
	type panel struct {
		title string
		bars  []bar
	}
	var panels []panel
	for _, cf := range chartFigures {
		p := panel{title: cf.scenario + ": " + cf.figure}
		for _, s := range sums {
			if s.Scenario != cf.scenario {
				continue
			}
			for _, f := range s.Figures {
				if f.Name == cf.figure && !math.IsNaN(f.Value) {
					p.bars = append(p.bars, bar{s.Label(), f.Value})
				}
			}
		}
		if len(p.bars) > 0 {
			panels = append(panels, p)
		}
	}
	const width, labelW, barH, gap, titleH = 640, 110, 18, 4, 22
	colors := []string{"#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030"}
	var b strings.Builder
	height := 10 + latencyLinesHeight(sums)
	for _, p := range panels {
		height += titleH + len(p.bars)*(barH+gap) + 12
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	targetColor := map[string]string{}
	colorOf := func(target string) string {
		c, ok := targetColor[target]
		if !ok {
			c = colors[len(targetColor)%len(colors)]
			targetColor[target] = c
		}
		return c
	}
	y := 10 + latencyLines(&b, sums, width, colorOf)
	for _, p := range panels {
		fmt.Fprintf(&b, `<text x="4" y="%d" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(p.title))
		y += titleH
		maxV := 0.0
		for _, br := range p.bars {
			maxV = math.Max(maxV, br.v)
		}
		for _, br := range p.bars {
			c := colorOf(br.label)
			w := 0.0
			if maxV > 0 {
				w = br.v / maxV * float64(width-labelW-90)
			}
			fmt.Fprintf(&b, `<text x="4" y="%d">%s</text>`, y+13, html.EscapeString(br.label))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelW, y, w, barH, c)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelW)+w+4, y+13, formatValue(br.v))
			y += barH + gap
		}
		y += 12
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// latencyLinesHeight is the height latencyLines draws (0 without echo).
func latencyLinesHeight(sums []Summary) int {
	for _, s := range sums {
		if s.Scenario == Echo {
			return 230
		}
	}
	return 0
}

// latencyLines draws the echo latency distribution, one line per target
// through its p50, p90, p99, p99.9 and max, and returns the height used.
func latencyLines(b *strings.Builder, sums []Summary, width int, colorOf func(string) string) int {
	h := latencyLinesHeight(sums)
	if h == 0 {
		return 0
	}
	names := []string{"p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"}
	const left, top, plotH = 60, 30, 150
	plotW := width - left - 120
	type series struct {
		target string
		vs     []float64
	}
	var ss []series
	maxV := 0.0
	for _, s := range sums {
		if s.Scenario != Echo {
			continue
		}
		se := series{target: s.Label()}
		for _, n := range names {
			v := math.NaN()
			for _, f := range s.Figures {
				if f.Name == n {
					v = f.Value
				}
			}
			se.vs = append(se.vs, v)
			if !math.IsNaN(v) {
				maxV = math.Max(maxV, v)
			}
		}
		ss = append(ss, se)
	}
	if maxV <= 0 {
		maxV = 1
	}
	fmt.Fprintf(b, `<text x="4" y="24" font-weight="bold">echo: latency distribution (ms, by percentile)</text>`+"\n")
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, left, top+plotH, left+plotW, top+plotH)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", left, top, left, top+plotH)
	fmt.Fprintf(b, `<text x="4" y="%d">%s</text><text x="4" y="%d">0</text>`+"\n", top+10, formatValue(maxV), top+plotH)
	step := float64(plotW) / float64(len(names)-1)
	for i, n := range names {
		fmt.Fprintf(b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`, float64(left)+float64(i)*step, top+plotH+16, strings.TrimSuffix(n, " ms"))
	}
	b.WriteString("\n")
	for k, se := range ss {
		var pts []string
		for i, v := range se.vs {
			if !math.IsNaN(v) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(left)+float64(i)*step, float64(top+plotH)-v/maxV*plotH))
			}
		}
		c := colorOf(se.target)
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, c, strings.Join(pts, " "))
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", left+plotW+10, top+14+k*16, c, html.EscapeString(se.target))
	}
	return h
}
