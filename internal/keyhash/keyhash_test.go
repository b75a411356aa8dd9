package keyhash

import "testing"

// TestOf: the same key hashes the same; different keys (almost always)
// differently.
func TestOf(t *testing.T) {
	if Of("user-1") != Of("user-1") {
		t.Fatal("a key hashed two ways")
	}
	seen := map[uint64]string{}
	for i := range 10000 {
		k := "user-" + string(rune('a'+i%26)) + string(rune(i))
		if prev, ok := seen[Of(k)]; ok && prev != k {
			t.Fatalf("%q and %q collide", prev, k)
		}
		seen[Of(k)] = k
	}
}

func BenchmarkOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Of("user-123456")
	}
}
