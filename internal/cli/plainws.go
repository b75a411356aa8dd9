package cli

import (
	"errors"
	"log/slog"

	"github.com/wsgate/wsgate/backend"
)

// servePlainWS serves the demo app as plain WebSocket on addr, beside the
// node's gateway links, so peers (nginx, HAProxy) can front the same
// backends. It returns a stop function.
func servePlainWS(addr string, node *backend.Node, log *slog.Logger) (func(), error) {
	return nil, errors.New("not built yet")
}
