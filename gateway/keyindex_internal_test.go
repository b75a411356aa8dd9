package gateway

import (
	"strconv"
	"testing"

	"github.com/wsgate/wsgate/internal/wire"
)

// TestSendKeyCollidingKeys: loop.byKey is keyed by the key's hash, so two
// keys may share a list; a push (SendKey) to one key reaches its clients
// and no client of a key that collides with it, and a removed session
// leaves the other key's list whole.
func TestSendKeyCollidingKeys(t *testing.T) {
	l := testLoop(t, nil)
	l.keyHash = func(string) uint64 { return 1 } // every key collides
	var keys []string
	for i := 0; len(keys) < 2; i++ { // two keys on node a: one link, one list
		if key := "k" + strconv.Itoa(i); l.g.ring.Load().LookupString(key).ID == "a" {
			keys = append(keys, key)
		}
	}
	s1, c1 := openSession(l, keys[0])
	_, c1b := openSession(l, keys[0])
	_, c2 := openSession(l, keys[1])
	push := func(key string) {
		t.Helper()
		body := append([]byte{0, byte(len(key))}, key...)
		body = append(body, "push"...)
		if err := l.linkFrame(l.links["a"], wire.Header{Type: wire.TypeSendKey, BodyLen: len(body)}, body); err != nil {
			t.Fatal(err)
		}
	}
	push(keys[0])
	if len(c1.out) == 0 || len(c1b.out) != len(c1.out) || len(c2.out) != 0 {
		t.Fatalf("push to %s: its clients got %d and %d bytes, %s's client %d (want equal, nonzero, and 0)",
			keys[0], len(c1.out), len(c1b.out), keys[1], len(c2.out))
	}
	l.removeKey(s1)
	before := len(c2.out)
	push(keys[1])
	if len(c2.out) == before {
		t.Fatalf("push to %s after a colliding session left: not delivered", keys[1])
	}
}
