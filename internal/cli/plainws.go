package cli

import (
	"log/slog"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
)

// servePlainWS serves the demo app as plain WebSocket on addr, beside the
// node's gateway links, so peers (nginx, HAProxy) can front the same
// backends. It returns a stop function.
func servePlainWS(addr string, node *backend.Node, log *slog.Logger) (func(), error) {
	s, err := demo.ServePlain(addr, node, log)
	if err != nil {
		return nil, err
	}
	log.Info("plain websocket listening", "addr", s.Addr())
	return func() { _ = s.Close() }, nil
}
