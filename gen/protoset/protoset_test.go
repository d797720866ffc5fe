package protoset_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ampyfin/ampy-bus/gen/protoset"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// The .proto files compiled in process describe exactly what protoc
// compiled into this repository's Go types: every message has the same
// schema hash either way.
func TestCompiledProtosMatchTheLinkedOnes(t *testing.T) {
	reg, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{"../../proto"}})
	require.NoError(t, err)
	n := 0
	reg.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if f.Package() == "google.protobuf" {
			return true
		}
		linked, err := protoregistry.GlobalFiles.FindFileByPath(f.Path())
		require.NoError(t, err, f.Path())
		for i := 0; i < f.Messages().Len(); i++ {
			md := f.Messages().Get(i)
			assert.Equal(t, schema.Hash(linked.Messages().ByName(md.Name())), schema.Hash(md), md.FullName())
			n++
		}
		return true
	})
	assert.Greater(t, n, 20)
}

// A FileDescriptorSet (as buf or protoc write it) loads the same schemas.
func TestDescriptorSet(t *testing.T) {
	reg, err := protoset.Load(context.Background(), protoset.Options{ProtoPaths: []string{"../../proto"}})
	require.NoError(t, err)
	var set descriptorpb.FileDescriptorSet
	reg.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
		return true
	})
	path := filepath.Join(t.TempDir(), "set.binpb")
	data, err := proto.Marshal(&set)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	fromSet, err := protoset.Load(context.Background(), protoset.Options{DescriptorSets: []string{path}})
	require.NoError(t, err)
	d, err := fromSet.FindDescriptorByName("ampy.orders.v1.OrderRequest")
	require.NoError(t, err)
	want, err := protoregistry.GlobalFiles.FindDescriptorByName("ampy.orders.v1.OrderRequest")
	require.NoError(t, err)
	assert.Equal(t, schema.Hash(want.(protoreflect.MessageDescriptor)), schema.Hash(d.(protoreflect.MessageDescriptor)))
}

func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	_, err := protoset.Load(ctx, protoset.Options{})
	assert.ErrorIs(t, err, protoset.ErrNoSchemas)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.proto"), []byte("syntax = \"proto3\";\npackage cx.v1;\nmessage A { strin x = 1; }\n"), 0o644))
	_, err = protoset.Load(ctx, protoset.Options{ProtoPaths: []string{dir}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.proto:3:")

	_, err = protoset.Load(ctx, protoset.Options{ProtoPaths: []string{filepath.Join(dir, "none")}})
	assert.ErrorContains(t, err, "proto path")
	notSet := filepath.Join(dir, "x.binpb")
	require.NoError(t, os.WriteFile(notSet, []byte("garbage\xff"), 0o644))
	_, err = protoset.Load(ctx, protoset.Options{DescriptorSets: []string{notSet}})
	assert.ErrorContains(t, err, "not a serialized FileDescriptorSet")
}
