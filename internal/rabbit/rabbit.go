// Package rabbit is wsgate's RabbitMQ client: one connection that survives
// broker restarts and cut connections (reconnect with backoff, re-declare,
// re-subscribe), publishing with optional publisher confirms, and fanout
// subscriptions through exclusive auto-delete queues.
package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrDown is returned by Publish while the broker is unreachable.
var ErrDown = errors.New("rabbit: broker connection is down")

// Config configures a Client.
type Config struct {
	URL  string       // amqp://user:pass@host:port/vhost
	Name string       // connection name shown by the broker (rabbitmqctl list_connections name)
	Log  *slog.Logger // default slog.Default()
	// MaxBackoff caps the wait between reconnect attempts; default 5s.
	MaxBackoff time.Duration
}

// Client is a self-healing connection. Safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	conn    *amqp.Connection
	pub     *amqp.Channel // confirm mode; replaced under mu and pubMu
	up      chan struct{} // closed while connected; replaced on loss
	healthy atomic.Bool
	blocked atomic.Bool // the broker stopped reading (memory or disk alarm)

	pubMu    sync.Mutex      // serializes publishes (a channel is not for concurrent use)
	declared map[string]bool // exchanges declared on pub; guarded by pubMu

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

// handshakeTimeout bounds the TCP dial plus the AMQP handshake.
const handshakeTimeout = 10 * time.Second

// ErrBlocked is returned by Publish while the broker blocks publishers
// (a resource alarm): publishing would hang.
var ErrBlocked = errors.New("rabbit: broker is blocking publishers (resource alarm)")

// Redact hides the password of a broker or Redis URL for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// Dial connects once (failing with a clear error if the broker cannot be
// reached) and then keeps the connection up until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	c := &Client{cfg: cfg, log: cfg.Log.With("component", "rabbitmq"), up: make(chan struct{}), closed: make(chan struct{})}
	lost, err := c.connect(ctx)
	if err != nil {
		// The library's errors may quote the URL, password included.
		msg := strings.ReplaceAll(err.Error(), cfg.URL, Redact(cfg.URL))
		return nil, fmt.Errorf("rabbitmq at %s unreachable: %s", Redact(cfg.URL), msg)
	}
	c.wg.Add(1)
	go c.keep(lost)
	return c, nil
}

// connect dials and opens the publishing channel; lost fires when the
// connection dies.
func (c *Client) connect(ctx context.Context) (chan *amqp.Error, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:  5 * time.Second,
		Properties: amqp.Table{"connection_name": c.cfg.Name},
		Dial: func(network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// As amqp.DefaultDial does: a deadline for the AMQP handshake
			// (cleared once it completes), so a broker that accepts and
			// never answers cannot stall us.
			deadline := time.Now().Add(handshakeTimeout)
			if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
				deadline = d
			}
			if err := conn.SetDeadline(deadline); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	})
	if err != nil {
		return nil, err
	}
	pub, err := conn.Channel()
	if err == nil {
		err = pub.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	lost := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for b := range blocked { // closed with the connection
			c.blocked.Store(b.Active)
			if b.Active {
				c.log.Warn("broker blocks publishers", "reason", b.Reason)
			}
		}
		c.blocked.Store(false)
	}()
	c.pubMu.Lock()
	c.mu.Lock()
	c.conn, c.pub = conn, pub
	c.declared = map[string]bool{}
	close(c.up)
	c.mu.Unlock()
	c.pubMu.Unlock()
	c.healthy.Store(true)
	return lost, nil
}

// keep waits for connection loss and reconnects with backoff.
func (c *Client) keep(lost chan *amqp.Error) {
	defer c.wg.Done()
	for {
		select {
		case <-c.closed:
			return
		case err := <-lost:
			select {
			case <-c.closed:
				return
			default:
			}
			c.healthy.Store(false)
			c.mu.Lock()
			c.up = make(chan struct{})
			c.conn, c.pub = nil, nil
			c.mu.Unlock()
			c.log.Warn("connection lost; reconnecting", "err", err)
		}
		// 100 ms doubling to MaxBackoff, randomized ±50%: the nodes of a
		// cluster that lost the broker together do not reconnect in step.
		b := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
			Multiplier: 2, MaxInterval: c.cfg.MaxBackoff}
		b.Reset()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			l, err := c.connect(ctx)
			cancel()
			if err == nil {
				lost = l
				c.log.Info("reconnected", "url", Redact(c.cfg.URL))
				select {
				case <-c.closed: // Close raced with the reconnect
					conn, _, _ := c.current()
					_ = conn.Close()
					return
				default:
				}
				break
			}
			wait := b.NextBackOff()
			c.log.Debug("reconnect failed", "err", err, "retry_in", wait.Round(time.Millisecond))
			select {
			case <-c.closed:
				return
			case <-time.After(wait):
			}
		}
	}
}

// Healthy reports whether the connection is up.
func (c *Client) Healthy() bool { return c.healthy.Load() }

// current returns the live connection, or a channel closed when one is.
func (c *Client) current() (*amqp.Connection, *amqp.Channel, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.pub, c.up
}

// Publish sends body to a fanout exchange (declared if missing). With
// confirm it waits for the broker's ack. It fails fast with ErrDown while
// disconnected rather than queueing.
func (c *Client) Publish(ctx context.Context, exchange string, body []byte, confirm bool) error {
	if c.blocked.Load() {
		return ErrBlocked
	}
	c.pubMu.Lock()
	_, pub, _ := c.current()
	if pub == nil {
		c.pubMu.Unlock()
		return ErrDown
	}
	var err error
	if !c.declared[exchange] { // once per channel: a declare is a round trip
		if err = declareFanout(pub, exchange); err == nil {
			c.declared[exchange] = true
		}
	}
	var dc *amqp.DeferredConfirmation
	if err == nil {
		dc, err = pub.PublishWithDeferredConfirmWithContext(ctx, exchange, "", false, false, amqp.Publishing{
			ContentType: "application/json", Body: body, Timestamp: time.Now(),
		})
	}
	if err != nil && pub.IsClosed() {
		// A channel-level error closed the publishing channel while the
		// connection lives on: open a new one for the next publish.
		c.reopenPub()
	}
	c.pubMu.Unlock()
	if err != nil || !confirm {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err == nil && !ok {
		err = errors.New("rabbit: broker nacked the message")
	}
	return err
}

// reopenPub replaces a closed publishing channel. Called with pubMu held.
func (c *Client) reopenPub() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return
	}
	pub, err := c.conn.Channel()
	if err == nil {
		err = pub.Confirm(false)
	}
	if err != nil {
		c.log.Warn("cannot reopen publishing channel", "err", err)
		return
	}
	c.pub, c.declared = pub, map[string]bool{}
}

func declareFanout(ch *amqp.Channel, name string) error {
	return ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil)
}

// Subscribe consumes every message published to the fanout exchange from
// now on, through an exclusive auto-delete queue of its own, calling handle
// for each (on one goroutine, in order). After every (re)subscription it
// calls ready, so the caller can resync what it may have missed while
// disconnected. It returns when ctx ends or the client is closed.
func (c *Client) Subscribe(ctx context.Context, exchange string, handle func([]byte), ready func()) {
	for {
		conn, _, up := c.current()
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-c.closed:
				return
			case <-up:
				continue
			}
		}
		err := c.consume(ctx, conn, exchange, handle, ready)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-c.closed:
			return
		default:
		}
		if err != nil {
			c.log.Warn("subscription interrupted", "exchange", exchange, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (c *Client) consume(ctx context.Context, conn *amqp.Connection, exchange string, handle func([]byte), ready func()) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := declareFanout(ch, exchange); err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return err
	}
	if err := ch.QueueBind(q.Name, "", exchange, false, nil); err != nil {
		return err
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			handle(d.Body)
		}
	}
}

// Close closes the connection and stops reconnecting.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		if conn, _, _ := c.current(); conn != nil {
			err = conn.Close()
		}
		c.wg.Wait()
	})
	return err
}
