package gateway

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter enforces the per-source-address limits: --max-conns-per-ip and
// --handshake-rate-per-ip. With both off (the default) admit and release
// return at once and the map stays empty.
//
// Goroutines: admit runs on the event loops (OnOpen) and release there
// too (when a client's connection closes), sweep on the janitor; mu guards
// the map.
// The per-address work is a map lookup under an uncontended mutex, paid
// once per connection, never per message.
type limiter struct {
	maxConns int        // 0 = off
	rate     rate.Limit // 0 = off
	burst    int

	mu    sync.Mutex
	addrs map[netip.Addr]*addrState
}

// addrState is what the limiter keeps per source address.
type addrState struct {
	conns int32
	hs    *rate.Limiter // nil when the handshake rate is off
}

func newLimiter(maxConns int, perSec float64) *limiter {
	l := &limiter{maxConns: maxConns, addrs: map[netip.Addr]*addrState{}}
	if perSec > 0 {
		l.rate = rate.Limit(perSec)
		l.burst = max(1, int(perSec+0.5))
	}
	return l
}

func (l *limiter) on() bool { return l.maxConns > 0 || l.rate > 0 }

// admit counts a new connection from ip, or names the limit it breaks
// ("per_ip_conns" or "handshake_rate"; nothing is counted then).
func (l *limiter) admit(ip netip.Addr) string {
	if !l.on() {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.addrs[ip]
	if st == nil {
		st = &addrState{}
		if l.rate > 0 {
			st.hs = rate.NewLimiter(l.rate, l.burst)
		}
		l.addrs[ip] = st
	}
	if l.maxConns > 0 && int(st.conns) >= l.maxConns {
		return "per_ip_conns"
	}
	if st.hs != nil && !st.hs.Allow() {
		return "handshake_rate"
	}
	st.conns++
	return ""
}

// release forgets a connection admit counted.
func (l *limiter) release(ip netip.Addr) {
	if !l.on() {
		return
	}
	l.mu.Lock()
	if st := l.addrs[ip]; st != nil && st.conns > 0 {
		st.conns--
	}
	l.mu.Unlock()
}

// sweep drops the state of addresses with no connection whose handshake
// budget is full again, so the map holds only addresses that matter.
func (l *limiter) sweep(now time.Time) {
	if !l.on() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, st := range l.addrs {
		if st.conns == 0 && (st.hs == nil || st.hs.TokensAt(now) >= float64(l.burst)) {
			delete(l.addrs, ip)
		}
	}
}
