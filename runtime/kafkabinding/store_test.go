package kafkabinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
)

// Two members, each with its own handle on the store (as two processes
// would have): what one writes, the other sees once it has synced, and a
// store opened later reads everything back from the topic.
func TestTopicStoreIsSharedAndSurvivesRestarts(t *testing.T) {
	e, err := embedded.StartKafka(embedded.KafkaOptions{})
	require.NoError(t, err)
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() *kafkabinding.TopicStore {
		tr, err := kafkabinding.Open(ctx, kafkabinding.Config{Brokers: e.Brokers()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		s, err := kafkabinding.NewTopicStore(ctx, tr, "ampy_bus.store.test", time.Hour, 1)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()

	at := time.Date(2026, 12, 1, 9, 30, 0, 123456789, time.UTC)
	for i := range 200 {
		require.NoError(t, a.Mark(ctx, "g|orders|id|"+string(rune('A'+i%26))+time.Duration(i).String(), time.Hour))
	}
	require.NoError(t, a.Mark(ctx, "g|orders|id|gone", -time.Second)) // already expired
	require.NoError(t, a.Save(ctx, "g|positions|ACC-1|AAPL.XNAS", at))

	require.NoError(t, b.Sync(ctx))
	seen, err := b.Seen(ctx, "g|orders|id|A0s")
	require.NoError(t, err)
	assert.True(t, seen, "a mark made by another member is seen after Sync")
	seen, _ = b.Seen(ctx, "g|orders|id|gone")
	assert.False(t, seen, "an expired mark is not seen")
	seen, _ = b.Seen(ctx, "g|orders|id|never")
	assert.False(t, seen)
	got, ok, err := b.Load(ctx, "g|positions|ACC-1|AAPL.XNAS")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.True(t, at.Equal(got), "checkpoint kept to the nanosecond: %v", got)

	// An older checkpoint written later does not move the time back.
	require.NoError(t, b.Save(ctx, "g|positions|ACC-1|AAPL.XNAS", at.Add(-time.Minute)))
	c := open() // a restarted member reads the topic from the start
	got, _, _ = c.Load(ctx, "g|positions|ACC-1|AAPL.XNAS")
	assert.True(t, at.Equal(got), "%v", got)
	seen, _ = c.Seen(ctx, "g|orders|id|Z25ns")
	assert.True(t, seen)
}
