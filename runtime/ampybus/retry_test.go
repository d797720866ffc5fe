package ampybus_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

func TestRetryDelay(t *testing.T) {
	p := ampybus.RetryPolicy{MaxAttempts: 10, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 800 * time.Millisecond, 1600 * time.Millisecond},
		{6, time.Second, 2 * time.Second}, // capped
		{60, time.Second, 2 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(tc.attempt)
			assert.GreaterOrEqual(t, d, tc.min, "attempt %d", tc.attempt)
			assert.LessOrEqual(t, d, tc.max, "attempt %d", tc.attempt)
			seen[d] = true
		}
		assert.Greater(t, len(seen), 50, "attempt %d: delays are jittered", tc.attempt)
	}
}
