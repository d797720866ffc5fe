package schema_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	ticksv1 "github.com/ampyfin/ampy-bus/proto/ampy/ticks/v1"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

func TestHashStableAndDistinct(t *testing.T) {
	bar := (&barsv1.BarBatch{}).ProtoReflect().Descriptor()
	h := schema.Hash(bar)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, h)
	assert.Equal(t, h, schema.Hash(bar))
	assert.NotEqual(t, h, schema.Hash((&ticksv1.TradeTick{}).ProtoReflect().Descriptor()))
	assert.NotEqual(t, schema.Hash((&ticksv1.TradeTick{}).ProtoReflect().Descriptor()), schema.Hash((&ticksv1.QuoteTick{}).ProtoReflect().Descriptor()))
}

// A change deep in a referenced type (Decimal.scale renumbered) changes the
// hash of every payload that uses it.
func TestHashCoversReferencedTypes(t *testing.T) {
	bars := protodesc.ToFileDescriptorProto(barsv1.File_ampy_bars_v1_bars_proto)
	common := protodesc.ToFileDescriptorProto((&barsv1.Bar{}).ProtoReflect().Descriptor().Fields().ByName("open").Message().ParentFile())
	build := func(common *descriptorpb.FileDescriptorProto) protoreflect.MessageDescriptor {
		files := new(protoregistry.Files)
		for _, fd := range []*descriptorpb.FileDescriptorProto{
			protodesc.ToFileDescriptorProto((&barsv1.Bar{}).ProtoReflect().Descriptor().Fields().ByName("start").Message().ParentFile()),
			common, bars,
		} {
			f, err := protodesc.NewFile(fd, files)
			require.NoError(t, err)
			require.NoError(t, files.RegisterFile(f))
		}
		d, err := files.FindDescriptorByName("ampy.bars.v1.BarBatch")
		require.NoError(t, err)
		return d.(protoreflect.MessageDescriptor)
	}
	same := build(common)
	assert.Equal(t, schema.Hash((&barsv1.BarBatch{}).ProtoReflect().Descriptor()), schema.Hash(same))
	for _, m := range common.MessageType {
		if m.GetName() == "Decimal" {
			for _, f := range m.Field {
				if f.GetName() == "scale" {
					f.Number = new(int32)
					*f.Number = 9
				}
			}
		}
	}
	assert.NotEqual(t, schema.Hash(same), schema.Hash(build(common)))
}
