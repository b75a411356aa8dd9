package membership

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSignedEvents(t *testing.T) {
	secret := []byte("cluster-secret-0123456789abcdef")
	node := Node{ID: "b1", Addr: "10.0.0.7:9000", Weight: 1}
	s := NewSigner(secret)
	v := NewVerifier(secret)

	join := s.Encode(Event{Type: Join, Node: node})
	if ev, err := v.Decode(join); err != nil || ev.Type != Join || ev.Node != node {
		t.Fatalf("signed join: %+v %v", ev, err)
	}
	leave := s.Encode(Event{Type: Leave, Node: node})

	// Each bad event is dropped with its reason.
	forgeType := strings.Replace(string(s.Encode(Event{Type: Heartbeat, Node: node})), `"heartbeat"`, `"leave"`, 1)
	forgeAddr := strings.Replace(string(s.Encode(Event{Type: Join, Node: node})), "10.0.0.7:9000", "10.6.6.6:9000", 1)
	otherKey := NewSigner([]byte("not-the-cluster-secret-01234567")).Encode(Event{Type: Leave, Node: node})
	var stalePayload payload
	_ = json.Unmarshal(s.Encode(Event{Type: Leave, Node: node}), &stalePayload)
	stalePayload.At -= (EventWindow + time.Minute).Milliseconds()
	stalePayload.Seq = s.seq.Add(1)
	stalePayload.MAC = ""
	stale := signedAgain(secret, stalePayload)
	for _, tc := range []struct {
		name, reason string
		b            []byte
	}{
		{"unsigned", DropUnsigned, EncodeEvent(Event{Type: Leave, Node: node})},
		{"type changed", DropForged, []byte(forgeType)},
		{"address changed", DropForged, []byte(forgeAddr)},
		{"other secret", DropForged, otherKey},
		{"stale", DropStale, stale},
		{"replayed", DropReplayed, join},
		{"garbage", DropInvalid, []byte("{")},
	} {
		before := v.Dropped()[tc.reason]
		if _, err := v.Decode(tc.b); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
		if v.Dropped()[tc.reason] != before+1 {
			t.Errorf("%s: not counted as %s (%v)", tc.name, tc.reason, v.Dropped())
		}
	}
	// The genuine leave, newer than the join, is still good.
	if ev, err := v.Decode(leave); err != nil || ev.Type != Leave {
		t.Fatalf("signed leave after the attempts: %+v %v", ev, err)
	}
	// A restarted sender (a new signer) is above the old sequence.
	if _, err := v.Decode(NewSigner(secret).Encode(Event{Type: Join, Node: node})); err != nil {
		t.Fatalf("restarted sender: %v", err)
	}
}

func signedAgain(secret []byte, p payload) []byte {
	p.MAC = eventMAC(secret, &p)
	b, _ := json.Marshal(p)
	return b
}
