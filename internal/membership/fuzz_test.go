package membership

import "testing"

// FuzzDecodeEvent: any broker payload is decoded or refused, never a
// panic; what is accepted is a valid node and survives a round trip.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(EncodeEvent(Event{Type: Join, Node: Node{ID: "b1", Addr: "10.0.0.1:9000", Weight: 2}}))
	f.Add([]byte(`{"v":1,"type":"leave","node":{"id":"x","addr":"h:1"}}`))
	f.Add([]byte(`{"v":2,"type":"join","node":{"id":"x","addr":"h:1"}}`))
	f.Add([]byte(`{"v":1,"type":"join","node":{"id":"","addr":"h"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err != nil {
			return
		}
		if err := ev.Node.Validate(); err != nil {
			t.Fatalf("accepted an invalid node %+v: %v", ev.Node, err)
		}
		again, err := DecodeEvent(EncodeEvent(ev))
		if err != nil || again != ev {
			t.Fatalf("round trip: %+v -> %+v, %v", ev, again, err)
		}
	})
}

// FuzzVerifier: signed events and registry entries are checked or refused,
// never a panic; nothing without the right MAC is ever accepted.
func FuzzVerifier(f *testing.F) {
	secret := []byte("fuzz-cluster-secret-0123456789ab")
	s := NewSigner(secret)
	n := Node{ID: "b1", Addr: "10.0.0.1:9000", Weight: 1}
	f.Add(s.Encode(Event{Type: Join, Node: n}))
	f.Add(s.EncodeNode(n))
	f.Add(NewSigner([]byte("another-secret-0123456789abcdefg")).Encode(Event{Type: Leave, Node: n}))
	f.Add([]byte(`{"v":1,"type":"leave","node":{"id":"x","addr":"h:1"},"mac":"!!"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v := NewVerifier(secret)
		if ev, err := v.Decode(b); err == nil {
			if err := ev.Node.Validate(); err != nil {
				t.Fatalf("accepted an invalid node: %v", err)
			}
		}
		if nd, err := v.DecodeNode(b); err == nil {
			if err := nd.Validate(); err != nil {
				t.Fatalf("accepted an invalid registry node: %v", err)
			}
		}
		// With another secret, nothing verifies.
		w := NewVerifier([]byte("not-the-secret-0123456789abcdefgh"))
		if _, err := w.Decode(b); err == nil {
			t.Fatalf("accepted with the wrong secret: %s", b)
		}
		if _, err := w.DecodeNode(b); err == nil {
			t.Fatalf("registry entry accepted with the wrong secret: %s", b)
		}
	})
}
