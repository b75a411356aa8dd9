// Package seal signs and checks the messages the cluster shares through
// RabbitMQ and Redis (membership events, registry entries, broadcasts;
// docs/protocol.md 9): an HMAC-SHA256 with the cluster secret over a
// domain string and the message's fields, and a Guard that refuses stale
// and replayed messages and counts what it drops.
package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"sync"
	"time"
)

// MAC is base64 (standard alphabet, no padding) of HMAC-SHA256(secret,
// domain | u32 len + s for each of strs | u64 for each of nums), integers
// big-endian: length prefixes keep two different messages from sharing an
// input, the domain keeps one kind of message from passing for another.
func MAC(secret []byte, domain string, strs []string, nums ...uint64) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(domain))
	for _, s := range strs {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		m.Write([]byte(s))
	}
	var b []byte
	for _, n := range nums {
		b = binary.BigEndian.AppendUint64(b, n)
	}
	m.Write(b)
	return base64.RawStdEncoding.EncodeToString(m.Sum(nil))
}

// Equal compares two MACs in constant time.
func Equal(got, want string) bool { return hmac.Equal([]byte(got), []byte(want)) }

// FirstSeq is where a sender's sequence starts: its start time in
// nanoseconds, so that a restarted sender stays above its old messages.
func FirstSeq() uint64 { return uint64(time.Now().UnixNano()) }

// Guard refuses stale and replayed messages for one receiver and counts
// dropped messages by reason. Safe for concurrent use.
type Guard struct {
	window time.Duration

	mu      sync.Mutex
	last    map[string]uint64 // sender -> highest sequence accepted
	dropped map[string]uint64 // reason -> count
}

// NewGuard returns a guard allowing window of clock skew.
func NewGuard(window time.Duration) *Guard {
	return &Guard{window: window, last: map[string]uint64{}, dropped: map[string]uint64{}}
}

// Off is how far a message's time (unix ms) is outside [now-maxAge-window,
// now+window]; 0 when it is inside (fresh).
func (g *Guard) Off(atMs int64, maxAge time.Duration) time.Duration {
	d := time.Since(time.UnixMilli(atMs))
	switch {
	case d > maxAge+g.window:
		return d
	case d < -g.window:
		return d
	}
	return 0
}

// Next accepts seq from sender if it is above every sequence accepted from
// that sender before; a replay (or an older message) is counted as reason
// and refused.
func (g *Guard) Next(sender string, seq uint64, reason string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if seq <= g.last[sender] {
		g.dropped[reason]++
		return false
	}
	g.last[sender] = seq
	return true
}

// Drop counts a dropped message.
func (g *Guard) Drop(reason string) {
	g.mu.Lock()
	g.dropped[reason]++
	g.mu.Unlock()
}

// Dropped returns the messages dropped, by reason.
func (g *Guard) Dropped() map[string]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]uint64, len(g.dropped))
	for k, n := range g.dropped {
		out[k] = n
	}
	return out
}
