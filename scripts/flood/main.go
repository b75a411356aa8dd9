// Command flood measures how a gateway weathers a flood of raw TCP
// connects (no request): it connects a few real WebSocket clients, opens
// --conns raw connections from --sources loopback addresses (split over
// worker processes, since one process may hold only ~19,000 sockets), holds
// them for --hold while the real clients keep echoing, then closes them and
// measures how long until a new client is upgraded. Results for
// docs/BENCHMARKS.md ("Edge limits").
//
//	go run ./scripts/flood --addr 127.0.0.1:8080 --conns 25000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "gateway client listener")
	conns := flag.Int("conns", 25000, "raw connections in the flood")
	sources := flag.Int("sources", 8, "source addresses 127.0.1.1..N")
	per := flag.Int("per-proc", 12500, "raw connections per worker process")
	hold := flag.Duration("hold", 5*time.Second, "how long the flood holds its connections")
	worker := flag.Int("worker", -1, "internal: run as worker number N")
	flag.Parse()
	if *worker >= 0 {
		runWorker(*addr, *per, *sources, *worker)
		return
	}

	// Real clients, connected before the flood.
	var echoes, echoFails atomic.Int64
	var slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+*addr+"/ws/flood-probe-"+strconv.Itoa(i), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe client:", err)
			os.Exit(1)
		}
		_, _, _ = ws.ReadMessage() // welcome
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ws.Close()
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				t0 := time.Now()
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				if ws.WriteMessage(websocket.TextMessage, []byte("ping")) != nil {
					echoFails.Add(1)
					return
				}
				if _, _, err := ws.ReadMessage(); err != nil {
					echoFails.Add(1)
					return
				}
				echoes.Add(1)
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		}()
	}

	procs := (*conns + *per - 1) / *per
	var ws []*exec.Cmd
	var closers []io.Closer
	var held atomic.Int64
	start := time.Now()
	var ready sync.WaitGroup
	for i := range procs {
		n := min(*per, *conns-i**per)
		cmd := exec.Command(os.Args[0], "--addr", *addr, "--per-proc", strconv.Itoa(n), "--sources", strconv.Itoa(*sources), "--worker", strconv.Itoa(i))
		out, _ := cmd.StdoutPipe()
		stdin, _ := cmd.StdinPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		ready.Add(1)
		go func() {
			sc := bufio.NewScanner(out)
			if sc.Scan() {
				n, _ := strconv.Atoi(sc.Text())
				held.Add(int64(n))
			}
			ready.Done()
		}()
		ws = append(ws, cmd)
		closers = append(closers, stdin)
	}
	ready.Wait()
	fmt.Printf("flood: %d of %d raw connections open after %v\n", held.Load(), *conns, time.Since(start).Round(time.Millisecond))
	time.Sleep(*hold)
	for _, c := range closers {
		c.Close() // a worker closes its connections and exits when stdin closes
	}
	for _, c := range ws {
		_ = c.Wait()
	}
	closed := time.Now()
	var after time.Duration
	for {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+*addr+"/ws/flood-after", nil)
		if err == nil {
			after = time.Since(closed)
			c.Close()
			break
		}
		if time.Since(closed) > time.Minute {
			fmt.Println("no new client accepted within a minute:", err)
			os.Exit(1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	fmt.Printf("existing clients: %d echoes, %d failures, slowest round trip %v\n",
		echoes.Load(), echoFails.Load(), time.Duration(slowest.Load()).Round(time.Microsecond))
	fmt.Printf("new client upgraded %v after the flood closed\n", after.Round(time.Millisecond))
}

// runWorker opens n raw connections, prints how many are open, holds them
// until stdin closes, then closes them.
func runWorker(addr string, n, sources, idx int) {
	var conns []net.Conn
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+(idx*n+i)%sources))}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		conns = append(conns, c)
	}
	fmt.Println(len(conns))
	_, _ = bufio.NewReader(os.Stdin).ReadByte()
	for _, c := range conns {
		c.Close()
	}
}
