package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFlagEnvFallback(t *testing.T) {
	t.Setenv("WSGATE_LISTEN", "10.0.0.1:1")
	t.Setenv("WSGATE_LOOPS", "3")
	t.Setenv("WSGATE_KEEPALIVE", "2s")
	t.Setenv("WSGATE_BACKEND", "a=h:1 b=h:2,2")
	fs := newFlagSet("t")
	listen := fs.String("listen", "def", "")
	loops := fs.Int("loops", 0, "")
	keep := fs.Duration("keepalive", time.Second, "")
	reuse := fs.Bool("reuseport", false, "")
	backends := fs.List("backend", "")
	if err := fs.parse([]string{"--loops", "5"}); err != nil {
		t.Fatal(err)
	}
	if *listen != "10.0.0.1:1" || *loops != 5 || *keep != 2*time.Second || *reuse || strings.Join(*backends, "|") != "a=h:1|b=h:2,2" {
		t.Fatalf("got listen=%s loops=%d keep=%v reuse=%v backends=%v", *listen, *loops, *keep, *reuse, *backends)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("WSGATE_REUSEPORT", "maybe")
	fs := newFlagSet("t")
	fs.Bool("reuseport", false, "")
	err := fs.parse(nil)
	var u usageError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "WSGATE_REUSEPORT") || ExitCode(err) != 2 {
		t.Fatalf("env error: %v", err)
	}
	fs = newFlagSet("t")
	if err := fs.parse([]string{"extra"}); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Fatalf("extra argument: %v", err)
	}
}

// TestFlagListsNeverMerge: a repeatable flag given on the command line
// replaces its environment variable's list instead of adding to it.
func TestFlagListsNeverMerge(t *testing.T) {
	t.Setenv("WSGATE_BACKEND", "a=h:1 b=h:2")
	fs := newFlagSet("t")
	backends := fs.List("backend", "")
	if err := fs.parse([]string{"--backend", "c=h:3"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*backends, "|") != "c=h:3" {
		t.Fatalf("backends %v, want only the command line's", *backends)
	}
}

// TestFlagConfigFile: --config gives values below the environment and the
// command line; a missing file is a usage error naming it.
func TestFlagConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wsgate.conf")
	if err := os.WriteFile(file, []byte("# a gateway\nlisten 10.0.0.2:8080\nloops 4\nkeepalive 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSGATE_LOOPS", "6")
	fs := newFlagSet("t")
	listen := fs.String("listen", "def", "")
	loops := fs.Int("loops", 0, "")
	keep := fs.Duration("keepalive", time.Second, "")
	if err := fs.parse([]string{"--config", file, "--keepalive", "9s"}); err != nil {
		t.Fatal(err)
	}
	if *listen != "10.0.0.2:8080" || *loops != 6 || *keep != 9*time.Second {
		t.Fatalf("listen=%s loops=%d keepalive=%v; want the file's listen, the env's loops, the command line's keepalive", *listen, *loops, *keep)
	}
	fs = newFlagSet("t")
	err := fs.parse([]string{"--config", "/nonexistent/wsgate.conf"})
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "/nonexistent/wsgate.conf") {
		t.Fatalf("missing config file: %v", err)
	}
}
