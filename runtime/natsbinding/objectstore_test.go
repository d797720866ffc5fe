package natsbinding_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
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

// The pointer pattern end to end on NATS alone: a payload over max_payload
// goes into the object store and its message carries a nats-object://
// reference; the consumer fetches it, checks its hash and hands the
// payload to the handler.
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
	b, err := ampybus.Open(ctx, e.URL(), ampybus.WithProvisioning(), ampybus.WithProducer("blob@test", "blob-test"), ampybus.WithBlobStore(store))
	require.NoError(t, err)
	defer b.Close()
	noise := make([]byte, 3<<19)
	_, _ = rand.Read(noise)
	huge := &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Volume: 7,
		EventTime: timestamppb.New(time.Unix(1_757_100_000, 0)), AdjustmentPolicyId: base64.StdEncoding.EncodeToString(noise),
	}}}
	got := make(chan *bars.Message, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), huge)
	require.NoError(t, err)
	select {
	case m := <-got:
		assert.True(t, strings.HasPrefix(m.Headers.BlobRef, "nats-object://ampy_blobs/"), m.Headers.BlobRef)
		assert.True(t, proto.Equal(huge, m.Payload), "the handler gets the payload itself")
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
}
