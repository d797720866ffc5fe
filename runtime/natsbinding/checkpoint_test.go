package natsbinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

var _ checkpoint.Store = (*natsbinding.KVCheckpoints)(nil)

func TestKVCheckpointsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() (*natsbinding.KVCheckpoints, func()) {
		e, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir})
		require.NoError(t, err)
		tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
		require.NoError(t, err)
		s, err := natsbinding.NewKVCheckpoints(ctx, tr, "ampy_checkpoints", 1)
		require.NoError(t, err)
		return s, func() { tr.Close(); e.Shutdown() }
	}
	s, stop := open()
	at := time.Date(2025, 9, 5, 19, 31, 0, 123456789, time.UTC)
	_, ok, err := s.Load(ctx, "fx-book|fx|USD.JPY")
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, s.Save(ctx, "fx-book|fx|USD.JPY", at))
	stop()

	s, stop = open()
	defer stop()
	got, ok, err := s.Load(ctx, "fx-book|fx|USD.JPY")
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, at.Equal(got), "saved %s, loaded %s", at, got)
}
