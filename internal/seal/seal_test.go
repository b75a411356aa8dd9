package seal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"
)

// TestMACLayout pins the signed bytes that docs/protocol.md 9 documents.
func TestMACLayout(t *testing.T) {
	secret := []byte("k")
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("dom"))
	m.Write([]byte{0, 0, 0, 2, 'a', 'b', 0, 0, 0, 0})
	m.Write([]byte{0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 0})
	want := base64.RawStdEncoding.EncodeToString(m.Sum(nil))
	if got := MAC(secret, "dom", []string{"ab", ""}, 7, 256); got != want {
		t.Fatalf("MAC %s, want %s", got, want)
	}
	if MAC(secret, "dom", []string{"a", "b"}, 7, 256) == want || MAC(secret, "dom2", []string{"ab", ""}, 7, 256) == want {
		t.Fatal("a different message has the same MAC")
	}
	if !Equal(want, want) || Equal(want, want[1:]) {
		t.Fatal("Equal")
	}
}

func TestGuard(t *testing.T) {
	g := NewGuard(30 * time.Second)
	now := time.Now()
	for _, tc := range []struct {
		at     time.Time
		maxAge time.Duration
		fresh  bool
	}{
		{now, 0, true},
		{now.Add(-29 * time.Second), 0, true},
		{now.Add(-31 * time.Second), 0, false},
		{now.Add(31 * time.Second), 0, false},
		{now.Add(-80 * time.Second), time.Minute, true},
		{now.Add(-100 * time.Second), time.Minute, false},
	} {
		if fresh := g.Off(tc.at.UnixMilli(), tc.maxAge) == 0; fresh != tc.fresh {
			t.Errorf("at %v, max age %v: fresh %v, want %v", now.Sub(tc.at), tc.maxAge, fresh, tc.fresh)
		}
	}
	if !g.Next("a", 5, "replayed") || g.Next("a", 5, "replayed") || g.Next("a", 4, "replayed") || !g.Next("b", 1, "replayed") || !g.Next("a", 6, "replayed") {
		t.Fatal("sequence checks")
	}
	g.Drop("forged")
	if d := g.Dropped(); d["replayed"] != 2 || d["forged"] != 1 {
		t.Fatalf("dropped %v", d)
	}
}
