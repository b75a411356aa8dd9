package gateway

import (
	"sync"
	"time"
)

// StallLoops blocks every event loop for d, as an overload would (a
// reconnect storm ahead of everything else in the loop's queue), and
// returns once every loop is blocked. Tests only.
func (g *Gateway) StallLoops(d time.Duration) int {
	var started sync.WaitGroup
	loops := g.loopList()
	for _, l := range loops {
		started.Add(1)
		if l.exec(func() { started.Done(); time.Sleep(d) }) != nil {
			started.Done()
		}
	}
	started.Wait()
	return len(loops)
}
