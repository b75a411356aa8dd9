package demo

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsgate/wsgate/backend"
)

// PlainServer serves the demo app as plain WebSocket, without a gateway in
// front: the same welcome message and echo, so that other proxies (nginx,
// HAProxy) can front the same backends in benchmarks. It is a goroutine
// per connection with small buffers: fine for a backend, and never the
// bottleneck of a proxy comparison on one machine (see docs/BENCHMARKS.md).
type PlainServer struct {
	ln    net.Listener
	node  *backend.Node
	log   *slog.Logger
	count atomic.Int64
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// plainBufSize is each plain connection's read and write buffer size.
const plainBufSize = 2048

// ServePlain serves plain WebSocket clients on ln until Close. The welcome
// message's serverIp is node's id and its serverUserCount counts the node's
// gateway sessions and the plain clients.
func ServePlain(ln net.Listener, node *backend.Node, log *slog.Logger) *PlainServer {
	s := &PlainServer{ln: ln, node: node, log: log, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the listener's address.
func (s *PlainServer) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, closes every connection and waits for them.
func (s *PlainServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *PlainServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("plain websocket accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *PlainServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	br := bufio.NewReaderSize(c, plainBufSize)
	bw := bufio.NewWriterSize(c, plainBufSize)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := (ws.Upgrader{}).Upgrade(struct {
		io.Reader
		io.Writer
	}{br, c}); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	n := s.count.Add(1)
	defer s.count.Add(-1)
	msg := appendEvent(nil, TypeConnected, "connected", int(n)+s.node.SessionCount(), s.node.ID(), time.Now().UnixMilli())
	if err := writeFrame(bw, ws.NewTextFrame(msg).Header, msg); err != nil {
		return
	}
	var payload []byte
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if h.Length > 1<<20 {
			_ = writeFrame(bw, ws.Header{Fin: true, OpCode: ws.OpClose, Length: 2}, []byte{0x03, 0xf1}) // 1009
			return
		}
		if int64(cap(payload)) < h.Length {
			payload = make([]byte, h.Length)
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		h.Masked = false
		switch h.OpCode {
		case ws.OpPing:
			h.OpCode = ws.OpPong
		case ws.OpPong:
			continue
		case ws.OpClose:
			_ = writeFrame(bw, h, p)
			return
		}
		// Echo verbatim: same opcode, same fragmentation. Write only when
		// no more input is buffered, so pipelined messages share a write.
		if err := ws.WriteHeader(bw, h); err != nil {
			return
		}
		if _, err := bw.Write(p); err != nil {
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if cap(payload) > 64<<10 {
			payload = nil
		}
	}
}

// writeFrame writes a whole frame and flushes.
func writeFrame(bw *bufio.Writer, h ws.Header, p []byte) error {
	if err := ws.WriteHeader(bw, h); err != nil {
		return err
	}
	if _, err := bw.Write(p); err != nil {
		return err
	}
	return bw.Flush()
}
