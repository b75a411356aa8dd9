// Package demo is the demo service behind the gateway: it greets each new
// client, echoes every message, and delivers admin pushes.
//
// The JSON messages are a contract with existing clients (field names and
// order are fixed):
//
//	{"type":2,"content":"connected","serverUserCount":N,"serverIp":"<node id>","timestamp":<unix ms>}
//	{"type":1,"content":"<pushed data>","serverUserCount":N,"serverIp":"<node id>","timestamp":<unix ms>}
//
// A client that connects with counter=1 in its query gets, instead of the
// echo, a count of its messages, kept across migrations (the demo is a
// backend.Migrator: the count is the state a moved session carries):
//
//	{"type":3,"content":"<count>:<message>","serverUserCount":N,"serverIp":"<node id>","timestamp":<unix ms>}
//
// Construction: the handler needs its node (for OnPush, which has no
// session) and the node needs its handler, so NewNode builds both at once.
package demo

import (
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/backend"
)

// Message types in the JSON "type" field.
const (
	TypePush      = 1 // an admin push
	TypeConnected = 2 // the welcome message sent on open
	TypeCount     = 3 // a counter session's answer: "<count>:<message>"
)

// NewNode returns a backend node (not started) running the demo handler.
// cfg is validated as by backend.NewNode.
func NewNode(cfg backend.Config) (*backend.Node, error) {
	a := &app{}
	n, err := backend.NewNode(cfg, a)
	if err != nil {
		return nil, err
	}
	// Set before Start, so before any handler call: no lock needed.
	a.node = n
	return n, nil
}

// app is the demo backend.Handler.
type app struct {
	node   *backend.Node
	now    func() time.Time // for tests; nil means time.Now
	counts sync.Map         // *backend.Session -> *int64, sessions opened with counter=1
}

// counterTarget reports whether a session's target asks for the counter.
func counterTarget(target string) bool {
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return false
	}
	v, err := url.ParseQuery(q)
	return err == nil && v.Get("counter") == "1"
}

func (a *app) timestamp() int64 {
	if a.now != nil {
		return a.now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// OnOpen sends the welcome message; the count includes the new session.
func (a *app) OnOpen(s *backend.Session) {
	if counterTarget(s.Target()) {
		a.counts.Store(s, new(int64))
	}
	n := s.Node()
	msg := appendEvent(nil, TypeConnected, "connected", n.SessionCount(), n.ID(), a.timestamp())
	if err := s.Send(false, msg); err != nil {
		return // the session is already gone
	}
}

// OnMessage echoes the message with the same opcode, or answers a counter
// session with its count. Calls for one session are serialized, so the
// count needs no lock.
func (a *app) OnMessage(s *backend.Session, binary bool, data []byte) {
	if c, ok := a.counts.Load(s); ok {
		n := c.(*int64)
		*n++
		content := string(strconv.AppendInt(nil, *n, 10)) + ":" + string(data)
		_ = s.Send(false, appendEvent(nil, TypeCount, content, s.Node().SessionCount(), s.Node().ID(), a.timestamp()))
		return
	}
	_ = s.Send(binary, data) // copies data; fails only if the session is gone
}

// OnClose forgets a counter session's count.
func (a *app) OnClose(s *backend.Session, _ uint16, _ string) { a.counts.Delete(s) }

// Export hands a counter session's count to its new node (backend.Migrator).
func (a *app) Export(s *backend.Session) []byte {
	if c, ok := a.counts.Load(s); ok {
		return strconv.AppendInt(nil, *c.(*int64), 10)
	}
	return nil
}

// Resume takes a migrated session: its count goes on from the state (from
// 0 when the state was lost). It sends no welcome: the client never left.
func (a *app) Resume(s *backend.Session, state []byte, lost bool) {
	if !counterTarget(s.Target()) {
		return
	}
	n, err := strconv.ParseInt(string(state), 10, 64)
	if err != nil || lost {
		n = 0
	}
	a.counts.Store(s, &n)
}

// OnPush sends the pushed data, as a JSON string, to every session of key
// on this node and returns how many it reached.
func (a *app) OnPush(key string, data []byte) int {
	n := a.node
	msg := appendEvent(nil, TypePush, string(data), n.SessionCount(), n.ID(), a.timestamp())
	return n.SendToKey(key, false, msg)
}

// appendEvent appends the JSON event object, fields in contract order.
func appendEvent(dst []byte, typ int, content string, users int, nodeID string, ts int64) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(typ), 10)
	dst = append(dst, `,"content":`...)
	dst = appendJSONString(dst, content)
	dst = append(dst, `,"serverUserCount":`...)
	dst = strconv.AppendInt(dst, int64(users), 10)
	dst = append(dst, `,"serverIp":`...)
	dst = appendJSONString(dst, nodeID)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string literal (RFC 8259): quote,
// backslash and control characters are escaped, invalid UTF-8 becomes
// U+FFFD, and U+2028/U+2029 are escaped so the output is also valid
// JavaScript. Other characters are copied as UTF-8.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
