package presence

import (
	"slices"
	"strings"

	"github.com/wsgate/wsgate/internal/membership"
)

func sortNodes(ns []membership.Node) {
	slices.SortFunc(ns, func(a, b membership.Node) int { return strings.Compare(a.ID, b.ID) })
}
