package cli

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestGCPercent: --gc-percent (flag or WSGATE_GC_PERCENT) sets the
// collector's target; without it GOGC from the environment is left in
// force, and without either the default applies; a bad value exits 2
// naming the flag.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		start   int // the target before apply (what GOGC gave the runtime)
		want    int
		wantErr string
	}{
		{name: "default", start: 100, want: DefaultGCPercent},
		{name: "flag", args: []string{"--gc-percent", "25"}, start: 100, want: 25},
		{name: "env fallback", env: map[string]string{"WSGATE_GC_PERCENT": "30"}, start: 100, want: 30},
		{name: "GOGC kept", env: map[string]string{"GOGC": "77"}, start: 77, want: 77},
		{name: "flag over GOGC", args: []string{"--gc-percent", "40"}, env: map[string]string{"GOGC": "77"}, start: 77, want: 40},
		{name: "zero", args: []string{"--gc-percent", "0"}, start: 100, wantErr: "--gc-percent 0"},
		{name: "negative", env: map[string]string{"WSGATE_GC_PERCENT": "-1"}, start: 100, wantErr: "--gc-percent -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			debug.SetGCPercent(tc.start)
			fs := newFlagSet("test")
			g := addGCFlag(fs)
			if err := fs.parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := g.apply()
			if tc.wantErr != "" {
				if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v (exit %d), want exit 2 naming %q", err, ExitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if now := debug.SetGCPercent(tc.start); now != tc.want {
				t.Fatalf("collector target %d, want %d", now, tc.want)
			}
		})
	}
}
