package gateway

import (
	"bytes"
	"testing"
)

const testAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" // RFC 6455 1.3's example, for key dGhlIHNhbXBsZSBub25jZQ==

// TestParseUpgradeResponse: what an upstream may answer to the upgrade.
func TestParseUpgradeResponse(t *testing.T) {
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != testAccept {
		t.Fatalf("acceptKey = %q, want RFC 6455's %q", got, testAccept)
	}
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n"
	for _, tc := range []struct {
		name, resp string
		n          int
		status     string
		err        error
	}{
		{"valid", ok, len(ok), "101 Switching Protocols", nil},
		{"valid with a frame after it", ok + "\x81\x02hi", len(ok), "101 Switching Protocols", nil},
		{"header case and token lists", "HTTP/1.1 101 x\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept:" + testAccept + "\r\n\r\n", 0, "101 x", nil},
		{"incomplete", ok[:len(ok)-2], 0, "", errResponseIncomplete},
		{"refused", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 0, "403 Forbidden", errNotUpgraded},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", errResponseMalformed},
		{"short status line", "HTTP/1.1 10\r\n\r\n", 0, "", errResponseMalformed},
		{"header without colon", "HTTP/1.1 101 S\r\nUpgrade websocket\r\n\r\n", 0, "101 S", errResponseMalformed},
		{"wrong accept", "HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n", 0, "101 S", errBadAccept},
		{"no upgrade header", "HTTP/1.1 101 S\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n", 0, "101 S", errBadAccept},
		{"extension not offered", "HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 0, "101 S", errUnofferedExtension},
	} {
		n, status, err := parseUpgradeResponse([]byte(tc.resp), testAccept)
		if err != tc.err || status != tc.status || (tc.n != 0 && n != tc.n) || (err == nil && n == 0) {
			t.Errorf("%s: n %d status %q err %v; want n %d status %q err %v", tc.name, n, status, err, tc.n, tc.status, tc.err)
		}
	}
}

// FuzzUpstreamResponse: no answer an upstream sends makes the parser
// panic, read past its input or accept a head that is not a 101 with the
// right accept key.
func FuzzUpstreamResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + testAccept + "\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 101 \r\n:\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := parseUpgradeResponse(b, testAccept)
		if err != nil {
			return
		}
		if n > len(b) || !bytes.HasPrefix(b, []byte("HTTP/1.")) || !bytes.Contains(b[:n], []byte(testAccept)) || string(b[9:12]) != "101" {
			t.Fatalf("accepted %q (n %d)", b, n)
		}
	})
}

// TestResponseProtocol: the upstream's subprotocol choice, and a repeated
// header refused as ambiguous.
func TestResponseProtocol(t *testing.T) {
	for _, tc := range []struct {
		head  string
		proto string
		ok    bool
	}{
		{"HTTP/1.1 101 x\r\nUpgrade: websocket", "", true},
		{"HTTP/1.1 101 x\r\nsec-websocket-protocol:  chat ", "chat", true},
		{"HTTP/1.1 101 x\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: evil", "", false},
		{"HTTP/1.1 101 x\r\nSec-WebSocket-Protocol : chat", "", true}, // not the header (a space before the colon)
	} {
		proto, ok := responseProtocol([]byte(tc.head))
		if proto != tc.proto || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.head, proto, ok, tc.proto, tc.ok)
		}
	}
	if !offered("a, chat,b", "chat") || offered("a, chat,b", "cha") {
		t.Error("offered")
	}
}
