package backend

import (
	"slices"
	"testing"

	"github.com/wsgate/wsgate/internal/keyhash"
)

// TestKeyIndex: a key's sessions form a list through Session.nextKey;
// removing any of them (head, middle, tail, twice) leaves the others, and
// the key's hash leaves the map with its last session. With every key
// hashing the same ("collide"), the keys share one list and each still
// finds exactly its own sessions.
func TestKeyIndex(t *testing.T) {
	for _, hash := range []struct {
		name string
		f    func(string) uint64
	}{
		{"seeded", keyhash.Of},
		{"collide", func(string) uint64 { return 7 }},
	} {
		for _, tc := range []struct {
			name   string
			remove []int // indexes into the sessions a, b, c (added in that order)
			want   []int
		}{
			{"none", nil, []int{0, 1, 2}},
			{"head", []int{2}, []int{0, 1}}, // the last added is the head
			{"middle", []int{1}, []int{0, 2}},
			{"tail", []int{0}, []int{1, 2}},
			{"twice", []int{1, 1}, []int{0, 2}},
			{"all", []int{0, 2, 1}, nil},
			{"indexed twice, removed once", []int{-1, 1}, []int{0, 2}}, // -1: index b again
		} {
			t.Run(hash.name+"/"+tc.name, func(t *testing.T) {
				n := &Node{keys: map[uint64]*Session{}, keyHash: hash.f}
				ss := []*Session{keyedSession(0, "u"), keyedSession(1, "u"), keyedSession(2, "u")}
				other := keyedSession(9, "v")
				for _, s := range append(slices.Clone(ss), other, &Session{id: 8, keyless: true}) {
					n.index(s)
				}
				for _, i := range tc.remove {
					if i < 0 {
						n.index(ss[1])
						continue
					}
					n.unindex(ss[i])
				}
				if got := keyed(n, "u"); !slices.Equal(got, tc.want) {
					t.Fatalf("key u holds %v, want %v", got, tc.want)
				}
				if got := keyed(n, "v"); !slices.Equal(got, []int{9}) {
					t.Fatalf("key v holds %v, want [9]", got)
				}
				wantLen := 2 // u and v
				if hash.name == "collide" || len(tc.want) == 0 {
					wantLen = 1
				}
				if len(n.keys) != wantLen {
					t.Fatalf("%d hashes in the map, want %d", len(n.keys), wantLen)
				}
			})
		}
	}
}

// keyed returns the ids of key's sessions in n's index, sorted.
func keyed(n *Node, key string) []int {
	var got []int
	for s := range n.keySessions(key) {
		got = append(got, int(s.id))
	}
	slices.Sort(got)
	return got
}

// keyedSession is a session of key with id, as an Open would make it.
func keyedSession(id uint32, key string) *Session {
	s := &Session{id: id}
	s.setStrings([]byte(key), []byte("127.0.0.1:1"), []byte("/ws/"+key))
	return s
}
