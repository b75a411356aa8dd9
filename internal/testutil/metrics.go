package testutil

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Metric reads one sample, named with its labels exactly as Prometheus
// prints them (`wsgate_gateway_rejected_total{reason="max_conns"}`), from
// the /metrics page of the admin listener at addr; 0 when it is absent.
func Metric(t testing.TB, addr, sample string) float64 {
	t.Helper()
	r, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
