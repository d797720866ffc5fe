package s3blob_test

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/internal/blobtest"
	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/blob/s3blob"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/fixture"
	_ "github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

var _ blob.Store = (*s3blob.Store)(nil)

// fakeS3 serves an in-process S3-compatible API on loopback with bucket.
func fakeS3(t *testing.T, bucket string) string {
	t.Helper()
	backend := s3mem.New()
	require.NoError(t, backend.CreateBucket(bucket))
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Blobs go into the bucket under their hash and come back byte for byte; a
// second put of the same bytes is the same reference; a reference to
// nothing, to another bucket or of another scheme is refused with the
// sentinel the bus dead-letters on.
func TestStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3blob.New(s3blob.Config{Endpoint: fakeS3(t, "blobs"), Bucket: "blobs", Prefix: "ampy/",
		AccessKey: "test", SecretKey: "test", Insecure: true, Region: "us-east-1"})
	require.NoError(t, err)
	data := make([]byte, 2<<20)
	_, _ = rand.Read(data)
	ref, err := s.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, "s3://blobs/ampy/"+strings.TrimPrefix(blob.Hash(data), "sha256:"), ref)
	again, err := s.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, ref, again)
	got, err := s.Get(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, blob.Hash(data), blob.Hash(got))

	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"s3://blobs/ampy/" + strings.Repeat("0", 64), blob.ErrNotFound},
		{"s3://other/ampy/x", blob.ErrInvalidRef},
		{"s3://blobs/elsewhere/x", blob.ErrInvalidRef},
		{"nats-object://blobs/x", blob.ErrInvalidRef},
		{"file:///etc/passwd", blob.ErrInvalidRef},
	} {
		_, err := s.Get(ctx, tc.ref)
		assert.ErrorIs(t, err, tc.want, tc.ref)
	}
	_, err = s3blob.New(s3blob.Config{Bucket: "blobs"})
	assert.Error(t, err, "an endpoint is required")
}

// The golden blob pointer fixture's s3:// reference resolves against a
// bucket holding its blob, and the bytes match its blob_hash and blob_size.
func TestGoldenFixtureReferenceResolves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := os.ReadFile("../../../fixtures/news/large_blob_pointer.json")
	require.NoError(t, err)
	f, err := fixture.Parse("large_blob_pointer.json", raw)
	require.NoError(t, err)
	h, err := f.Envelope()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(h.BlobRef, "s3://"), h.BlobRef)
	bucket := strings.SplitN(strings.TrimPrefix(h.BlobRef, "s3://"), "/", 2)[0]
	s, err := s3blob.New(s3blob.Config{Endpoint: fakeS3(t, bucket), Bucket: bucket, AccessKey: "test", SecretKey: "test", Insecure: true, Region: "us-east-1"})
	require.NoError(t, err)
	data, err := os.ReadFile("../../../fixtures/blobs/" + strings.TrimPrefix(h.BlobHash, "sha256:"))
	require.NoError(t, err)
	ref, err := s.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, h.BlobRef, ref, "the store names the blob as the fixture does")
	got, err := s.Get(ctx, h.BlobRef)
	require.NoError(t, err)
	assert.Equal(t, h.BlobHash, blob.Hash(got))
	assert.EqualValues(t, h.BlobSize, len(got))
}

// The pointer pattern through S3 end to end, on an embedded NATS server,
// live and in a replay.
func TestBusCarriesOversizedPayloadsThroughS3(t *testing.T) {
	store, err := s3blob.New(s3blob.Config{Endpoint: fakeS3(t, "blobs"), Bucket: "blobs", AccessKey: "test", SecretKey: "test", Insecure: true, Region: "us-east-1"})
	require.NoError(t, err)
	e, err := embedded.StartNATS(embedded.NATSOptions{})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	blobtest.CarriesOversizedPayloads(t, e.URL(), store, "s3://blobs/")
}
