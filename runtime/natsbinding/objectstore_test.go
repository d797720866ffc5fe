package natsbinding_test

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/blobtest"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

var _ blob.Store = (*natsbinding.ObjectStore)(nil)

// Blobs go into a JetStream object store under their hash and come back
// byte for byte after a server restart; a second put of the same bytes is
// the same reference; a reference to nothing, to another bucket or of
// another scheme is refused with the sentinel the bus dead-letters on.
func TestObjectStore(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func() (*natsbinding.ObjectStore, func()) {
		e, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: dir})
		require.NoError(t, err)
		tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
		require.NoError(t, err)
		s, err := natsbinding.NewObjectStore(ctx, tr, "ampy_blobs", 1)
		require.NoError(t, err)
		return s, func() { tr.Close(); e.Shutdown() }
	}
	s, stop := open()
	data := make([]byte, 3<<20) // several object chunks
	_, _ = rand.Read(data)
	ref, err := s.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, "nats-object://ampy_blobs/"+strings.TrimPrefix(blob.Hash(data), "sha256:"), ref)
	again, err := s.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, ref, again, "content-addressed: the same bytes, the same reference")
	stop()

	s, stop = open()
	defer stop()
	got, err := s.Get(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, blob.Hash(data), blob.Hash(got), "the blob survives a server restart")

	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"nats-object://ampy_blobs/" + strings.Repeat("0", 64), blob.ErrNotFound},
		{"nats-object://other/" + strings.Repeat("0", 64), blob.ErrInvalidRef},
		{"nats-object://ampy_blobs/not-a-hash", blob.ErrInvalidRef},
		{"s3://bucket/key", blob.ErrInvalidRef},
		{"file:///etc/passwd", blob.ErrInvalidRef},
	} {
		_, err := s.Get(ctx, tc.ref)
		assert.ErrorIs(t, err, tc.want, tc.ref)
	}
}

// The pointer pattern end to end on NATS alone, live and in a replay: the
// payload goes into the object store and its message carries a
// nats-object:// reference.
func TestObjectStoreCarriesOversizedPayloads(t *testing.T) {
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
	require.NoError(t, err)
	defer tr.Close()
	store, err := natsbinding.NewObjectStore(ctx, tr, "ampy_blobs", 1)
	require.NoError(t, err)
	blobtest.CarriesOversizedPayloads(t, e.URL(), store, "nats-object://ampy_blobs/")
}
