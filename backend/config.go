package backend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/internal/tlscert"
	"github.com/wsgate/wsgate/internal/wire"
)

// Defaults applied by NewNode to zero Config fields.
const (
	DefaultMaxMessage    = 16 << 20          // Config.MaxMessage: 16 MiB
	DefaultFragmentSize  = 64 << 10          // Config.FragmentSize: 64 KiB
	DefaultMaxLinkBuffer = 64 << 20          // Config.MaxLinkBuffer: 64 MiB
	DefaultKeepAlive     = wire.PingInterval // Config.PingInterval: 15 s, as the gateway's --keepalive

	DefaultMaxLinks        = 1024 // Config.MaxLinks
	DefaultMaxPendingLinks = 64   // Config.MaxPendingLinks
	// MaxPendingLinksPerSource is the most links one source address may
	// have in the Hello handshake at once (a starting gateway dials one per
	// event loop plus its control link, each done in a round trip), so that
	// a few silent sockets from one host cannot take every handshake slot
	// and lock the gateways out.
	MaxPendingLinksPerSource = 16
	DefaultMaxLinkReassembly = 64 << 20 // Config.MaxLinkReassembly: 64 MiB (at least MaxMessage)
)

// Config configures a Node. Zero values take the documented defaults.
type Config struct {
	// ID is the node id announced in Hello; required, at most
	// wire.MaxString bytes. The gateway routes keys to nodes by this id.
	ID string
	// Listen is the TCP address links are accepted on, e.g.
	// "127.0.0.1:0"; required.
	Listen string
	// MaxMessage is the largest reassembled client message accepted
	// (default 16 MiB); a larger one closes its session with 1009.
	MaxMessage int
	// FragmentSize: outgoing messages larger than this are split into
	// Message fragments of at most this many bytes (default 64 KiB; never
	// more than the gateway's announced MaxBody).
	FragmentSize int
	// Logger receives link-level events (default slog.Default()).
	Logger *slog.Logger

	// MaxLinkBuffer bounds the bytes queued on one link and not yet
	// handed to the kernel (default 64 MiB). A Send that would exceed it
	// fails with ErrBufferFull (a message is always accepted into an empty
	// buffer, so any size can be sent). Control frames ignore the bound.
	MaxLinkBuffer int
	// PingInterval is the keepalive interval: every link gets a Ping this
	// often, whatever else is sent (default DefaultKeepAlive, 15 s; the
	// same value as the gateways' --keepalive).
	PingInterval time.Duration
	// LinkTimeout: a link on which nothing was received for this long is
	// dropped (default wire.DeadIntervals x PingInterval, 45 s by default).
	// It also bounds one write.
	LinkTimeout time.Duration
	// HelloTimeout: a link whose Hello has not arrived this long after
	// accept is dropped (default wire.HelloTimeout, 10 s). It bounds the
	// whole handshake: a peer trickling bytes does not extend it.
	HelloTimeout time.Duration
	// ClusterSecret, when set, is the secret both ends of every link must
	// prove they hold (wire.LinkMAC, docs/protocol.md 4.9) before any session
	// frame: a peer that does not is answered with an Error and closed, and
	// counted (LinksRejected.BadAuth). The same secret goes to the gateways.
	ClusterSecret []byte
	// TLS, when set, makes the link listener speak TLS (mutual TLS with
	// ClientAuth tls.RequireAndVerifyClientCert and ClientCAs: a gateway
	// must show a certificate of the cluster's CA). The handshake runs
	// within HelloTimeout; a failure is counted as links rejected
	// "bad_tls". `wsgate backend --link-tls-*` builds it (LinkTLSConfig).
	TLS *tls.Config

	// MaxLinks is the most links the node holds at once, counting those
	// still in the Hello handshake (default 1024). A connection accepted
	// beyond it is closed at once, before anything is read from it, and
	// counted in Stats.LinksRejected.MaxLinks.
	MaxLinks int
	// MaxPendingLinks is the most links in the Hello handshake at once
	// (default 64), so that peers that connect and send nothing, or trickle
	// a Hello, cannot hold many descriptors for HelloTimeout each. A
	// connection accepted beyond it is closed at once and counted in
	// Stats.LinksRejected.MaxPending.
	MaxPendingLinks int
	// MaxLinkReassembly bounds the memory one link's sessions use for
	// fragmented client messages in progress (default 64 MiB, and at least
	// MaxMessage). A fragment that would take a link over it, once the
	// buffers of ended and idle sessions are reclaimed, closes its session
	// with 1013 "link reassembly limit" (like MaxMessage, the session fails,
	// not the link: the gateway relays many clients' fragments interleaved).
	MaxLinkReassembly int
}

// withDefaults validates c and fills in defaults. Errors name the field.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("backend: Config."+format, args...)) }
	switch {
	case c.ID == "":
		bad("ID is required")
	case len(c.ID) > wire.MaxString:
		bad("ID is %d bytes, more than %d", len(c.ID), wire.MaxString)
	}
	if c.Listen == "" {
		bad("Listen is required (e.g. \"127.0.0.1:0\")")
	}
	nonNeg := func(name string, v int64) {
		if v < 0 {
			bad("%s must not be negative (got %d)", name, v)
		}
	}
	nonNeg("MaxMessage", int64(c.MaxMessage))
	nonNeg("FragmentSize", int64(c.FragmentSize))
	nonNeg("MaxLinkBuffer", int64(c.MaxLinkBuffer))
	nonNeg("PingInterval", int64(c.PingInterval))
	nonNeg("LinkTimeout", int64(c.LinkTimeout))
	nonNeg("HelloTimeout", int64(c.HelloTimeout))
	nonNeg("MaxLinks", int64(c.MaxLinks))
	nonNeg("MaxPendingLinks", int64(c.MaxPendingLinks))
	nonNeg("MaxLinkReassembly", int64(c.MaxLinkReassembly))
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.FragmentSize == 0 {
		c.FragmentSize = DefaultFragmentSize
	}
	if c.MaxLinkBuffer == 0 {
		c.MaxLinkBuffer = DefaultMaxLinkBuffer
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultKeepAlive
	}
	if c.LinkTimeout == 0 {
		c.LinkTimeout = wire.DeadIntervals * c.PingInterval
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = wire.HelloTimeout
	}
	if c.MaxLinks == 0 {
		c.MaxLinks = DefaultMaxLinks
	}
	if c.MaxPendingLinks == 0 {
		c.MaxPendingLinks = DefaultMaxPendingLinks
	}
	if c.MaxLinkReassembly == 0 {
		c.MaxLinkReassembly = max(DefaultMaxLinkReassembly, c.MaxMessage)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LinkTimeout <= c.PingInterval {
		// The peer pings once per interval: a shorter bound drops live links.
		return c, fmt.Errorf("backend: Config.LinkTimeout %v must be longer than PingInterval %v", c.LinkTimeout, c.PingInterval)
	}
	if c.MaxLinkReassembly < c.MaxMessage {
		// One message could never be reassembled.
		return c, fmt.Errorf("backend: Config.MaxLinkReassembly %d must be at least MaxMessage %d", c.MaxLinkReassembly, c.MaxMessage)
	}
	return c, nil
}

// LinkTLSConfig builds Config.TLS for mutual TLS on links from PEM files:
// the node's certificate and key, and the CA that signs the gateways'
// certificates (`wsgate backend --link-tls-cert --link-tls-key
// --link-tls-ca`). TLS 1.3 only: both ends are wsgate. Errors name the flag.
func LinkTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("--link-tls-cert, --link-tls-key and --link-tls-ca go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--link-tls-cert %s / --link-tls-key %s: %w", certFile, keyFile, err)
	}
	cas, err := tlscert.CAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("--link-tls-ca: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
	}, nil
}
