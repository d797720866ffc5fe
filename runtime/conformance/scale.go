package conformance

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// testManyKeys holds messages of thousands of keys in the engine at once
// (the first handlers block, so everything fetched waits its turn) and
// checks that the goroutines stay bounded by Concurrency, not by the keys
// in flight; then every message is handled once.
func testManyKeys(t *testing.T, s *suite) {
	const concurrency = 2
	keys := scale(3000)
	ctx := s.ctx(t)
	b := s.bus(t)
	pub := positions.NewSnapshotsPublisher(b)
	for k := range keys {
		_, err := pub.PublishAsync(ctx, positions.NewSnapshotsSubtopic(), position("ACC-"+strconv.Itoa(k), 1))
		require.NoError(t, err)
	}
	require.NoError(t, b.Flush(ctx))

	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]int{}
	all := make(chan struct{})
	base := runtime.NumGoroutine()
	sub, err := positions.SubscribeSnapshots(ctx, b, positions.AllSnapshots(), func(ctx context.Context, m *positions.SnapshotsMessage) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		if handled[m.Headers.PartitionKey]++; len(handled) == keys {
			close(all)
		}
		return nil
	}, ampybus.Durable("many-keys"), ampybus.DeliverAll(), ampybus.Concurrency(concurrency))
	require.NoError(t, err)
	defer sub.Stop()

	// While the first handlers block, the engine takes in up to its
	// in-flight limit of messages, each of another key. An engine with a
	// goroutine per key would grow by about a thousand here; a pull loop per
	// partition is the binding's fixed cost.
	peak := 0
	for range 30 {
		peak = max(peak, runtime.NumGoroutine())
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("handled %d of %d keys", len(handled), keys)
	}
	t.Logf("%d keys in flight: %d goroutines before subscribing, at most %d while held", keys, base, peak)
	assert.LessOrEqual(t, peak-base, 256, "goroutines grew with the keys held, not with Concurrency(%d)", concurrency)
	mu.Lock()
	defer mu.Unlock()
	for k, n := range handled {
		assert.Equal(t, 1, n, "key %s", k)
	}
}
