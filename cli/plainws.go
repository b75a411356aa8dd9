package cli

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/backend/demo"
	"github.com/wsgate/wsgate/internal/membership"
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

// parseUpstreams parses --upstream values: plain WebSocket servers.
func parseUpstreams(values []string) (membership.Static, error) {
	var nodes []membership.Node
	for _, v := range values {
		n, err := membership.ParseNode(v)
		if err == nil && !n.Plain() {
			err = fmt.Errorf("%q: want id=ws://host:port[/path][,weight] (a link-protocol backend goes in --backend)", v)
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--upstream: %w", err)}
		}
		nodes = append(nodes, n)
	}
	s, err := membership.NewStatic(nodes)
	if err != nil {
		return nil, usageError{fmt.Errorf("--upstream: %w", err)}
	}
	return s, nil
}
