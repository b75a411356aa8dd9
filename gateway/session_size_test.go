package gateway

import (
	"testing"
	"unsafe"
)

// TestSessionSize guards the idle cost: every client holds one session,
// and 128 bytes is its allocator size class; a field that pushes it past
// that costs 16 bytes or more per idle client (docs/BENCHMARKS.md).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 128 {
		t.Fatalf("session is %d bytes, over its 128-byte size class: pack the new field into the padding", n)
	}
}
