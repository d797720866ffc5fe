package loadbench

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childCPU read for this very process agrees with getrusage, to /proc's
// 10 ms, after some work.
func TestChildCPUReadsProc(t *testing.T) {
	x := uint64(1)
	for start := processCPU(); processCPU()-start < 100*time.Millisecond; {
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	own := processCPU()
	got, err := childCPU(os.Getpid())
	require.NoError(t, err)
	assert.InDelta(t, own.Seconds(), got.Seconds(), 0.05, "x=%d", x)
	assert.GreaterOrEqual(t, got, 90*time.Millisecond)

	_, err = childCPU(1 << 30) // no such process
	assert.Error(t, err)
}
