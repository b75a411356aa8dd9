package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/internal/seal"
)

// Signed membership events (docs/protocol.md 9.1). With a cluster secret,
// every event carries a per-sender sequence number and an HMAC-SHA256 over
// its content, time and sequence; receivers drop anything unsigned, forged,
// stale (its time outside EventWindow of theirs) or replayed (a sequence
// not above the last one seen from that node), and count it by reason. So
// someone who can publish on the exchange but lacks the secret can neither
// invent a join or leave nor replay a recorded one.

// EventWindow is how far an event's time may be from the receiver's clock.
const EventWindow = 30 * time.Second

// Reasons an event is dropped (Verifier.Dropped).
const (
	DropUnsigned = "unsigned"
	DropForged   = "forged"
	DropStale    = "stale"
	DropReplayed = "replayed"
	DropInvalid  = "invalid"
)

// Signer signs the events of one sender. Safe for concurrent use.
type Signer struct {
	secret []byte
	seq    atomic.Uint64
}

// NewSigner returns a signer; its sequence starts at the current time in
// nanoseconds, so that a restarted node's events are above its old ones.
func NewSigner(secret []byte) *Signer {
	s := &Signer{secret: secret}
	s.seq.Store(seal.FirstSeq())
	return s
}

// Encode returns ev as a signed JSON payload.
func (s *Signer) Encode(ev Event) []byte {
	p := payload{V: EventVersion, Type: ev.Type, Node: ev.Node, At: time.Now().UnixMilli(), Seq: s.seq.Add(1)}
	p.MAC = eventMAC(s.secret, &p)
	b, _ := json.Marshal(p)
	return b
}

// eventMAC is the MAC of an event's signed fields (docs/protocol.md 9.1).
func eventMAC(secret []byte, p *payload) string {
	return seal.MAC(secret, "wsgate-event-v1", []string{string(p.Type), p.Node.ID, p.Node.Addr},
		uint64(int64(p.Node.Weight)), uint64(p.At), p.Seq)
}

// Verifier checks signed events and registry entries for one receiver.
// Safe for concurrent use.
type Verifier struct {
	secret []byte
	guard  *seal.Guard // sequences by node id; drops by reason
}

// NewVerifier returns a verifier for secret.
func NewVerifier(secret []byte) *Verifier {
	return &Verifier{secret: secret, guard: seal.NewGuard(EventWindow)}
}

// Decode parses and checks a signed payload. A dropped event is counted by
// reason and returned as an error naming it.
func (v *Verifier) Decode(b []byte) (Event, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return Event{}, v.drop(DropInvalid, fmt.Errorf("membership: bad event: %w", err))
	}
	ev, err := p.event()
	if err != nil {
		return Event{}, v.drop(DropInvalid, err)
	}
	if p.MAC == "" {
		return Event{}, v.drop(DropUnsigned, errors.New("membership: unsigned event (the cluster has a secret)"))
	}
	if !seal.Equal(p.MAC, eventMAC(v.secret, &p)) {
		return Event{}, v.drop(DropForged, fmt.Errorf("membership: forged %s event for %s", p.Type, p.Node.ID))
	}
	if d := v.guard.Off(p.At, 0); d != 0 {
		return Event{}, v.drop(DropStale, fmt.Errorf("membership: stale %s event for %s (%v off)", p.Type, p.Node.ID, d.Round(time.Second)))
	}
	if !v.guard.Next(p.Node.ID, p.Seq, DropReplayed) {
		return Event{}, fmt.Errorf("membership: replayed %s event for %s", p.Type, p.Node.ID)
	}
	return ev, nil
}

func (v *Verifier) drop(reason string, err error) error {
	v.guard.Drop(reason)
	return err
}

// Dropped returns the number of events and entries dropped, by reason.
func (v *Verifier) Dropped() map[string]uint64 { return v.guard.Dropped() }

// Signed registry entries (docs/protocol.md 9.3). The registry holds state,
// not events: an entry is re-read on every reconcile, so it is checked for
// its signature and its age (RegistryMaxAge: a node refreshes its entry
// every heartbeat), not for replay.

// RegistryMaxAge is the oldest a signed registry entry may be (plus
// EventWindow for clock skew).
const RegistryMaxAge = time.Minute

// Reasons a registry entry is dropped (Verifier.Dropped).
const (
	DropRegistryUnsigned = "registry_unsigned"
	DropRegistryForged   = "registry_forged"
	DropRegistryStale    = "registry_stale"
)

// DropReasons lists every reason Verifier.Dropped may count.
var DropReasons = []string{DropUnsigned, DropForged, DropStale, DropReplayed, DropInvalid,
	DropRegistryUnsigned, DropRegistryForged, DropRegistryStale}

// nodeEntry is a signed registry entry: the node's JSON fields, its time
// and MAC.
type nodeEntry struct {
	Node
	At  int64  `json:"at,omitempty"`
	MAC string `json:"mac,omitempty"`
}

// nodeMAC is the MAC of a registry entry (docs/protocol.md 9.3).
func nodeMAC(secret []byte, e *nodeEntry) string {
	return seal.MAC(secret, "wsgate-node-v1", []string{e.ID, e.Addr}, uint64(int64(e.Weight)), uint64(e.At))
}

// EncodeNode returns n as a signed registry entry.
func (s *Signer) EncodeNode(n Node) []byte {
	e := nodeEntry{Node: n, At: time.Now().UnixMilli()}
	e.MAC = nodeMAC(s.secret, &e)
	b, _ := json.Marshal(e)
	return b
}

// DecodeNode parses and checks a signed registry entry; a dropped one is
// counted by reason and returned as an error naming it.
func (v *Verifier) DecodeNode(b []byte) (Node, error) {
	var e nodeEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return Node{}, v.drop(DropInvalid, fmt.Errorf("membership: bad registry entry: %w", err))
	}
	if err := e.Node.Validate(); err != nil {
		return Node{}, v.drop(DropInvalid, err)
	}
	if e.MAC == "" {
		return Node{}, v.drop(DropRegistryUnsigned, fmt.Errorf("membership: unsigned registry entry for %s", e.ID))
	}
	if !seal.Equal(e.MAC, nodeMAC(v.secret, &e)) {
		return Node{}, v.drop(DropRegistryForged, fmt.Errorf("membership: forged registry entry for %s", e.ID))
	}
	if d := v.guard.Off(e.At, RegistryMaxAge); d != 0 {
		return Node{}, v.drop(DropRegistryStale, fmt.Errorf("membership: stale registry entry for %s (%v old)", e.ID, d.Round(time.Second)))
	}
	return e.Node, nil
}
