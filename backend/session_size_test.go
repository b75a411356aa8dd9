package backend

import (
	"testing"
	"unsafe"
)

// TestSessionSize: every idle client costs a Session on its node; a new
// field must go into the padding rather than push the struct into the next
// size class (176 bytes).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 160 {
		t.Fatalf("Session is %d bytes, over its 160-byte size class: pack the new field into the padding", n)
	}
}
