package backend

import (
	"slices"
	"testing"
)

// TestKeyIndex: a key's sessions form a list through Session.nextKey;
// removing any of them (head, middle, tail, twice) leaves the others, and
// the key leaves the map with its last session.
func TestKeyIndex(t *testing.T) {
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
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{keys: map[string]*Session{}}
			ss := []*Session{{id: 0, key: "u"}, {id: 1, key: "u"}, {id: 2, key: "u"}}
			other := &Session{id: 9, key: "v"}
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
			var got []int
			for s := n.keys["u"]; s != nil; s = s.nextKey {
				got = append(got, int(s.id))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("key u holds %v, want %v", got, tc.want)
			}
			if _, ok := n.keys["u"]; ok != (len(tc.want) > 0) {
				t.Fatalf("key u in the map: %v, want %v", ok, len(tc.want) > 0)
			}
			if n.keys["v"] != other || other.nextKey != nil || len(n.keys) > 2 {
				t.Fatalf("other keys disturbed: %v", n.keys)
			}
		})
	}
}
