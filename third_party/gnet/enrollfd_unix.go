//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"net"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
)

// EnrollFD registers fd, a non-blocking TCP socket the caller created and
// connected or is connecting (a non-blocking connect that returned
// EINPROGRESS completes on the loop: writes wait in the outbound buffer
// until it does, and a failed connect closes the conn with its error), on
// the event loop el, with context ctx, and calls OnOpen for it before it
// returns (wsgate patch).
//
// Unlike Register and Enroll it takes no goroutine, no net.Conn and no dup:
// it must be called on el's own goroutine (from an event handler of a conn
// of el, or a Runnable given to el.Execute). gnet owns fd from the call
// on, and closes it if registration fails.
func EnrollFD(el EventLoop, fd int, remote unix.Sockaddr, remoteAddr net.Addr, ctx any) error {
	l, ok := el.(*eventloop)
	if !ok {
		_ = unix.Close(fd)
		return errorx.ErrUnsupportedOp
	}
	// remoteAddr is the caller's (wsgate shares one per upstream target):
	// never released to the pool with the conn.
	c := newStreamConn("tcp", fd, l, remote, &connAddrs{remote: remoteAddr, shared: true})
	c.ctx = ctx
	return l.register0(c)
}
