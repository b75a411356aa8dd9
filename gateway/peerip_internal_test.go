package gateway

import (
	"net"
	"net/netip"
	"testing"
)

// TestPeerIP: the per-IP limit key is the bare address, IPv4-mapped
// addresses as IPv4 and without an IPv6 zone (gnet names the zone anew on
// each RemoteAddr call, so admission and release could disagree on it).
func TestPeerIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr net.Addr
		want netip.Addr
	}{
		{"ipv4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7).To4(), Port: 1}, netip.MustParseAddr("127.0.0.7")},
		{"ipv4-mapped", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}, netip.MustParseAddr("10.1.2.3")},
		{"ipv6 with zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, netip.MustParseAddr("fe80::1")},
		{"same ipv6, zone as a number", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "2", Port: 1}, netip.MustParseAddr("fe80::1")},
		{"not tcp", &net.UnixAddr{Name: "/tmp/x", Net: "unix"}, netip.Addr{}},
		{"nil", nil, netip.Addr{}},
	} {
		if got := peerIP(tc.addr); got != tc.want {
			t.Errorf("%s: peerIP = %v, want %v", tc.name, got, tc.want)
		}
	}
}
