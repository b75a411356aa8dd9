package cli

import (
	"log/slog"
	"net"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
)

// servePlainWS serves the demo app as plain WebSocket on addr, beside the
// node's gateway links, so peers (nginx, HAProxy) can front the same
// backends. It returns a stop function.
func servePlainWS(addr string, node *backend.Node, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := demo.ServePlain(ln, node, log)
	log.Info("plain websocket listening", "addr", s.Addr().String())
	return func() { _ = s.Close() }, nil
}
