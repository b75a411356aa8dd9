package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/zeebo/xxh3"
)

func nodes(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%d", i), Addr: fmt.Sprintf("10.0.0.%d:9000", i)}
	}
	return ms
}

func mustNew(t testing.TB, ms []Member, opts ...Option) *Ring {
	t.Helper()
	r, err := New(ms, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// forKeys calls f with the deterministic keys "user-0" .. "user-(n-1)". The
// slice is reused between calls.
func forKeys(n int, f func(key []byte)) {
	buf := []byte("user-")
	for i := range n {
		f(strconv.AppendInt(buf[:5], int64(i), 10))
	}
}

func TestDefaultBalance(t *testing.T) {
	const keys = 1_000_000
	r := mustNew(t, nodes(8))
	counts := map[string]int{}
	forKeys(keys, func(k []byte) { counts[r.Lookup(k).ID]++ })
	mean := float64(keys) / 8
	hi, lo := 0, keys
	for _, c := range counts {
		hi, lo = max(hi, c), min(lo, c)
	}
	t.Logf("vnodes=%d: max %+.2f%%, min %+.2f%% of mean", DefaultVirtualNodes,
		100*(float64(hi)/mean-1), 100*(float64(lo)/mean-1))
	if float64(hi) > 1.1*mean {
		t.Errorf("most loaded member has %d keys, more than 10%% above the mean %.0f", hi, mean)
	}
}

func TestAddMovesOnlyToNewNode(t *testing.T) {
	const keys = 200_000
	for _, n := range []int{1, 3, 8, 16, 64} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ms := nodes(n + 1)
			old := mustNew(t, ms[:n])
			nr, err := old.With(ms[n])
			if err != nil {
				t.Fatal(err)
			}
			moved := 0
			forKeys(keys, func(k []byte) {
				if a, b := old.Lookup(k), nr.Lookup(k); a.ID != b.ID {
					moved++
					if b.ID != ms[n].ID {
						t.Fatalf("key %s moved %s -> %s, not to the new node", k, a.ID, b.ID)
					}
				}
			})
			ideal := float64(keys) / float64(n+1)
			if dev := float64(moved)/ideal - 1; dev < -0.1 || dev > 0.1 {
				t.Errorf("moved %d keys, ideal %.0f (%+.1f%%)", moved, ideal, 100*dev)
			}
		})
	}
}

func TestRemoveMovesOnlyRemovedKeys(t *testing.T) {
	for _, n := range []int{2, 8, 64} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			old := mustNew(t, nodes(n))
			gone := nodes(n)[n/2].ID
			nr := old.Without(gone)
			if nr.Len() != n-1 || nr.Member(gone) != nil {
				t.Fatalf("Without(%q) left %d members", gone, nr.Len())
			}
			forKeys(100_000, func(k []byte) {
				a, b := old.Lookup(k), nr.Lookup(k)
				if (a.ID == gone) != (a.ID != b.ID) {
					t.Fatalf("key %s: %s -> %s after removing %s", k, a.ID, b.ID, gone)
				}
			})
		})
	}
}

func TestWeights(t *testing.T) {
	ms := nodes(4)
	ms[0].Weight = 2
	r := mustNew(t, ms)
	if w := r.Member(ms[0].ID).Weight; w != 2 {
		t.Fatalf("weight %d, want 2", w)
	}
	const keys = 500_000
	counts := map[string]int{}
	forKeys(keys, func(k []byte) { counts[r.Lookup(k).ID]++ })
	unit := float64(keys) / 5
	for _, m := range ms {
		want := unit * float64(max(m.Weight, 1))
		if dev := float64(counts[m.ID])/want - 1; dev < -0.1 || dev > 0.1 {
			t.Errorf("%s (weight %d): %d keys, want about %.0f (%+.1f%%)", m.ID, m.Weight, counts[m.ID], want, 100*dev)
		}
	}

	// Weights <= 0 mean 1.
	ms = nodes(3)
	one := mustNew(t, ms)
	ms[0].Weight, ms[1].Weight, ms[2].Weight = 0, -5, 1
	norm := mustNew(t, ms)
	if one.Version() != norm.Version() {
		t.Error("weights 0 and -5 do not behave as 1")
	}
	for _, m := range norm.Members() {
		if m.Weight != 1 {
			t.Errorf("%s: normalised weight %d", m.ID, m.Weight)
		}
	}
}

func TestInsertionOrderIndependent(t *testing.T) {
	ms := nodes(20)
	ms[3].Weight = 3
	ref := mustNew(t, ms, WithVirtualNodes(200))
	rng := rand.New(rand.NewPCG(7, 7))
	for range 5 {
		rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		r := mustNew(t, ms, WithVirtualNodes(200))
		if r.Version() != ref.Version() {
			t.Fatal("Version depends on member order")
		}
		if !slices.Equal(r.points, ref.points) || !slices.Equal(r.owners, ref.owners) ||
			!slices.Equal(r.Members(), ref.Members()) {
			t.Fatal("ring layout depends on member order")
		}
		forKeys(10_000, func(k []byte) {
			if r.Lookup(k).ID != ref.Lookup(k).ID {
				t.Fatalf("key %s: owner depends on member order", k)
			}
		})
	}
	if !slices.IsSortedFunc(ref.Members(), func(a, b Member) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("Members not sorted by ID")
	}
}

func TestVersion(t *testing.T) {
	base := mustNew(t, nodes(4))
	if base.Version() != mustNew(t, nodes(4)).Version() {
		t.Fatal("equal member sets, different versions")
	}
	addr := nodes(4)
	addr[2].Addr = "elsewhere:1"
	weight := nodes(4)
	weight[1].Weight = 2
	renamed := nodes(4)
	renamed[0].ID = "node-x"
	for name, r := range map[string]*Ring{
		"addr":    mustNew(t, addr),
		"weight":  mustNew(t, weight),
		"id":      mustNew(t, renamed),
		"vnodes":  mustNew(t, nodes(4), WithVirtualNodes(100)),
		"members": mustNew(t, nodes(3)),
		"empty":   mustNew(t, nil),
	} {
		if r.Version() == base.Version() {
			t.Errorf("changing %s does not change Version", name)
		}
	}
	// Field boundaries are unambiguous.
	a := mustNew(t, []Member{{ID: "ab", Addr: "c"}})
	b := mustNew(t, []Member{{ID: "a", Addr: "bc"}})
	if a.Version() == b.Version() {
		t.Error("Version confuses ID and Addr boundaries")
	}
}

func TestOwnerChanged(t *testing.T) {
	ms := nodes(9)
	old := mustNew(t, ms[:8])
	nr := mustNew(t, ms)
	key := []byte("user-1")
	if OwnerChanged(nil, nil, key) || OwnerChanged(nil, mustNew(t, nil), key) {
		t.Error("empty -> empty reported as a change")
	}
	if !OwnerChanged(nil, old, key) || !OwnerChanged(old, nil, key) {
		t.Error("empty <-> non-empty not reported as a change")
	}
	changed := 0
	forKeys(20_000, func(k []byte) {
		if OwnerChanged(old, old, k) {
			t.Fatalf("key %s changed within one ring", k)
		}
		got := OwnerChanged(old, nr, k)
		if want := old.Lookup(k).ID != nr.Lookup(k).ID; got != want {
			t.Fatalf("key %s: OwnerChanged = %v, want %v", k, got, want)
		}
		if got {
			changed++
		}
	})
	if changed == 0 {
		t.Error("adding a node changed no owners")
	}
	// Same members, different Addr: owners do not change.
	moved := slices.Clone(ms)
	moved[0].Addr = "other:1"
	if OwnerChanged(nr, mustNew(t, moved), []byte(ms[0].ID+"#0")) {
		t.Error("an Addr change changed the owner")
	}
}

func TestNewErrors(t *testing.T) {
	many := make([]Member, MaxMembers+1)
	tests := []struct {
		name    string
		members []Member
		opts    []Option
		want    error
	}{
		{"empty ID", []Member{{ID: "a"}, {ID: ""}}, nil, ErrEmptyID},
		{"duplicate ID", []Member{{ID: "a"}, {ID: "b"}, {ID: "a", Addr: "x"}}, nil, ErrDuplicateID},
		{"weight too large", []Member{{ID: "a", Weight: MaxWeight + 1}}, nil, ErrWeight},
		{"zero vnodes", []Member{{ID: "a"}}, []Option{WithVirtualNodes(0)}, ErrVirtualNodes},
		{"negative vnodes", nil, []Option{WithVirtualNodes(-1)}, ErrVirtualNodes},
		{"too many vnodes", nil, []Option{WithVirtualNodes(MaxVirtualNodes + 1)}, ErrVirtualNodes},
		{"too many points", []Member{{ID: "a", Weight: MaxWeight}, {ID: "b", Weight: MaxWeight}},
			[]Option{WithVirtualNodes(MaxVirtualNodes)}, ErrTooManyPoints},
		{"too many members", many, []Option{WithVirtualNodes(1)}, ErrTooManyMembers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.members, tt.opts...)
			if !errors.Is(err, tt.want) || r != nil {
				t.Fatalf("New = %v, %v; want error %v", r, err, tt.want)
			}
		})
	}
	if _, err := New([]Member{{ID: "a", Weight: MaxWeight}}, WithVirtualNodes(1)); err != nil {
		t.Errorf("weight %d rejected: %v", MaxWeight, err)
	}
}

func TestEmptyAndNil(t *testing.T) {
	var h Handle
	for name, r := range map[string]*Ring{"nil": nil, "loaded": h.Load(), "empty": mustNew(t, nil)} {
		if r.Lookup([]byte("k")) != nil || r.LookupString("k") != nil || r.Member("k") != nil ||
			r.Len() != 0 || len(r.Members()) != 0 {
			t.Errorf("%s ring is not empty", name)
		}
	}
}

func TestWithWithout(t *testing.T) {
	r := mustNew(t, nodes(4), WithVirtualNodes(64))
	if r.Without("absent") != r {
		t.Error("Without(absent) built a new ring")
	}
	up, err := r.With(Member{ID: "node-1", Addr: "new:1", Weight: 3})
	if err != nil {
		t.Fatal(err)
	}
	if m := up.Member("node-1"); up.Len() != 4 || m.Addr != "new:1" || m.Weight != 3 {
		t.Fatalf("With did not replace node-1: %d members, %+v", up.Len(), m)
	}
	if r.Member("node-1").Addr != nodes(4)[1].Addr {
		t.Fatal("With modified the original ring")
	}
	if len(up.points) != 6*64 {
		t.Errorf("With lost the options: %d points", len(up.points))
	}
	back, err := r.Without("node-2").With(nodes(4)[2])
	if err != nil {
		t.Fatal(err)
	}
	if back.Version() != r.Version() || !slices.Equal(back.points, r.points) {
		t.Error("Without then With did not restore the ring")
	}
	if _, err := r.With(Member{ID: "x", Weight: MaxWeight + 1}); !errors.Is(err, ErrWeight) {
		t.Errorf("With(invalid) = %v", err)
	}
	var empty *Ring
	if one, err := empty.With(Member{ID: "a"}); err != nil || one.Len() != 1 || len(one.points) != DefaultVirtualNodes {
		t.Errorf("nil.With = %v, %v", one, err)
	}
	if empty.Without("a") != nil {
		t.Error("nil.Without is not nil")
	}
}

func TestHandle(t *testing.T) {
	var h Handle
	a, b := mustNew(t, nodes(2)), mustNew(t, nodes(3))
	if prev := h.Store(a); prev != nil {
		t.Errorf("first Store returned %p", prev)
	}
	if prev := h.Store(b); prev != a || h.Load() != b {
		t.Error("Store/Load mismatch")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			h.Store([]*Ring{a, b}[i%2])
		}
	}()
	for range 10_000 {
		if m := h.Load().LookupString("user-1"); m == nil {
			t.Fatal("nil owner")
		}
	}
	<-done
}

func TestNoAllocs(t *testing.T) {
	r := mustNew(t, nodes(8))
	nr := mustNew(t, nodes(9))
	key := []byte("user-42")
	var sink *Member
	for name, f := range map[string]func(){
		"Lookup":       func() { sink = r.Lookup(key) },
		"LookupString": func() { sink = r.LookupString("user-42") },
		"Member":       func() { sink = r.Member("node-3") },
		"OwnerChanged": func() { _ = OwnerChanged(r, nr, key) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s allocates %.0f times", name, n)
		}
	}
	_ = sink
}

// TestSearchBoundaries checks the prefix-table search against sort.Search at
// and around every point, and at the ends of the hash space.
func TestSearchBoundaries(t *testing.T) {
	for _, n := range []int{1, 2, 5, 64} {
		r := mustNew(t, nodes(n), WithVirtualNodes(37))
		ref := func(h uint64) int {
			i := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
			if i == len(r.points) {
				i = 0
			}
			return i
		}
		hs := []uint64{0, 1, 1 << 63, ^uint64(0) - 1, ^uint64(0)}
		for _, p := range r.points {
			hs = append(hs, p-1, p, p+1)
		}
		for _, h := range hs {
			if got, want := r.search(h), ref(h); got != want {
				t.Fatalf("n=%d: search(%#x) = %d, want %d", n, h, got, want)
			}
		}
	}
}

// TestRandomRings compares lookups on random member sets with a brute-force
// model built straight from the documented point definition.
func TestRandomRings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 50 {
		ms := make([]Member, rng.IntN(12))
		for i := range ms {
			ms[i] = Member{ID: fmt.Sprintf("m%d-%x", iter, rng.Uint32()), Weight: rng.IntN(4) - 1}
		}
		vn := 1 + rng.IntN(40)
		r := mustNew(t, ms, WithVirtualNodes(vn))

		type pt struct {
			h  uint64
			id string
		}
		var pts []pt
		for _, m := range ms {
			for v := range max(m.Weight, 1) * vn {
				pts = append(pts, pt{xxh3.HashString(fmt.Sprintf("%s#%d", m.ID, v)), m.ID})
			}
		}
		model := func(key string) string {
			h := xxh3.HashString(key)
			best, first := -1, -1
			less := func(a, b pt) bool { return a.h < b.h || a.h == b.h && a.id < b.id }
			for i, p := range pts {
				if first < 0 || less(p, pts[first]) {
					first = i
				}
				if p.h >= h && (best < 0 || less(p, pts[best])) {
					best = i
				}
			}
			if best < 0 {
				best = first
			}
			if best < 0 {
				return ""
			}
			return pts[best].id
		}

		keys := []string{"", "x"}
		for range 200 {
			keys = append(keys, fmt.Sprintf("user-%d", rng.Uint64()))
		}
		for _, m := range ms { // keys that hash exactly onto a point
			keys = append(keys, m.ID+"#0", fmt.Sprintf("%s#%d", m.ID, vn-1))
		}
		for _, k := range keys {
			got := ""
			if m := r.LookupString(k); m != nil {
				got = m.ID
			}
			if want := model(k); got != want {
				t.Fatalf("iter %d, key %q: owner %q, model says %q", iter, k, got, want)
			}
		}
	}
}
