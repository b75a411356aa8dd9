// Command linktls-cost.d writes a self-signed certificate (its own CA)
// into the directory given, for scripts/linktls-cost.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/wsgate/wsgate/internal/tlscert"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: linktls-cost.d DIR")
		os.Exit(2)
	}
	if _, _, err := tlscert.Write(os.Args[1], 24*time.Hour); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
