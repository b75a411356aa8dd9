package testutil

import (
	"net"
	"sync"
	"testing"
)

// Direction names one half of a proxied connection.
type Direction int

// Directions of a proxied connection.
const (
	// ToTarget carries what the dialling side sends to the target.
	ToTarget Direction = iota
	// FromTarget carries what the target sends back.
	FromTarget
)

// Proxy is a TCP proxy for tests that need to cut a service off (a broker
// or Redis "restart") or make a peer go silent (Freeze) without touching
// the service itself.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	thawed *sync.Cond // signalled when a direction thaws or the proxy goes down
	down   bool
	frozen [2]bool
	conns  map[net.Conn]struct{}
}

// NewProxy listens on a random loopback port and forwards to target until
// the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.thawed = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.SetDown(true)
	})
	return p
}

// Addr is the proxy's listen address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDown cuts every open connection and refuses new ones (down), or lets
// them through again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
			delete(p.conns, c)
		}
		p.thawed.Broadcast()
	}
}

// Freeze stops forwarding in direction d on every connection, keeping the
// sockets open (the sender's bytes pile up unread, as with a peer that
// hangs or was stopped with SIGSTOP), or resumes it.
func (p *Proxy) Freeze(d Direction, frozen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen[d] = frozen
	if !frozen {
		p.thawed.Broadcast()
	}
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.copy(up, c, ToTarget); done <- struct{}{} }()
	go func() { p.copy(c, up, FromTarget); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// copy forwards src to dst, holding each read back while d is frozen.
func (p *Proxy) copy(dst, src net.Conn, d Direction) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen[d] && !p.down {
				p.thawed.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
