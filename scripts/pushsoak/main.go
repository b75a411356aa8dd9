// Command pushsoak is issue 10's soak: 20 clients that never send, and a
// push to one of them every second through POST /api/send, for a while;
// it prints every client that is closed and a summary at the end.
//
//	wsgate dev --backends 2 --listen 127.0.0.1:18080 --admin 127.0.0.1:18081 &
//	go run ./scripts/pushsoak 127.0.0.1:18080 127.0.0.1:18081 4m
package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	gw, admin := os.Args[1], os.Args[2]
	dur, _ := time.ParseDuration(os.Args[3])
	var closed, got atomic.Int64
	for i := 0; i < 20; i++ {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+gw+fmt.Sprintf("/ws/user%d", i), nil)
		if err != nil {
			panic(err)
		}
		go func(i int) {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					fmt.Printf("%s client user%d closed: %v\n", time.Now().Format(time.TimeOnly), i, err)
					closed.Add(1)
					return
				}
				got.Add(1)
			}
		}(i)
	}
	end := time.Now().Add(dur)
	pushes := 0
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(time.Second)
		body := fmt.Sprintf(`{"userId":"user%d","message":"push %d"}`, i%20, i)
		resp, err := http.Post("http://"+admin+"/api/send", "application/json", bytes.NewBufferString(body)) // JSON, as the admin API requires
		if err == nil {
			resp.Body.Close()
			pushes++
		}
	}
	fmt.Printf("done: %v, %d pushes, %d messages received (incl. 20 welcomes), %d clients closed\n", dur, pushes, got.Load(), closed.Load())
}
