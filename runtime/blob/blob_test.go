package blob_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/blob"
)

func TestFS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fs, err := blob.NewFS(dir)
	require.NoError(t, err)
	data := []byte("a payload too large for the bus")
	ref, err := fs.Put(ctx, data)
	require.NoError(t, err)
	assert.Regexp(t, `^file:///.+/[0-9a-f]{64}$`, ref)
	again, err := fs.Put(ctx, data)
	require.NoError(t, err)
	assert.Equal(t, ref, again, "content-addressed")
	got, err := fs.Get(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Equal(t, "sha256:"+filepath.Base(ref), blob.Hash(data))

	_, err = fs.Get(ctx, "file://"+filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, blob.ErrNotFound)
	_, err = fs.Get(ctx, "file:///etc/passwd")
	assert.ErrorContains(t, err, "outside the store")
	_, err = fs.Get(ctx, "s3://bucket/key")
	assert.ErrorContains(t, err, "not a file:// reference")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary files left")
}
