package cli

import "testing"

func TestBenchTarget(t *testing.T) {
	for _, tc := range []struct {
		addr              string
		tls, insecure     bool
		ca                string
		want              string
		wantTLS, insecOut bool
	}{
		{addr: "127.0.0.1:80", want: "127.0.0.1:80"},
		{addr: "ws://127.0.0.1:80", want: "127.0.0.1:80"},
		{addr: "wss://127.0.0.1:443", want: "127.0.0.1:443", wantTLS: true},
		{addr: "127.0.0.1:443", tls: true, ca: "ca.pem", want: "127.0.0.1:443", wantTLS: true},
		{addr: "wss://localhost:443", insecure: true, want: "localhost:443", wantTLS: true, insecOut: true},
	} {
		hp, cfg, err := benchTarget(tc.addr, tc.tls, tc.ca, tc.insecure, false)
		if err != nil || hp != tc.want || (cfg != nil) != tc.wantTLS || cfg != nil && (cfg.Insecure != tc.insecOut || cfg.CAFile != tc.ca) {
			t.Errorf("benchTarget(%q, tls %v) = %q, %+v, %v", tc.addr, tc.tls, hp, cfg, err)
		}
	}
	for _, bad := range []struct {
		addr          string
		tls, insecure bool
		ca            string
		resume        bool
	}{
		{addr: "ws://127.0.0.1:80", tls: true},
		{addr: "wss://127.0.0.1:443", insecure: true, ca: "ca.pem"},
		{addr: "127.0.0.1:80", ca: "ca.pem"},
		{addr: "127.0.0.1:80", resume: true},
		{addr: "https://127.0.0.1:443"},
	} {
		if _, _, err := benchTarget(bad.addr, bad.tls, bad.ca, bad.insecure, bad.resume); err == nil {
			t.Errorf("benchTarget(%+v) accepted", bad)
		}
	}
}
