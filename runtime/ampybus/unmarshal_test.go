package ampybus

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/internal/wiretest"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	corporateactionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/corporate_actions/v1"
	newsv1 "github.com/ampyfin/ampy-bus/proto/ampy/news/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	ticksv1 "github.com/ampyfin/ampy-bus/proto/ampy/ticks/v1"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// Every AmpyFin payload type and the wire-shape test type, filled at random
// many times, decodes through the generated methods to the message
// proto.Unmarshal gives, unknown fields included; every type but those
// with a map takes the methods.
func TestUnmarshalerGivesProtosMessage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	types := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		if !strings.HasPrefix(name, "ampy.") {
			return true
		}
		types++
		dec := unmarshalerOf(mt.Zero().Interface())
		fast := !hasMap(mt.Descriptor(), map[protoreflect.FullName]bool{}) && name != "ampy.wiretest.v1.Foreign"
		assert.Equal(t, fast, dec.wire != nil, "%s takes the generated methods unless it holds a map or a type without them", name)
		for i := range 50 {
			m := mt.New()
			fill(r, m, 0)
			if i%5 == 0 {
				m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), uint64(i)))
			}
			b, err := proto.Marshal(m.Interface())
			require.NoError(t, err, name)
			got := mt.New().Interface()
			if fast {
				require.True(t, dec.decodeFast(b, got), "%s, fill %d: the generated methods decode it", name, i)
			} else {
				require.NoError(t, dec.unmarshal(b, got), name)
			}
			require.True(t, proto.Equal(m.Interface(), got), "%s, fill %d:\nwant %v\ngot  %v", name, i, m, got)
		}
		return true
	})
	assert.GreaterOrEqual(t, types, 21, "payload types checked, the wire-shape type among them")
}

// An erased route reads its payload type from a payload; a closed enum,
// whose unknown values proto keeps as unknown fields, sends a type to
// proto, an open one does not.
func TestUnmarshalerPlans(t *testing.T) {
	assert.Nil(t, unmarshalerFor[proto.Message]().wire)
	erased := &Route[testSubtopic, proto.Message]{newPayload: func() proto.Message { return new(barsv1.BarBatch) }}
	assert.NotNil(t, erased.decoder().wire, "an erased route reads the type from a payload")
	for _, syntax := range []string{"proto2", "proto3"} {
		fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
			Name: proto.String("enum.proto"), Package: proto.String("enum"), Syntax: proto.String(syntax),
			EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Level"), Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("LEVEL_UNSPECIFIED"), Number: proto.Int32(0)}}}},
			MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M"), Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("level"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_ENUM.Enum(),
				TypeName: proto.String(".enum.Level"), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}}}},
		}, nil)
		require.NoError(t, err)
		md := fd.Messages().ByName("M")
		fields, ok := schema.Strings(md)
		require.True(t, ok)
		_, ok = planWire(md, fields, map[protoreflect.FullName]*wireMessage{})
		assert.Equal(t, syntax == "proto3", ok, "%s: planned for the generated methods", syntax)
	}
}

// Bytes the generated methods might decode otherwise than proto — or
// accept where proto refuses — are decoded by proto: each case gets
// proto.Unmarshal's answer, and only well-formed ones take the methods.
func TestUnmarshalerAnswersAsProto(t *testing.T) {
	tag := func(b []byte, num protowire.Number, typ protowire.Type) []byte {
		return protowire.AppendTag(b, num, typ)
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(nil, num, protowire.BytesType), s)
	}
	msg := func(num protowire.Number, inner []byte) []byte {
		return protowire.AppendBytes(tag(nil, num, protowire.BytesType), inner)
	}
	overlong := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02} // ten bytes, 65 bits
	nested := func(depth int) []byte {
		b := str(15, "deepest")
		for range depth {
			b = msg(22, b)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		fast bool // the generated methods decode it
	}{
		{"empty", nil, true},
		{"strings, packed and sparse fields", append(append(str(15, "café"), msg(1, []byte{1, 0x80, 0x01, 3})...),
			protowire.AppendVarint(tag(nil, 100000, protowire.VarintType), 9)...), true},
		{"repeated varints unpacked", protowire.AppendVarint(tag(protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 5), 1, protowire.VarintType), 6), true},
		{"a group in an unknown field", tag(protowire.AppendVarint(tag(tag(nil, 50, protowire.StartGroupType), 1, protowire.VarintType), 1), 50, protowire.EndGroupType), true},
		{"nested within the limit", nested(maxFastDepth - 1), true},
		{"a varint past 64 bits", append(tag(nil, 25, protowire.VarintType), overlong...), false},
		{"a field number past int32", protowire.AppendVarint(protowire.AppendVarint(nil, 1<<35|1<<3), 1), false},
		{"a field number past 2^29-1", protowire.AppendVarint(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), 1), false},
		{"field number 0", protowire.AppendVarint([]byte{0x00}, 1), false},
		{"invalid UTF-8", str(15, "a\xffb"), false},
		{"invalid UTF-8 in a repeated string", append(str(16, "ok"), str(16, "\xc3")...), false},
		{"invalid UTF-8 in a oneof", str(19, "\xff"), false},
		{"invalid UTF-8 in a nested message", msg(20, str(15, "\xff")), false},
		{"a packed fixed32 run cut short", msg(9, []byte{1, 2, 3, 4, 5}), false},
		{"a packed fixed64 run cut short", msg(10, []byte{1, 2, 3, 4}), false},
		{"a packed varint past 64 bits", msg(1, overlong), false},
		{"a packed varint cut short", msg(2, []byte{0x80}), false},
		{"nested past the limit, which proto decodes", nested(maxFastDepth + 5), false},
		{"an unknown field inside a Timestamp, which proto keeps", msg(24, protowire.AppendVarint(tag(nil, 7, protowire.VarintType), 3)), false},
		{"an unknown field under an over-long tag, which proto keeps re-encoded", []byte{0xb2, 0xbd, 0x00, 0x00}, false},
		{"a known field under an over-long tag", []byte{0xfa, 0x80, 0x00, 0x01, 'x'}, true},
		{"a known field with another wire type, which proto keeps as unknown", protowire.AppendVarint(tag(nil, 15, protowire.VarintType), 1), false},
		{"a message field as a varint", protowire.AppendVarint(tag(nil, 22, protowire.VarintType), 1), false},
		{"a group ended by another number", tag(tag(nil, 50, protowire.StartGroupType), 51, protowire.EndGroupType), false},
		{"an end group alone", tag(nil, 50, protowire.EndGroupType), false},
		{"a reserved wire type", []byte{0x0e, 0x01}, false},
		{"a length past the end", []byte{0x7a, 0x05, 'a'}, false},
		{"a truncated varint", []byte{0xc8, 0x01, 0x80}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := new(wiretest.Shapes)
			wantErr := proto.Unmarshal(tc.in, want)
			dec := unmarshalerFor[*wiretest.Shapes]()
			assert.Equal(t, tc.fast, dec.decodeFast(tc.in, new(wiretest.Shapes)), "decoded by the generated methods")
			got := new(wiretest.Shapes)
			err := dec.unmarshal(tc.in, got)
			if wantErr != nil {
				require.Error(t, err)
				assert.Equal(t, wantErr.Error(), err.Error(), "proto's reason")
				return
			}
			require.NoError(t, err)
			assert.True(t, proto.Equal(want, got), "want %v\ngot  %v", want, got)
		})
	}
}

// A message type without the generated methods inside one with them is
// decoded by proto.Unmarshal from the generated code, which drops what an
// earlier occurrence of the field set; proto merges the two, so such a
// payload type is decoded by proto.
func TestUnmarshalerMergesAsProto(t *testing.T) {
	first := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "ampy.Api") // Api.name
	second := protowire.AppendString(protowire.AppendTag(nil, 4, protowire.BytesType), "v2")      // Api.version
	in := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), first)          // Foreign.api
	in = protowire.AppendBytes(protowire.AppendTag(in, 1, protowire.BytesType), second)           // Foreign.api again
	want := new(wiretest.Foreign)
	require.NoError(t, proto.Unmarshal(in, want))
	require.Equal(t, "ampy.Api", want.GetApi().GetName(), "proto merges the two")
	alone := new(wiretest.Foreign)
	require.NoError(t, alone.UnmarshalVT(in))
	require.Empty(t, alone.GetApi().GetName(), "the generated methods alone keep only the second")
	got := new(wiretest.Foreign)
	require.NoError(t, unmarshalerFor[*wiretest.Foreign]().unmarshal(in, got))
	assert.True(t, proto.Equal(want, got), "want %v\ngot  %v", want, got)
}

// fuzzTypes are the types FuzzUnmarshaler decodes, one picked by the
// input's first byte: the payloads with a oneof, a repeated string or
// well-known types, and every wire shape.
var fuzzTypes = []func() proto.Message{
	func() proto.Message { return new(wiretest.Shapes) },
	func() proto.Message { return new(barsv1.BarBatch) },
	func() proto.Message { return new(wiretest.Foreign) },
	func() proto.Message { return new(corporateactionsv1.CorporateActionBatch) },
	func() proto.Message { return new(signalsv1.SignalBatch) },
	func() proto.Message { return new(ticksv1.TickBatch) },
	func() proto.Message { return new(newsv1.NewsBatch) },
}

// FuzzUnmarshaler holds the consumer's decoder to proto.Unmarshal on any
// bytes: the same error or the same message, never a panic.
func FuzzUnmarshaler(f *testing.F) {
	at := timestamppb.New(time.Date(2026, 12, 1, 14, 30, 0, 0, time.UTC))
	seeds := []proto.Message{
		&wiretest.Shapes{I32: []int32{1, -1}, F32: []uint32{7}, Doubles: []float64{1.5}, Name: "x", Tags: []string{"a", "b"},
			Choice: &wiretest.Shapes_Child{Child: &wiretest.Shapes{Name: "c"}}, Next: &wiretest.Shapes{Level: wiretest.Level_LEVEL_HIGH}, At: at, Far: 3},
		&barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: at, Volume: 7}}},
	}
	for i, s := range seeds {
		b, err := proto.Marshal(s)
		require.NoError(f, err)
		f.Add(append([]byte{byte(i)}, b...))
	}
	f.Add([]byte{0, 0x7a, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		newMsg := fuzzTypes[int(data[0])%len(fuzzTypes)]
		data = data[1:]
		want := newMsg()
		wantErr := proto.Unmarshal(data, want)
		got := newMsg()
		err := unmarshalerOf(got).unmarshal(data, got)
		if wantErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.True(t, proto.Equal(want, got), "want %v\ngot  %v", want, got)
	})
}

// BenchmarkPayloadUnmarshal is the consumer's decoding of the 5-bar
// BarBatch of BenchmarkPayloadMarshal: proto.Unmarshal against the walk and
// the generated methods.
func BenchmarkPayloadUnmarshal(b *testing.B) {
	data, err := proto.Marshal(benchBatch())
	require.NoError(b, err)
	for _, tc := range []struct {
		name string
		dec  unmarshaler
	}{{"proto", unmarshaler{}}, {"generated", unmarshalerFor[*barsv1.BarBatch]()}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := tc.dec.unmarshal(data, new(barsv1.BarBatch)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
