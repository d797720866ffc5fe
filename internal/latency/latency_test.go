package latency_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ampyfin/ampy-bus/internal/latency"
)

// Percentiles of a known distribution, within the histogram's 0.1%, from
// records made concurrently and merged.
func TestPercentiles(t *testing.T) {
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{50, 5000 * time.Microsecond},
		{90, 9000 * time.Microsecond},
		{99, 9900 * time.Microsecond},
		{99.9, 9990 * time.Microsecond},
		{100, 10000 * time.Microsecond},
	}
	a, b := latency.New(), latency.New()
	var wg sync.WaitGroup
	for i := 1; i <= 10000; i++ {
		h := a
		if i%2 == 0 {
			h = b
		}
		wg.Go(func() { h.Record(time.Duration(i) * time.Microsecond) })
	}
	wg.Wait()
	a.Merge(b)
	assert.Equal(t, int64(10000), a.Count())
	for _, tt := range tests {
		got := a.Percentile(tt.p)
		assert.InEpsilon(t, float64(tt.want), float64(got), 0.001, "p%v = %s", tt.p, got)
	}
	assert.InEpsilon(t, float64(10*time.Millisecond), float64(a.Max()), 0.001)

	c := latency.New()
	c.Record(time.Hour)
	c.Record(0)
	assert.InEpsilon(t, float64(latency.Ceiling), float64(c.Max()), 0.001, "past the ceiling is the ceiling")
	assert.Equal(t, time.Microsecond, c.Percentile(1), "under a microsecond is one")
}
