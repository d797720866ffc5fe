package natsbinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

var _ dedupe.Store = (*natsbinding.KVStore)(nil)

// Marks outlive the consumer and the broker: a new store on the same bucket,
// after a server restart on the same store dir, still sees them.
func TestKVStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() (*embedded.NATS, *natsbinding.KVStore, func()) {
		e, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir})
		require.NoError(t, err)
		tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
		require.NoError(t, err)
		s, err := natsbinding.NewKVStore(ctx, tr, "ampy_dedupe", time.Hour, 1)
		require.NoError(t, err)
		return e, s, func() { tr.Close(); e.Shutdown() }
	}
	_, s, stop := open()
	key := "features|bars|id|01a202dc-38f1-7623-8e5e-174f1f5a72cc"
	seen, err := s.Seen(ctx, key)
	require.NoError(t, err)
	assert.False(t, seen)
	require.NoError(t, s.Mark(ctx, key, time.Hour))
	require.NoError(t, s.Mark(ctx, "features|orders|dk|co_20250905_001|with.dots and spaces", time.Hour))
	stop()

	_, s, stop = open()
	defer stop()
	seen, err = s.Seen(ctx, key)
	require.NoError(t, err)
	assert.True(t, seen, "the mark survived the restart")
	seen, err = s.Seen(ctx, "features|orders|dk|co_20250905_001|with.dots and spaces")
	require.NoError(t, err)
	assert.True(t, seen, "any key, whatever its characters")
	seen, err = s.Seen(ctx, "risk|bars|id|01a202dc-38f1-7623-8e5e-174f1f5a72cc")
	require.NoError(t, err)
	assert.False(t, seen)
}
