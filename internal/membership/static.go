package membership

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Static is a fixed member set, for `wsgate gateway --backend id=host:port`.
type Static []Node

// NewStatic validates nodes and returns them as a Source.
func NewStatic(nodes []Node) (Static, error) {
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if err := n.Validate(); err != nil {
			return nil, err
		}
		if seen[n.ID] {
			return nil, fmt.Errorf("membership: backend id %q given twice", n.ID)
		}
		seen[n.ID] = true
	}
	s := slices.Clone(nodes)
	slices.SortFunc(s, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return Static(s), nil
}

// Watch sends the set once and closes the channel when ctx ends.
func (s Static) Watch(ctx context.Context) (<-chan []Node, error) {
	ch := make(chan []Node, 1)
	ch <- slices.Clone(s)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// Merge adds the fixed members (`wsgate gateway --upstream` beside cluster
// membership or --backend) to every set src yields. Where src names a node
// with a fixed member's id, the fixed member stays: it was configured on
// this gateway, and an announcement must not redirect its clients.
func Merge(fixed Static, src Source) Source {
	if src == nil {
		return fixed
	}
	return merged{fixed: fixed, src: src}
}

type merged struct {
	fixed Static
	src   Source
}

// Watch yields src's sets with the fixed members added.
func (m merged) Watch(ctx context.Context) (<-chan []Node, error) {
	in, err := m.src.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan []Node, 1)
	go func() {
		defer close(out)
		for set := range in {
			all := slices.Clone([]Node(m.fixed))
			for _, n := range set {
				if !slices.ContainsFunc(all, func(f Node) bool { return f.ID == n.ID }) {
					all = append(all, n)
				}
			}
			slices.SortFunc(all, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
			select {
			case out <- all:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
