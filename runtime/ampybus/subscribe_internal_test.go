package ampybus

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDefaultDedupeFollowsTheContract(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		opts   subOptions
		want   time.Duration
		store  bool
	}{
		{"the domain's window", 2 * time.Minute, subOptions{}, 2 * time.Minute, true},
		{"no window in the contract", 0, subOptions{}, time.Hour, true},
		{"NoDedupe stays off", 2 * time.Minute, func() subOptions { var o subOptions; NoDedupe()(&o); return o }(), -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.defaultDedupe(&DomainSpec{DedupeWindow: tc.window})
			assert.Equal(t, tc.want, o.dedupeTTL)
			assert.Equal(t, tc.store, o.dedupe != nil)
		})
	}
}
