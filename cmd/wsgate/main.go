// Command wsgate is the WebSocket edge tier: `wsgate dev` runs a whole
// cluster in one process; `wsgate gateway` and `wsgate backend` run its parts.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgate/wsgate/cli"
)

func main() {
	// The first SIGINT or SIGTERM starts a graceful drain (clients get
	// 1001, a backend first moves its clients away); a second one, an
	// impatient Ctrl-C, exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
		s := <-sigs
		fmt.Fprintf(os.Stderr, "wsgate: second %v during shutdown: exiting now\n", s)
		os.Exit(130)
	}()
	err := cli.Run(ctx, os.Args[1:], os.Stdout)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsgate:", err)
		os.Exit(cli.ExitCode(err))
	}
}
