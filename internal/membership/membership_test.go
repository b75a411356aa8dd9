package membership

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseNode(t *testing.T) {
	cases := []struct {
		in   string
		want Node
		err  string
	}{
		{"a=127.0.0.1:9000", Node{ID: "a", Addr: "127.0.0.1:9000"}, ""},
		{"b=host:1,3", Node{ID: "b", Addr: "host:1", Weight: 3}, ""},
		{"=h:1", Node{}, "id is empty"},
		{"a", Node{}, "want id=host:port"},
		{"a=nohostport", Node{}, "not host:port"},
		{"a=h:0", Node{}, "port must be 1..65535"},
		{"a=h:99999", Node{}, "port must be 1..65535"},
		{"a=h:http", Node{}, "port must be 1..65535"},
		{"a=h:1,x", Node{}, "not a number"},
		{"a=h:1,101", Node{}, "out of range"},
		{"a b=h:1", Node{}, "no spaces"},
	}
	for _, tc := range cases {
		got, err := ParseNode(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseNode(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseNode(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestTracker(t *testing.T) {
	a, b := Node{ID: "a", Addr: "h:1"}, Node{ID: "b", Addr: "h:2"}
	tr := NewTracker(a)
	steps := []struct {
		ev      Event
		changed bool
		ids     string
	}{
		{Event{Join, a}, false, "a"},                           // already known
		{Event{Heartbeat, b}, true, "a,b"},                     // heartbeat of an unknown node joins it
		{Event{Join, Node{ID: "b", Addr: "h:3"}}, true, "a,b"}, // moved
		{Event{Leave, a}, true, "b"},                           // left
		{Event{Leave, a}, false, "b"},                          // twice
		{Event{EventType("bogus"), a}, false, "b"},             // unknown type ignored
	}
	for i, st := range steps {
		if got := tr.Apply(st.ev); got != st.changed {
			t.Errorf("step %d: changed %v, want %v", i, got, st.changed)
		}
		var ids []string
		for _, n := range tr.Set() {
			ids = append(ids, n.ID)
		}
		if strings.Join(ids, ",") != st.ids {
			t.Errorf("step %d: set %v, want %s", i, ids, st.ids)
		}
	}
}

func TestMemoryWatch(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	if err := m.Publish(ctx, Event{Join, Node{ID: "a", Addr: "h:1"}}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	sets, err := m.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() []Node {
		select {
		case s := <-sets:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no set")
			return nil
		}
	}
	if s := next(); !reflect.DeepEqual(s, []Node{{ID: "a", Addr: "h:1"}}) {
		t.Fatalf("first set %v", s)
	}
	// Changes published before the watcher reads may coalesce: the watcher
	// sees at most one set per change, sorted, ending with the latest.
	for _, id := range []string{"c", "b"} {
		if err := m.Publish(ctx, Event{Join, Node{ID: id, Addr: "h:2"}}); err != nil {
			t.Fatal(err)
		}
	}
	for seen := 0; ; seen++ {
		s := next()
		if seen == 2 {
			t.Fatalf("more sets than changes: %v", s)
		}
		if len(s) == 3 {
			if s[0].ID != "a" || s[1].ID != "b" || s[2].ID != "c" {
				t.Fatalf("latest set %v", s)
			}
			break
		}
	}
	if err := m.Publish(ctx, Event{Join, Node{ID: "", Addr: "h:2"}}); err == nil {
		t.Fatal("invalid node accepted")
	}
	cancel()
	for range sets {
	}
}

func TestStatic(t *testing.T) {
	if _, err := NewStatic([]Node{{ID: "a", Addr: "h:1"}, {ID: "a", Addr: "h:2"}}); err == nil {
		t.Fatal("duplicate id accepted")
	}
	s, err := NewStatic([]Node{{ID: "b", Addr: "h:1"}, {ID: "a", Addr: "h:2"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, _ := s.Watch(ctx)
	if set := <-ch; len(set) != 2 || set[0].ID != "a" {
		t.Fatalf("set %v", set)
	}
	cancel()
	for range ch {
	}
}
