package cli

import (
	"io"
	"strings"
	"testing"
)

// TestBalanceFactorFlag: a bad --balance-factor, from the command line or
// from WSGATE_BALANCE_FACTOR, exits 2 naming the flag before anything
// listens.
func TestBalanceFactorFlag(t *testing.T) {
	args := []string{"gateway", "--backend", "a=127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "-"}
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"flag", "", []string{"--balance-factor", "0.5"}},
		{"env", "1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("WSGATE_BALANCE_FACTOR", tc.env)
			}
			err := Run(t.Context(), append(append([]string{}, args...), tc.args...), io.Discard)
			if ExitCode(err) != 2 || !strings.Contains(err.Error(), "--balance-factor") {
				t.Fatalf("err %v (exit %d), want exit 2 naming --balance-factor", err, ExitCode(err))
			}
		})
	}
}
