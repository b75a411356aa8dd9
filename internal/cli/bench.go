package cli

import (
	"context"
	"errors"
	"io"
)

// runBench runs `wsgate bench` (the load generator in bench/).
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	return usageError{errors.New("bench: not built yet")}
}
