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
