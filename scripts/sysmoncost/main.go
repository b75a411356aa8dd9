// Command sysmoncost measures what an event loop pays per wake-up when it
// blocks in epoll_wait as a system call (gnet's loops, the bench engine's)
// against waiting for its epoll descriptor in Go's own netpoller and then
// polling it without blocking.
//
// With one P (GOMAXPROCS=1), a thread blocked in a system call leaves no
// idle P, so the runtime's sysmon retakes the P after 20 µs and stays at
// its shortest sleep: each wake-up of the loop costs sysmon wake-ups and a
// hand-off of the P. Waiting in the netpoller parks the goroutine instead,
// the P goes idle and sysmon sleeps. docs/BENCHMARKS.md ("Where the CPU
// goes at a million") has the figures.
//
//	go run ./scripts/sysmoncost blocking 500us
//	go run ./scripts/sysmoncost nested 500us
//
// A child process writes a byte to a pipe every interval for 12 s; the
// parent reads for 10 s and prints its CPU per event and its context
// switches (all its threads, getrusage).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: sysmoncost blocking|nested|writer INTERVAL")
		os.Exit(2)
	}
	iv, err := time.ParseDuration(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sysmoncost:", err)
		os.Exit(2)
	}
	if os.Args[1] == "writer" {
		f := os.NewFile(3, "pipe")
		for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(iv) {
			if _, err := f.Write([]byte{1}); err != nil {
				return
			}
		}
		return
	}
	if err := run(os.Args[1], iv); err != nil {
		fmt.Fprintln(os.Stderr, "sysmoncost:", err)
		os.Exit(1)
	}
}

func run(mode string, iv time.Duration) error {
	if mode != "blocking" && mode != "nested" {
		return fmt.Errorf("mode %q: want blocking or nested", mode)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], "writer", iv.String())
	cmd.ExtraFiles = []*os.File{w}
	rfd := int(r.Fd())
	if err := unix.SetNonblock(rfd, true); err != nil {
		return err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, rfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(rfd)}); err != nil {
		return err
	}
	var rc syscall.RawConn
	if mode == "nested" {
		// Go's netpoller watches the epoll descriptor itself: it is
		// readable while it has events ready.
		if err := unix.SetNonblock(epfd, true); err != nil {
			return err
		}
		if rc, err = os.NewFile(uintptr(epfd), "epoll").SyscallConn(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	done := make(chan int)
	go func() {
		if mode == "blocking" {
			runtime.LockOSThread() // as the bench engine's loops
		}
		evs := make([]unix.EpollEvent, 64)
		buf := make([]byte, 4096)
		n := 0
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			var k int
			if mode == "nested" {
				k, _ = unix.EpollWait(epfd, evs, 0)
				if k == 0 {
					_ = rc.Read(func(uintptr) bool {
						k, _ = unix.EpollWait(epfd, evs, 0)
						return k > 0
					})
				}
			} else {
				k, _ = unix.EpollWait(epfd, evs, -1)
			}
			for range k {
				if m, _ := unix.Read(rfd, buf); m > 0 {
					n += m
				}
			}
		}
		done <- n
	}()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	n := <-done
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	fmt.Printf("%s GOMAXPROCS=%d every %v: %d events, CPU %v (%.1f µs an event), context switches %.2f voluntary, %.2f involuntary an event\n",
		mode, runtime.GOMAXPROCS(0), iv, n, cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(max(n, 1)),
		float64(ru1.Nvcsw-ru0.Nvcsw)/float64(max(n, 1)), float64(ru1.Nivcsw-ru0.Nivcsw)/float64(max(n, 1)))
	return nil
}
