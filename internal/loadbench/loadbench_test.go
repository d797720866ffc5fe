package loadbench_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/loadbench"
)

// ids collects the message ids a run's consumers counted, per client.
type ids struct {
	mu   sync.Mutex
	seen map[loadbench.Client]map[string]int
}

func (s *ids) observe(c loadbench.Client, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[c] == nil {
		s.seen[c] = map[string]int{}
	}
	s.seen[c][id]++
}

func (s *ids) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = map[loadbench.Client]map[string]int{}
}

// A small load in process on each broker, typed and raw, in each mode:
// every published message is handled by the group (by each group, fanned
// out), under as many distinct message ids, nothing lost, and every figure
// is there. The consume runs do
// not purge the stream: the earlier runs' messages are still in it, and the
// group's start position (the run's start time) must keep them out.
func TestRunsCountEveryMessageOnce(t *testing.T) {
	const messages = 2000
	cases := []struct {
		mode loadbench.Mode
		// consumers is the group's size. A group of one never rebalances,
		// so nothing may be delivered twice; two members join before e2e
		// publishes, but at-least-once allows a redelivery if a partition
		// moves under load, so there duplicates are only logged.
		consumers int
		purge     bool
		fanout    int
		noGroup   bool
		// rawVT: the raw client encodes with MarshalVT (--raw-vtproto),
		// and what it sends must decode as proto.Marshal's did.
		rawVT bool
	}{
		{loadbench.E2E, 2, true, 1, false, false},
		{loadbench.E2E, 1, true, 1, true, true},
		{loadbench.Consume, 1, false, 1, false, false},
		{loadbench.Consume, 1, false, 3, false, false},
		{loadbench.Consume, 1, false, 2, true, false},
		{loadbench.Publish, 1, true, 1, false, false},
		{loadbench.Publish, 1, true, 1, false, true},
	}
	for _, kind := range []string{"nats", "kafka"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			broker, err := loadbench.StartInProcess(kind)
			require.NoError(t, err)
			t.Cleanup(func() { _ = broker.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			seen := &ids{}
			for _, tc := range cases {
				b, err := loadbench.New(ctx, loadbench.Config{
					URL: broker.URL, Mode: tc.mode, Messages: messages, Keys: 10, Publishers: 3, Consumers: tc.consumers,
					Concurrency: 2, Fanout: tc.fanout, NoGroup: tc.noGroup, Size: 300, OwnBroker: tc.purge, Observe: seen.observe, RawVTProto: tc.rawVT,
				})
				require.NoError(t, err)
				for _, c := range []loadbench.Client{loadbench.Typed, loadbench.Raw} {
					seen.reset()
					r, err := b.Run(ctx, c)
					require.NoError(t, err, "%s %s", tc.mode, c)
					t.Logf("%s %s %s: %+v", kind, tc.mode, c, *r)
					assert.EqualValues(t, messages, r.Published)
					assert.Positive(t, r.CPUPerMsg)
					assert.Positive(t, r.AllocsPerMsg)
					assert.Positive(t, r.PeakGoroutines)
					assert.Positive(t, r.PeakHeapBytes)
					assert.Positive(t, r.HeapAfterBytes)
					assert.GreaterOrEqual(t, r.PayloadBytes, 300)
					if tc.mode == loadbench.Publish {
						assert.Positive(t, r.PublishRate)
						assert.Empty(t, seen.seen)
						continue
					}
					assert.EqualValues(t, messages*tc.fanout, r.Consumed, "every message handled by every group")
					assert.Zero(t, r.Missing)
					assert.Zero(t, r.Foreign, "no other run's messages")
					if tc.consumers == 1 {
						assert.Zero(t, r.Duplicates)
					}
					assert.Len(t, seen.seen[c], messages, "distinct message ids")
					for id, n := range seen.seen[c] {
						if n != tc.fanout {
							t.Errorf("%s %s: message %s handled %d times, want once per group (%d)", tc.mode, c, id, n, tc.fanout)
							break
						}
					}
					assert.Positive(t, r.ConsumeRate)
					if tc.mode == loadbench.E2E {
						require.NotNil(t, r.Latency)
						l := r.Latency
						assert.EqualValues(t, messages, l.Count)
						assert.Positive(t, l.P50)
						assert.LessOrEqual(t, l.P50, l.P90)
						assert.LessOrEqual(t, l.P90, l.P99)
						assert.LessOrEqual(t, l.P99, l.P999)
						assert.LessOrEqual(t, l.P999, l.Max)
						assert.Positive(t, r.PublishRate)
						assert.NotNil(t, r.KeptUp)
					} else {
						assert.Nil(t, r.Latency, "consume mode's produced_at is the preload's")
					}
				}
				require.NoError(t, b.Close())
			}
		})
	}
}
