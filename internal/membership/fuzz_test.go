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
