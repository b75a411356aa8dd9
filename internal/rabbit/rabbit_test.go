package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/wsgate/wsgate/internal/testutil"
)

// These tests use the machine's RabbitMQ (127.0.0.1:5672, guest/guest,
// started by scripts/services.sh), each with an exchange of its own.

const brokerAddr = "127.0.0.1:5672"

var seq atomic.Int64

// exchange returns a unique exchange name, deleted when the test ends.
func exchange(t *testing.T) string {
	name := fmt.Sprintf("wsgate-test-rabbit-%d-%d", os.Getpid(), seq.Add(1))
	t.Cleanup(func() {
		conn, err := amqp.Dial("amqp://guest:guest@" + brokerAddr + "/")
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(name, false, false)
		}
	})
	return name
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), Config{URL: "amqp://guest:guest@" + addr + "/", Name: t.Name(), MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("%v (run scripts/services.sh)", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// subscribe starts a subscription and returns its messages and a count
// of how often it became ready.
func subscribe(t *testing.T, c *Client, ex string) (<-chan string, *atomic.Int64) {
	msgs := make(chan string, 16)
	var ready atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Subscribe(ctx, ex, func(b []byte) { msgs <- string(b) }, func() { ready.Add(1) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if ready.Load() == 0 {
			return errors.New("subscription not ready")
		}
		return nil
	})
	return msgs, &ready
}

func receive(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	select {
	case m := <-msgs:
		if m != want {
			t.Fatalf("received %q, want %q", m, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q not received", want)
	}
}

func TestPublishSubscribe(t *testing.T) {
	ex := exchange(t)
	c := dial(t, brokerAddr)
	a, _ := subscribe(t, c, ex)
	b, _ := subscribe(t, dial(t, brokerAddr), ex) // fanout: every subscriber gets it
	for i, confirm := range []bool{true, false} {
		msg := fmt.Sprintf("m%d", i)
		if err := c.Publish(context.Background(), ex, []byte(msg), confirm); err != nil {
			t.Fatal(err)
		}
		receive(t, a, msg)
		receive(t, b, msg)
	}
}

// TestReconnect cuts the connection (a proxy between client and broker):
// Publish fails fast with ErrDown, the client reconnects by itself,
// resubscribes (ready again) and delivers.
func TestReconnect(t *testing.T) {
	ex := exchange(t)
	p := testutil.NewProxy(t, brokerAddr)
	c := dial(t, p.Addr())
	msgs, ready := subscribe(t, c, ex)
	if !c.Healthy() {
		t.Fatal("not healthy after Dial")
	}
	p.SetDown(true)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if c.Healthy() {
			return errors.New("still healthy with the broker cut off")
		}
		return nil
	})
	if err := c.Publish(context.Background(), ex, []byte("lost"), true); !errors.Is(err, ErrDown) {
		t.Fatalf("Publish while down: %v, want ErrDown", err)
	}
	p.SetDown(false)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !c.Healthy() || ready.Load() < 2 {
			return fmt.Errorf("healthy %v, ready %d times; want a resubscription", c.Healthy(), ready.Load())
		}
		return nil
	})
	if err := c.Publish(context.Background(), ex, []byte("after"), true); err != nil {
		t.Fatal(err)
	}
	receive(t, msgs, "after")
}

func TestDialError(t *testing.T) {
	p := testutil.NewProxy(t, brokerAddr)
	p.SetDown(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, url := range []string{"amqp://guest:secret@" + p.Addr() + "/", "amqp://guest:secret@host:56x2/"} {
		_, err := Dial(ctx, Config{URL: url})
		if err == nil || !strings.Contains(err.Error(), "rabbitmq at") || strings.Contains(err.Error(), "secret") {
			t.Errorf("Dial(%q): %v; want an error naming the broker, without the password", url, err)
		}
	}
}

// TestHandshakeDeadline: a server that accepts and never speaks AMQP
// does not stall Dial past its context.
func TestHandshakeDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, Config{URL: "amqp://guest:guest@" + ln.Addr().String() + "/"})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Dial to a silent server succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dial to a silent server still blocked after 10s (context: 500ms)")
	}
}
