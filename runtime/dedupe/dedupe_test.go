package dedupe

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemory(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(3)
	m.now = func() time.Time { return now }

	seen, err := m.Seen(ctx, "a")
	require.NoError(t, err)
	assert.False(t, seen)
	require.NoError(t, m.Mark(ctx, "a", time.Minute))
	seen, _ = m.Seen(ctx, "a")
	assert.True(t, seen)

	now = now.Add(2 * time.Minute)
	seen, _ = m.Seen(ctx, "a")
	assert.False(t, seen, "expired after its TTL")
	assert.Zero(t, m.Len(), "an expired key is dropped when looked up")

	for i := range 5 {
		require.NoError(t, m.Mark(ctx, strconv.Itoa(i), time.Hour))
	}
	assert.Equal(t, 3, m.Len(), "bounded")
	for i, want := range []bool{false, false, true, true, true} {
		seen, _ := m.Seen(ctx, strconv.Itoa(i))
		assert.Equal(t, want, seen, "key %d: the oldest marks are forgotten first", i)
	}
	// Marking again refreshes a key's place.
	require.NoError(t, m.Mark(ctx, "2", time.Hour))
	require.NoError(t, m.Mark(ctx, "5", time.Hour))
	seen, _ = m.Seen(ctx, "2")
	assert.True(t, seen)
	seen, _ = m.Seen(ctx, "3")
	assert.False(t, seen)
}
