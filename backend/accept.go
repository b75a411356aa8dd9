package backend

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Reasons a connection is closed before it becomes a link: indexes of
// counters.rejected and rejectReasons.
const (
	rejectMaxLinks = iota
	rejectMaxPending
	rejectHelloTimeout
	rejectFDExhausted
	rejectBadHello
	rejectBadAuth
	rejectBadTLS
	numRejectReasons
)

// rejectReasons are the reason labels (LinksRejected.ByReason).
var rejectReasons = [numRejectReasons]string{"max_links", "max_pending", "hello_timeout", "fd_exhausted", "bad_hello", "bad_auth", "bad_tls"}

// Accept loop tuning.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// shedWait: how long the accept on the released reserve descriptor
	// waits for a pending connection (an EMFILE does not say whether one
	// is pending).
	shedWait = 10 * time.Millisecond
	// limitedLogEvery: per-connection events of a flood (rejections,
	// reassembly sheds) are logged at most this often per kind.
	limitedLogEvery = 10 * time.Second
)

// logEvery rate-limits one kind of log line.
type logEvery struct{ last atomic.Int64 } // UnixNano of the last line

// allow reports whether a line may be logged now (at most one per
// limitedLogEvery). Safe for concurrent use.
func (e *logEvery) allow() bool {
	now := time.Now().UnixNano()
	last := e.last.Load()
	if last != 0 && now-last < int64(limitedLogEvery) {
		return false
	}
	return e.last.CompareAndSwap(last, now)
}

// reject counts a connection closed for reason (a reject* constant) and
// logs it, at most once per limitedLogEvery per reason.
func (n *Node) reject(reason int, remote string) {
	total := n.stats.rejected[reason].Add(1)
	if n.stats.rejectLog[reason].allow() {
		n.log.Warn("link rejected (logged at most every 10s per reason)",
			"reason", rejectReasons[reason], "remote", remote, "rejected_total", total)
	}
}

// acceptLoop accepts links until the listener is closed.
//
// Accept errors back off (5 ms doubling to 1 s) and are logged once per
// episode (until an accept succeeds again). Out of descriptors (EMFILE,
// ENFILE), the pending connection would keep the listener readable and the
// peer waiting: the loop releases a reserve descriptor, accepts one pending
// connection on it, closes it and re-opens the reserve, once per backoff
// step.
func (n *Node) acceptLoop(ln net.Listener) {
	defer n.wg.Done()
	reserve := openReserve()
	defer func() {
		if reserve != nil {
			_ = reserve.Close()
		}
	}()
	var backoff time.Duration
	failures := 0 // accept errors in the current episode
	timer := time.NewTimer(0)
	<-timer.C
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			exhausted := fdExhausted(err)
			if failures == 0 {
				n.log.Warn("accept failing; backing off up to 1s (logged once until accepts succeed)",
					"err", err, "fd_exhausted", exhausted)
			}
			failures++
			if exhausted {
				reserve = n.shedOne(ln, reserve)
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			timer.Reset(backoff)
			select {
			case <-timer.C:
			case <-n.acceptStop:
				timer.Stop()
				return
			}
			continue
		}
		if failures > 0 {
			n.log.Info("accept recovered", "failed_accepts", failures,
				"fd_exhausted_rejects", n.stats.rejected[rejectFDExhausted].Load())
			failures, backoff = 0, 0
		}
		if reserve == nil {
			reserve = openReserve()
		}
		n.admit(c)
	}
}

// admit makes c a link, or closes it at once (before reading anything) if
// the node is closing or over MaxLinks or MaxPendingLinks.
func (n *Node) admit(c net.Conn) {
	if n.cfg.TLS != nil {
		c = tls.Server(c, n.cfg.TLS) // the handshake runs in serve, within HelloTimeout
	}
	l := newLink(n, c)
	l.source, _, _ = net.SplitHostPort(c.RemoteAddr().String())
	reason := -1
	n.mu.Lock()
	refuse := n.closed || n.draining
	switch {
	case refuse:
	case len(n.links) >= n.cfg.MaxLinks:
		reason = rejectMaxLinks
	case n.pending >= n.cfg.MaxPendingLinks, n.pendingBy[l.source] >= MaxPendingLinksPerSource:
		reason = rejectMaxPending
	default:
		n.links[l] = struct{}{}
		n.pending++
		n.pendingBy[l.source]++
		n.wg.Add(2) // reader (serve) and writer
	}
	n.mu.Unlock()
	switch {
	case refuse:
		_ = c.Close()
	case reason >= 0:
		n.reject(reason, remoteAddr(c)) // counted before the peer sees the close
		_ = c.Close()
	default:
		go l.serve()
	}
}

// handshakeDone releases the MaxPendingLinks slot of a link from source
// (its handshake ended, either way).
func (n *Node) handshakeDone(source string) {
	n.mu.Lock()
	n.pending--
	if n.pendingBy[source]--; n.pendingBy[source] <= 0 {
		delete(n.pendingBy, source)
	}
	n.mu.Unlock()
}

// shedOne runs when accept failed for lack of descriptors: it releases the
// reserve descriptor, accepts one pending connection (if one arrives within
// shedWait) and closes it, so the peer is refused instead of left waiting,
// then re-opens the reserve. It returns the new reserve (nil if it could
// not be re-opened; it is retried on the next call).
func (n *Node) shedOne(ln net.Listener, reserve *os.File) *os.File {
	if reserve == nil {
		return openReserve()
	}
	_ = reserve.Close()
	if dl, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
		_ = dl.SetDeadline(time.Now().Add(shedWait))
		c, err := ln.Accept()
		_ = dl.SetDeadline(time.Time{})
		if err == nil {
			n.reject(rejectFDExhausted, remoteAddr(c))
			_ = c.Close()
		}
	}
	return openReserve()
}

// openReserve opens the descriptor kept in reserve for shedOne; nil if
// none is available.
func openReserve() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
}

// fdExhausted reports whether an accept error means the process or the
// system is out of file descriptors.
func fdExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// remoteAddr returns c's remote address for logs.
func remoteAddr(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
