// Command slowreaders measures the gateway's outbound budget: --slow
// clients upgrade and then never read (tiny receive buffers) while the
// backend pushes large messages to them through POST /api/send; --fast
// clients keep reading and measure their ping round trips (answered by
// the gateway's event loop) and push deliveries meanwhile. It samples the
// gateway's RSS from /metrics throughout and after the flood, and prints
// how the slow clients were closed. Results for docs/BENCHMARKS.md
// ("Edge limits").
//
//	go run ./scripts/slowreaders --addr 127.0.0.1:8080 --admin 127.0.0.1:8081
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "gateway client listener")
	admin := flag.String("admin", "127.0.0.1:8081", "gateway admin listener")
	nslow := flag.Int("slow", 40, "clients that never read")
	nfast := flag.Int("fast", 10, "clients that read and measure")
	size := flag.Int("size", 60000, "push message size")
	dur := flag.Duration("duration", 10*time.Second, "push flood duration")
	after := flag.Duration("after", 15*time.Second, "RSS sampling after the flood")
	flag.Parse()

	base := rss(*admin)
	fmt.Printf("baseline RSS %.1f MiB\n", mib(base))

	slow := make([]net.Conn, *nslow)
	for i := range slow {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", *addr)
		must(err)
		fmt.Fprintf(c, "GET /ws/slow-%d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i)
		slow[i] = c
	}

	var mu sync.Mutex
	var rtts []time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fastClosed atomic.Int64
	for i := range *nfast {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+*addr+"/ws/fast-"+strconv.Itoa(i), nil)
		must(err)
		pongs := make(chan time.Time, 1)
		ws.SetPongHandler(func(string) error { pongs <- time.Now(); return nil })
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					select {
					case <-stop:
					default:
						fastClosed.Add(1)
					}
					return
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ws.Close()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				t0 := time.Now()
				if ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(2*time.Second)) != nil {
					return
				}
				select {
				case t := <-pongs:
					mu.Lock()
					rtts = append(rtts, t.Sub(t0))
					mu.Unlock()
				case <-time.After(5 * time.Second):
				}
			}
		}()
	}

	msg := strings.Repeat("x", *size)
	var sent, failed atomic.Int64
	peak := base
	floodEnd := time.Now().Add(*dur)
	var fw sync.WaitGroup
	for w := range 8 {
		fw.Add(1)
		go func() {
			defer fw.Done()
			body, _ := json.Marshal(map[string]string{"message": msg})
			for i := w; time.Now().Before(floodEnd); i += 8 {
				b := bytes.Replace(body, []byte(`{"message"`), []byte(`{"userId":"slow-`+strconv.Itoa(i%*nslow)+`","message"`), 1)
				r, err := http.Post("http://"+*admin+"/api/send", "application/json", bytes.NewReader(b))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
				sent.Add(1)
			}
		}()
	}
	t0 := time.Now()
	var timeline []string
	sample := func() int64 {
		r := rss(*admin)
		timeline = append(timeline, fmt.Sprintf("%.1fs:%.0f", time.Since(t0).Seconds(), mib(r)))
		return r
	}
	for time.Now().Before(floodEnd) {
		peak = max(peak, sample())
		time.Sleep(500 * time.Millisecond)
	}
	fw.Wait()
	floodStop := time.Now()
	fmt.Printf("flood: %d pushes of %d bytes to %d slow clients in %v (%d failed), peak RSS %.1f MiB (+%.1f over baseline)\n",
		sent.Load(), *size, *nslow, *dur, failed.Load(), mib(peak), mib(peak-base))
	back := time.Duration(-1)
	for time.Since(floodStop) < *after {
		r := sample()
		if back < 0 && r > 0 && r < base+base/5+8<<20 {
			back = time.Since(floodStop)
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("RSS %.1f MiB %v after the flood; back within baseline+20%%+8MiB %v after the flood ended\n", mib(rss(*admin)), *after, back.Round(10*time.Millisecond))
	fmt.Printf("RSS timeline (seconds since the flood began: MiB): %s\n", strings.Join(timeline, " "))

	// How the slow clients ended: read what reached them (they never read
	// during the flood) and look for the close frame's code at the end.
	codes := map[string]int{}
	for _, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		all, _ := io.ReadAll(bufio.NewReader(c))
		codes[closeCodeAtEnd(all)]++
		c.Close()
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	slices.Sort(rtts)
	q := func(p float64) time.Duration {
		if len(rtts) == 0 {
			return 0
		}
		return rtts[min(len(rtts)-1, int(p*float64(len(rtts))))]
	}
	fmt.Printf("fast clients: %d ping round trips during the flood, p50 %v, p99 %v, max %v; %d closed\n",
		len(rtts), q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), q(1).Round(time.Microsecond), fastClosed.Load())
	mu.Unlock()
	fmt.Printf("slow clients' endings: %v\n", codes)
}

// closeCodeAtEnd finds a server close frame (0x88) near the end of what a
// slow client received and returns its code, or how the stream ended.
func closeCodeAtEnd(b []byte) string {
	for i := max(0, len(b)-200); i < len(b)-3; i++ {
		if b[i] == 0x88 && int(b[i+1]) <= 125 && i+2+int(b[i+1]) == len(b) && b[i+1] >= 2 {
			return "close " + strconv.Itoa(int(b[i+2])<<8|int(b[i+3])) + " " + strconv.Quote(string(b[i+4:]))
		}
	}
	return "dropped without a close frame"
}

func rss(admin string) int64 {
	r, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
