package cli

import (
	"net"
	"strings"
	"testing"
)

func TestAdvertised(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:9000", "10.1.2.3:9000", "backend-1:9000"} {
		if got := advertised(addr); got != addr {
			t.Errorf("advertised(%q) = %q, want it unchanged", addr, got)
		}
	}
	for _, addr := range []string{"0.0.0.0:9000", ":9000", "[::]:9000"} {
		got := advertised(addr)
		host, port, err := net.SplitHostPort(got)
		if err != nil || port != "9000" || host == "" {
			t.Errorf("advertised(%q) = %q, want host:9000", addr, got)
		}
		if ip := net.ParseIP(host); ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
			t.Errorf("advertised(%q) = %q: not reachable from another host", addr, got)
		}
	}
}

func TestFirstRoutable(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	cases := []struct {
		addrs []net.Addr
		want  string
	}{
		{[]net.Addr{cidr("127.0.0.1/8"), cidr("169.254.1.1/16"), cidr("fe80::1/64"), cidr("172.18.0.5/16")}, "172.18.0.5"},
		{[]net.Addr{cidr("127.0.0.1/8"), cidr("::1/128")}, "<nil>"},
		{nil, "<nil>"},
	}
	for _, tc := range cases {
		if got := firstRoutable(tc.addrs).String(); !strings.EqualFold(got, tc.want) {
			t.Errorf("firstRoutable(%v) = %s, want %s", tc.addrs, got, tc.want)
		}
	}
}
