package ring

import (
	"fmt"
	"sort"
	"strconv"
	"testing"

	"github.com/zeebo/xxh3"
)

func benchKeys() [][]byte {
	keys := make([][]byte, 1<<12)
	for i := range keys {
		keys[i] = []byte("user-" + strconv.Itoa(i*7919))
	}
	return keys
}

var sink *Member

func BenchmarkLookup(b *testing.B) {
	keys := benchKeys()
	for _, n := range []int{8, 64} {
		r := mustNew(b, nodes(n))
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sink = r.Lookup(keys[i&(len(keys)-1)])
				i++
			}
		})
	}
}

func BenchmarkLookupString(b *testing.B) {
	keys := benchKeys()
	skeys := make([]string, len(keys))
	for i, k := range keys {
		skeys[i] = string(k)
	}
	r := mustNew(b, nodes(64))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = r.LookupString(skeys[i&(len(skeys)-1)])
		i++
	}
}

// BenchmarkSearch compares the prefix-table search with a plain binary
// search over the same 64-member ring, excluding key hashing.
func BenchmarkSearch(b *testing.B) {
	r := mustNew(b, nodes(64))
	hs := make([]uint64, 1<<12)
	for i, k := range benchKeys() {
		hs[i] = xxh3.Hash(k)
	}
	var idx int
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			idx = r.search(hs[i&(len(hs)-1)])
			i++
		}
	})
	b.Run("sort.Search", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			h := hs[i&(len(hs)-1)]
			idx = sort.Search(len(r.points), func(j int) bool { return r.points[j] >= h })
			i++
		}
	})
	_ = idx
}

func BenchmarkNew(b *testing.B) {
	ms := nodes(64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(ms); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	keys := benchKeys()
	var h Handle
	h.Store(mustNew(b, nodes(64)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var m *Member
		i := 0
		for pb.Next() {
			m = h.Load().Lookup(keys[i&(len(keys)-1)])
			i++
		}
		_ = m
	})
}
