package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/internal/wsframe"
)

// PlainServer serves the demo app as plain WebSocket, without a gateway in
// front: the same welcome message and echo, so that other proxies (nginx,
// HAProxy) can front the same backends in benchmarks. It runs on gnet
// event loops, like the gateway, so that the backend's cost per message
// stays small next to the proxy's: a slow backend would handicap the peers
// on a shared machine.
type PlainServer struct {
	gnet.BuiltinEventEngine
	node   *backend.Node
	log    *slog.Logger
	count  atomic.Int64
	eng    gnet.Engine
	addr   string
	booted chan struct{}
	done   chan error
}

// plainConn is one plain client's state, owned by its loop.
type plainConn struct {
	open bool
	out  []byte // replies gathered during one OnTraffic, written at once
}

// Limits of the plain listener.
const (
	plainMaxRequest = 8 << 10 // largest upgrade request
	plainMaxMessage = 1 << 20 // largest frame payload; larger closes with 1009
)

// ServePlain serves plain WebSocket clients on addr (host:port; port 0
// picks one) until Close. The welcome message's serverIp is node's id and
// its serverUserCount counts the node's gateway sessions and the plain
// clients.
func ServePlain(addr string, node *backend.Node, log *slog.Logger) (*PlainServer, error) {
	s := &PlainServer{node: node, log: log, addr: addr, booted: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		s.done <- gnet.Run(s, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	}()
	select {
	case <-s.booted:
		return s, nil
	case err := <-s.done:
		return nil, err
	}
}

// Addr is the listener's address.
func (s *PlainServer) Addr() string { return s.addr }

// Close stops the listener and closes every connection.
func (s *PlainServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.eng.Stop(ctx); err != nil {
		return err
	}
	return <-s.done
}

// OnBoot implements gnet.EventHandler: it learns the bound address.
func (s *PlainServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if in, ok := sa.(*unix.SockaddrInet4); ok {
				s.addr = net.JoinHostPort(net.IP(in.Addr[:]).String(), strconv.Itoa(in.Port))
			}
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

// OnOpen implements gnet.EventHandler.
func (s *PlainServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&plainConn{})
	return nil, gnet.None
}

// OnClose implements gnet.EventHandler.
func (s *PlainServer) OnClose(c gnet.Conn, _ error) gnet.Action {
	if pc, ok := c.Context().(*plainConn); ok && pc.open {
		s.count.Add(-1)
	}
	return gnet.None
}

var crlf2 = []byte("\r\n\r\n")

// OnTraffic implements gnet.EventHandler: the upgrade once the request is
// complete, then every complete frame; replies go out in one write.
func (s *PlainServer) OnTraffic(c gnet.Conn) gnet.Action {
	pc := c.Context().(*plainConn)
	if !pc.open {
		buf, _ := c.Peek(-1)
		end := bytes.Index(buf, crlf2)
		if end < 0 {
			if len(buf) > plainMaxRequest {
				return gnet.Close
			}
			return gnet.None
		}
		var resp bytes.Buffer
		_, err := ws.Upgrader{}.Upgrade(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(buf[:end+4]), &resp})
		_, _ = c.Discard(end + 4)
		if err != nil {
			_, _ = c.Write(resp.Bytes())
			return gnet.Close
		}
		pc.open = true
		n := s.count.Add(1)
		welcome := appendEvent(nil, TypeConnected, "connected", int(n)+s.node.SessionCount(), s.node.ID(), time.Now().UnixMilli())
		pc.out = wsframe.AppendFrame(append(pc.out[:0], resp.Bytes()...), true, wsframe.OpText, welcome)
	}
	act := s.frames(c, pc)
	if len(pc.out) > 0 {
		_, _ = c.Write(pc.out)
		pc.out = pc.out[:0]
		if cap(pc.out) > 64<<10 {
			pc.out = nil
		}
	}
	return act
}

// frames echoes every complete frame buffered on c: same opcode, same
// fragmentation; ping is answered, close echoed.
func (s *PlainServer) frames(c gnet.Conn, pc *plainConn) gnet.Action {
	var h wsframe.Header
	for {
		buf, _ := c.Peek(-1)
		n, err := h.Parse(buf)
		if err != nil {
			pc.out = wsframe.AppendClose(pc.out, wsframe.CloseProtocolError, "")
			return gnet.Close
		}
		if n == 0 {
			return gnet.None
		}
		if !h.Masked {
			pc.out = wsframe.AppendClose(pc.out, wsframe.CloseProtocolError, "client frame not masked")
			return gnet.Close
		}
		if h.Length > plainMaxMessage {
			pc.out = wsframe.AppendClose(pc.out, wsframe.CloseTooBig, "")
			return gnet.Close
		}
		total := n + int(h.Length)
		if len(buf) < total {
			return gnet.None
		}
		p := buf[n:total]
		wsframe.MaskBytes(p, h.Mask, 0)
		op := h.Op
		switch op {
		case wsframe.OpPing:
			op = wsframe.OpPong
		case wsframe.OpPong:
			_, _ = c.Discard(total)
			continue
		}
		pc.out = append(wsframe.AppendHeader(pc.out, h.Fin, op, len(p)), p...)
		_, _ = c.Discard(total)
		if op == wsframe.OpClose {
			return gnet.Close
		}
	}
}

// String describes the server for logs.
func (s *PlainServer) String() string { return fmt.Sprintf("plain websocket on %s", s.addr) }
