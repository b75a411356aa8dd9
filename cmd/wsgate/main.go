// Command wsgate is the WebSocket edge tier: `wsgate dev` runs a whole
// cluster in one process; `wsgate gateway` and `wsgate backend` run its parts.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgate/wsgate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wsgate:", err)
		os.Exit(cli.ExitCode(err))
	}
}
