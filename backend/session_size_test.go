package backend

import (
	"testing"
	"unsafe"
)

// TestSessionSize: every idle client costs a Session on its node; a new
// field must go into the padding rather than push the struct into the next
// size class (144 bytes).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 128 {
		t.Fatalf("Session is %d bytes, over its 128-byte size class: pack the new field into the padding", n)
	}
}

// TestSessionStrings: the key, address and target share one string and
// come back apart, empty ones too.
func TestSessionStrings(t *testing.T) {
	for _, tc := range [][3]string{
		{"user-1", "127.0.0.1:5000", "/ws/user-1?userId=user-1"},
		{"", "[::1]:80", "/ws"},
		{"k", "", ""},
		{"", "", ""},
	} {
		var s Session
		s.setStrings([]byte(tc[0]), []byte(tc[1]), []byte(tc[2]))
		if got := [3]string{s.Key(), s.RemoteAddr(), s.Target()}; got != tc {
			t.Errorf("setStrings%q: got %q", tc, got)
		}
	}
}
