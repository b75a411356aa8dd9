package ring

import (
	"math"

	"github.com/zeebo/xxh3"
)

// Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with
// Bounded Loads", 2016; HAProxy's hash-balance-factor): with a balance
// factor c > 1 no member takes more than ceil(c × its weight's share of the
// load). A key whose owner is full walks clockwise to the next member with
// room, so keys still move little when members change. The ring stays a
// pure function of its members: loads live with the caller, which asks
// LookupBounded with an admit function over member indexes.

// FactorScale is the resolution of a balance factor: Capacity keeps c in
// thousandths, so that capacities are exact integers.
const FactorScale = 1000

// Capacity returns the most clients member i (in MemberAt order) may hold
// with balance factor c when total clients, the one being placed included,
// are spread over r: ceil(c × total × weight_i / the ring's total weight),
// c taken to three decimals. It does not allocate.
func (r *Ring) Capacity(i int, c float64, total int64) int64 {
	if r.weight == 0 {
		return 0
	}
	num := int64(math.Round(c*FactorScale)) * max(total, 0) * int64(r.members[i].Weight)
	den := FactorScale * r.weight
	return (num + den - 1) / den
}

// LookupBounded returns the owner of key under bounded loads: walking
// clockwise from the key's point, the first member whose index (MemberAt
// order) admit accepts. admit is asked once per member (on rings of more
// than 256 members a member may be asked again), so it may reserve room
// when it accepts. If admit accepts none, LookupBounded returns the plain
// owner (Lookup's) and false. It does not allocate if admit does not; on an
// empty ring it returns nil and false.
func (r *Ring) LookupBounded(key []byte, admit func(i int) bool) (*Member, bool) {
	if r == nil || len(r.points) == 0 {
		return nil, false
	}
	return r.walk(xxh3.Hash(key), admit)
}

// LookupBoundedString is LookupBounded for a string key.
func (r *Ring) LookupBoundedString(key string, admit func(i int) bool) (*Member, bool) {
	if r == nil || len(r.points) == 0 {
		return nil, false
	}
	return r.walk(xxh3.HashString(key), admit)
}

// seen is a small set of member indexes, on the stack: members below
// seenMax are remembered, others never are.
type seen [4]uint64

const seenMax = 256

func (s *seen) add(i uint16) bool {
	if i >= seenMax {
		return true
	}
	w, b := i/64, uint64(1)<<(i%64)
	if s[w]&b != 0 {
		return false
	}
	s[w] |= b
	return true
}

func (r *Ring) walk(h uint64, admit func(i int) bool) (*Member, bool) {
	start := r.search(h)
	var asked seen
	n := 0
	for step, p := 0, start; step < len(r.points); step++ {
		o := r.owners[p]
		if asked.add(o) {
			if admit(int(o)) {
				return &r.members[o], true
			}
			if n++; n == len(r.members) && len(r.members) <= seenMax {
				break // every member said no
			}
		}
		if p++; p == len(r.points) {
			p = 0
		}
	}
	return &r.members[r.owners[start]], false
}

// Displaced reports whether a client of key placed on member id under
// bounded loads must move when the ring changes from old to new: id is not
// in new, or key's clockwise walk in new meets, before id, a member that
// its walk in old did not meet before id (a member that joined, or whose
// weight grew, now comes first). Members the walk passed over may leave,
// and loads may change, without moving the client. For a client on its
// plain owner under old (every client, with bounded loads off) it equals
// OwnerChanged. It does not allocate.
func Displaced(old, new *Ring, key, id string) bool {
	if new.Member(id) == nil {
		return true
	}
	h := xxh3.HashString(key)
	var checked seen
	for p := new.search(h); new.members[new.owners[p]].ID != id; {
		o := new.owners[p]
		if checked.add(o) && !old.before(h, new.members[o].ID, id) {
			return true
		}
		if p++; p == len(new.points) {
			p = 0
		}
	}
	return false
}

// before reports whether the walk from hash h meets member a before member
// b on r. A member not on r is never met.
func (r *Ring) before(h uint64, a, b string) bool {
	if r.Member(a) == nil {
		return false
	}
	for p := r.search(h); ; {
		switch r.members[r.owners[p]].ID {
		case a:
			return true
		case b:
			return false
		}
		if p++; p == len(r.points) {
			p = 0
		}
	}
}
