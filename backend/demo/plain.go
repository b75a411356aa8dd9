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
	"github.com/wsgate/wsgate/internal/wsframe"
)

// PlainServer serves the demo app as plain WebSocket, without a gateway in
// front: the same welcome message and echo, so that other proxies (nginx,
// HAProxy) can front the same backends in benchmarks. It is a goroutine
// per connection with small buffers and no allocation per message. A gnet
// version was measured too (docs/BENCHMARKS.md): the same CPU per message
// under load (the kernel's read and write dominate) but a 4x slower single
// round trip (a sleeping loop thread must be woken), so this one stays.
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
	if err := writeFrame(bw, nil, wsframe.OpText, msg); err != nil {
		return
	}
	var (
		payload []byte
		hdr     [wsframe.MaxHeaderLen]byte
		h       wsframe.Header
	)
	for {
		n, err := readHeader(br, &h)
		if err != nil {
			return
		}
		if !h.Masked {
			_ = writeFrame(bw, hdr[:0], wsframe.OpClose, []byte{0x03, 0xea}) // 1002: client frames must be masked
			return
		}
		if h.Length > 1<<20 {
			_ = writeFrame(bw, hdr[:0], wsframe.OpClose, []byte{0x03, 0xf1}) // 1009
			return
		}
		_, _ = br.Discard(n)
		if int64(cap(payload)) < h.Length {
			payload = make([]byte, h.Length)
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		wsframe.MaskBytes(p, h.Mask, 0)
		op := h.Op
		switch op {
		case wsframe.OpPing:
			op = wsframe.OpPong
		case wsframe.OpPong:
			continue
		case wsframe.OpClose:
			_ = writeFrame(bw, hdr[:0], op, p)
			return
		}
		// Echo verbatim: same opcode, same fragmentation. Flush only when no
		// more input is buffered, so pipelined messages share a write.
		if _, err := bw.Write(wsframe.AppendHeader(hdr[:0], h.Fin, op, len(p))); err != nil {
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

// readHeader decodes the next frame header from br without consuming it
// and returns its size; the caller discards it.
func readHeader(br *bufio.Reader, h *wsframe.Header) (int, error) {
	for need := wsframe.MinHeaderLen; ; {
		b, err := br.Peek(need)
		if err != nil {
			return 0, err
		}
		n, err := h.Parse(b)
		if err != nil || n > 0 {
			return n, err
		}
		need++
	}
}

// writeFrame writes a whole unmasked frame and flushes; hdr is scratch.
func writeFrame(bw *bufio.Writer, hdr []byte, op wsframe.OpCode, p []byte) error {
	if _, err := bw.Write(wsframe.AppendHeader(hdr, true, op, len(p))); err != nil {
		return err
	}
	if _, err := bw.Write(p); err != nil {
		return err
	}
	return bw.Flush()
}
