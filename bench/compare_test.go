package bench

import "testing"

// TestFreePortsDistinct: the ports handed out together are distinct.
func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(200)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
