package natsbinding

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every partition has exactly one owner in a shared view, shares are equal,
// and a member joining or leaving moves few partitions.
func TestAssignIsBalancedAndSticky(t *testing.T) {
	owners := func(members []string, partitions int) map[int]string {
		out := map[int]string{}
		for _, m := range members {
			for p := range assign(members, partitions, m) {
				assert.Empty(t, out[p], "partition %d has two owners", p)
				out[p] = m
			}
		}
		assert.Len(t, out, partitions, "every partition has an owner")
		return out
	}
	for _, tc := range []struct{ members, partitions int }{{1, 6}, {2, 6}, {3, 6}, {4, 6}, {3, 24}, {5, 12}, {7, 3}} {
		t.Run(fmt.Sprintf("%d members %d partitions", tc.members, tc.partitions), func(t *testing.T) {
			var ms []string
			for i := range tc.members {
				ms = append(ms, fmt.Sprintf("AMPY.g.member-%d", i))
			}
			got := owners(ms, tc.partitions)
			load := map[string]int{}
			for _, m := range got {
				load[m]++
			}
			share := (tc.partitions + tc.members - 1) / tc.members
			for m, n := range load {
				assert.LessOrEqual(t, n, share, "%s holds more than its share", m)
			}
			// One member more: only what the newcomer takes, and what the
			// capped shares push along, moves.
			joined := owners(append(ms, "AMPY.g.member-new"), tc.partitions)
			moved := 0
			for p, m := range joined {
				if got[p] != m {
					moved++
				}
			}
			assert.LessOrEqual(t, moved, 2*((tc.partitions+tc.members)/(tc.members+1)+1), "a join moved %d of %d partitions", moved, tc.partitions)
		})
	}
}
