package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Probe reads a target's resource use: CPU and memory of its processes
// from /proc, and, for wsgate, the Go heap from its admin /metrics.
type Probe struct {
	// Pids returns the target's process ids (for nginx: master and
	// workers); nil means CPU and RSS come from Admin's /metrics.
	Pids func() []int
	// Admin is wsgate's admin host:port, "" for none.
	Admin string
}

// Usage is one sample of a target's resources. Negative means unknown.
type Usage struct {
	CPU  float64 // user+system CPU seconds since start, all processes
	Mem  float64 // resident memory in bytes: PSS summed over processes (RSS if one)
	Heap float64 // Go heap in use (go_memstats_heap_inuse_bytes), after a GC
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for every architecture Go supports).
const clockTicks = 100

// Sample reads the target's usage; gc forces a GC in wsgate first (so heap
// figures compare live data).
func (p Probe) Sample(ctx context.Context, gc bool) (Usage, error) {
	u := Usage{CPU: -1, Mem: -1, Heap: -1}
	if p.Admin != "" {
		if gc {
			for range 2 {
				if _, err := httpGet(ctx, "http://"+p.Admin+"/debug/pprof/heap?gc=1"); err != nil {
					return u, fmt.Errorf("%w (memory figures force a GC through pprof: start the gateway with --pprof)", err)
				}
			}
		}
		m, err := scrape(ctx, p.Admin)
		if err != nil {
			return u, err
		}
		u.Heap = m["go_memstats_heap_inuse_bytes"]
		if p.Pids == nil {
			u.CPU = m["process_cpu_seconds_total"]
			u.Mem = m["process_resident_memory_bytes"]
		}
	}
	if p.Pids != nil {
		pids := p.Pids()
		u.CPU, u.Mem = 0, 0
		for _, pid := range pids {
			cpu, err := procCPU(pid)
			if err != nil {
				return u, err
			}
			u.CPU += cpu
			u.Mem += procMem(pid, len(pids) > 1)
		}
	}
	return u, nil
}

// procCPU is a process's user+system CPU seconds, its threads included.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: bad /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short /proc stat line")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: bad /proc stat times")
	}
	return (ut + st) / clockTicks, nil
}

// procMem is a process's resident memory in bytes: its proportional share
// (PSS) when several processes share pages (nginx master and workers),
// else RSS.
func procMem(pid int, shared bool) float64 {
	key := "VmRSS:"
	file := fmt.Sprintf("/proc/%d/status", pid)
	if shared {
		key, file = "Pss:", fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return parseKB(b, key)
}

// parseKB finds "key   123 kB" in a /proc file and returns bytes.
func parseKB(b []byte, key string) float64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == key {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v * 1024
		}
	}
	return 0
}

// WithChildren returns pid and its child processes (nginx workers).
func WithChildren(pid int) []int {
	out := []int{pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return out
	}
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// scrape reads a Prometheus text exposition into name → value (unlabelled
// samples only).
func scrape(ctx context.Context, admin string) (map[string]float64, error) {
	b, err := httpGet(ctx, "http://"+admin+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(b), nil
}

func parseMetrics(b []byte) map[string]float64 {
	m := make(map[string]float64)
	eachSample(b, func(series string, v float64) {
		if !strings.ContainsAny(series, "{ ") {
			m[series] = v
		}
	})
	return m
}

// eachSample calls fn with each sample of a Prometheus text exposition:
// the series (name and labels) and its value.
func eachSample(b []byte, fn func(series string, v float64)) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			fn(strings.TrimSpace(line[:sp]), v)
		}
	}
}

var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64},
}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	return httpDo(ctx, http.MethodGet, url, "")
}

// httpDo sends a request with an optional JSON body and returns the body
// of a 2xx answer.
func httpDo(ctx context.Context, method, url, body string) ([]byte, error) {
	if body == "" && method == http.MethodPost {
		body = "{}" // the admin API takes state changes as JSON only
	}
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
