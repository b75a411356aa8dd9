package cli

import (
	"errors"
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
