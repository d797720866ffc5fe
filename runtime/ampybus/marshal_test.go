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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/internal/wiretest"
	_ "github.com/ampyfin/ampy-bus/proto/ampy"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	metricsv1 "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// Every AmpyFin payload type, filled at random many times, encodes to the
// bytes proto.MarshalOptions{Deterministic: true} gives, unknown fields
// included; every one but those with a map takes the generated methods.
func TestMarshalerGivesProtosBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	types := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		name := string(mt.Descriptor().FullName())
		if !strings.HasPrefix(name, "ampy.") {
			return true
		}
		types++
		enc := marshalerOf(mt.Zero().Interface(), false)
		assert.Equal(t, !hasMap(mt.Descriptor(), map[protoreflect.FullName]bool{}), enc.fast, "%s takes the generated methods unless a map needs proto's key order", name)
		for i := range 50 {
			m := mt.New()
			fill(r, m, 0)
			if i%5 == 0 {
				m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9999, protowire.VarintType), uint64(i)))
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
			require.NoError(t, err, name)
			prefix := []byte("kept")
			got, err := enc.marshal(prefix, m.Interface())
			require.NoError(t, err, name)
			require.Equal(t, "kept", string(got[:4]), "%s: what buf held is kept", name)
			require.Equal(t, want, got[4:], "%s, fill %d", name, i)
		}
		return true
	})
	assert.GreaterOrEqual(t, types, 20, "payload types checked")
}

// The generated methods encode and decode only the types they encode and
// decode as proto does.
func TestCodecFallsBackToProto(t *testing.T) {
	for _, tc := range []struct {
		name           string
		msg            proto.Message
		encode, decode bool // by the generated methods
	}{
		{"generated methods", (*barsv1.BarBatch)(nil), true, true},
		{"every wire shape", (*wiretest.Shapes)(nil), true, true},
		{"a map: proto sorts its keys", (*metricsv1.Metric)(nil), false, false},
		{"a type without the methods inside: they would not merge it", (*wiretest.Foreign)(nil), true, false},
		{"no generated methods", (*durationpb.Duration)(nil), false, false},
		{"an interface type, as AnyRoute's", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.encode, marshalerOf(tc.msg, false).fast, "encoded by the methods")
			assert.Equal(t, tc.decode, unmarshalerOf(tc.msg).wire != nil, "decoded by the methods")
		})
	}
	assert.False(t, marshalerFor[proto.Message](false).fast)
	assert.True(t, marshalerFor[*barsv1.BarBatch](false).fast)
	assert.NotNil(t, marshalerFor[*barsv1.BarBatch](false).strings, "the strings are checked on the bytes")
	assert.Nil(t, marshalerFor[*barsv1.BarBatch](true).strings, "the route's CheckUTF8 checks them")
}

// A publisher takes the route's generated CheckUTF8 where it encodes with
// the generated methods, and then walks no bytes; without one it walks them.
func TestPublisherPrefersTheRoutesCheck(t *testing.T) {
	spec := &SubtopicSpec{Domain: &DomainSpec{Namespace: "ampy", Name: "bars", Version: "v1"}}
	checked := &Route[testSubtopic, *barsv1.BarBatch]{Spec: spec, CheckUTF8: func(*barsv1.BarBatch) error { return nil }}
	p := NewPublisher(&Bus{}, checked)
	assert.True(t, p.enc.fast)
	assert.NotNil(t, p.checkUTF8)
	assert.Nil(t, p.enc.strings)
	p = NewPublisher(&Bus{}, &Route[testSubtopic, *barsv1.BarBatch]{Spec: spec})
	assert.Nil(t, p.checkUTF8)
	assert.NotNil(t, p.enc.strings)
	// proto encodes a Metric (a map): it checks, and the route's is not called.
	m := NewPublisher(&Bus{}, &Route[testSubtopic, *metricsv1.Metric]{Spec: spec, CheckUTF8: func(*metricsv1.Metric) error { return nil }})
	assert.False(t, m.enc.fast)
	assert.Nil(t, m.checkUTF8)
}

type testSubtopic struct{}

func (testSubtopic) String() string { return "x" }

// A string proto3 says must be UTF-8 is refused by either encoder, naming
// the field, however deep it is.
func TestMarshalerRefusesInvalidUTF8(t *testing.T) {
	bad := &barsv1.BarBatch{Bars: []*barsv1.Bar{
		{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}},
		{Security: &commonv1.SecurityId{Symbol: "AA\xffPL", Mic: "XNAS"}},
	}}
	_, protoErr := proto.MarshalOptions{Deterministic: true}.Marshal(bad)
	require.Error(t, protoErr)
	enc := marshalerFor[*barsv1.BarBatch](false)
	require.True(t, enc.fast)
	_, err := enc.marshal(nil, bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ampy.common.v1.SecurityId.symbol")
	assert.Contains(t, err.Error(), "invalid UTF-8")
}

// A recursive type is planned once, and the walk finds a bad string only
// the recursion leads to.
func TestStringPlanOfRecursiveType(t *testing.T) {
	outerDesc := recursiveTypes(t)
	fields, ok := schema.Strings(outerDesc)
	require.True(t, ok)
	outer, _ := planWire(outerDesc, fields, map[protoreflect.FullName]*wireMessage{})
	assert.Equal(t, wireOther, outer.field(2).kind, "Outer.n holds no string")
	inner := outer.field(1).msg
	require.NotNil(t, inner)
	assert.Same(t, outer, inner.field(1).msg)
	assert.Equal(t, wireUTF8, inner.field(2).kind, "Inner.s")
	assert.True(t, outer.strings && inner.strings, "Outer and Inner lead to Inner.s")
	assert.False(t, inner.field(3).msg.strings, "Inner.leaf leads to no string")

	// Outer{inner: {outer: {inner: {s: "\xff"}}, s: "ok", leaf: {v: 5}}, n: 7}, written by hand.
	deep := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "\xff")
	l2 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), deep) // Outer.inner
	l1 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), l2)   // Inner.outer
	l1 = protowire.AppendString(protowire.AppendTag(l1, 2, protowire.BytesType), "ok")
	l1 = protowire.AppendBytes(protowire.AppendTag(l1, 3, protowire.BytesType), protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5))
	top := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), l1)
	top = protowire.AppendVarint(protowire.AppendTag(top, 2, protowire.VarintType), 7)
	err := outer.checkUTF8(top)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rec.Inner.s")
	assert.NoError(t, outer.checkUTF8(append(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
		protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "fine")), top[len(top)-2:]...)))
	assert.Error(t, outer.checkUTF8([]byte{0x0a, 0x05, 0x01}), "a truncated field is an error, not a pass")
}

// recursiveTypes compiles
//
//	message Outer { Inner inner = 1; int64 n = 2; }
//	message Inner { Outer outer = 1; string s = 2; Leaf leaf = 3; }
//	message Leaf { int64 v = 1; }
//
// and returns Outer.
func recursiveTypes(t *testing.T) protoreflect.MessageDescriptor {
	msg := func(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
	}
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("rec.proto"), Package: proto.String("rec"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			msg("Outer", field("inner", 1, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".rec.Inner"), field("n", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, "")),
			msg("Inner", field("outer", 1, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".rec.Outer"), field("s", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
				field("leaf", 3, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, ".rec.Leaf")),
			msg("Leaf", field("v", 1, descriptorpb.FieldDescriptorProto_TYPE_INT64, "")),
		},
	}, nil)
	require.NoError(t, err)
	return fd.Messages().ByName("Outer")
}

func hasMap(d protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[d.FullName()] {
		return false
	}
	seen[d.FullName()] = true
	for i := range d.Fields().Len() {
		fd := d.Fields().Get(i)
		if fd.IsMap() || fd.Message() != nil && hasMap(fd.Message(), seen) {
			return true
		}
	}
	return false
}

// fill sets most of m's fields to random values, messages four deep.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if r.IntN(5) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				continue
			}
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				mp.Set(scalar(r, fd.MapKey()).MapKey(), scalar(r, fd.MapValue()))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range 1 + r.IntN(3) {
				if fd.Message() != nil {
					if depth > 3 {
						break
					}
					e := l.NewElement()
					fill(r, e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(scalar(r, fd))
				}
			}
		case fd.Message() != nil:
			if depth <= 3 {
				fill(r, m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, scalar(r, fd))
		}
	}
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 1)
	case protoreflect.EnumKind:
		vs := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vs.Get(r.IntN(vs.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(r.Int32() - r.Int32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(r.Int64() - r.Int64())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64() >> r.IntN(64))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32() * 1e6)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.NormFloat64() * 1e9)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString([]string{"", "AAPL", "XNAS", "café ü 日本", strings.Repeat("x", r.IntN(200))}[r.IntN(5)])
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("kind " + fd.Kind().String())
}

// BenchmarkPayloadMarshal is the publisher's encoding of a 5-bar BarBatch
// (about 440 bytes): proto.Marshal's tables against the generated methods
// with the UTF-8 check on their output, and without it (what a type with no
// string to check costs).
func BenchmarkPayloadMarshal(b *testing.B) {
	batch := benchBatch()
	for _, tc := range []struct {
		name string
		enc  marshaler
	}{{"proto", marshaler{}}, {"generated", marshalerFor[*barsv1.BarBatch](false)}, {"generated-unchecked", marshaler{fast: true}}} {
		b.Run(tc.name, func(b *testing.B) {
			var buf []byte
			var err error
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = tc.enc.marshal(buf[:0], batch); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// benchBatch is a 5-bar BarBatch, about 440 bytes encoded.
func benchBatch() *barsv1.BarBatch {
	at := timestamppb.New(time.Date(2026, 12, 1, 14, 30, 0, 0, time.UTC))
	batch := &barsv1.BarBatch{}
	for i := range 5 {
		batch.Bars = append(batch.Bars, &barsv1.Bar{
			Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: at, End: at, EventTime: at,
			Open: &commonv1.Decimal{Scaled: 1919900 + int64(i), Scale: 4}, High: &commonv1.Decimal{Scaled: 1921000, Scale: 4},
			Low: &commonv1.Decimal{Scaled: 1918800, Scale: 4}, Close: &commonv1.Decimal{Scaled: 1920500, Scale: 4},
			Volume: 120345, TradeCount: 812, Adjusted: true, AdjustmentPolicy: commonv1.AdjustmentPolicy_ADJUSTMENT_POLICY_SPLIT_DIVIDEND,
		})
	}
	return batch
}

// FuzzMarshaler holds the generated encoding to proto's on any BarBatch a
// decoder accepts, unknown fields included but for those inside a
// well-known type (FastMarshaler), and the UTF-8 walk to an answer, never a
// panic, on any bytes.
func FuzzMarshaler(f *testing.F) {
	enc := marshalerFor[*barsv1.BarBatch](false)
	seed, err := proto.Marshal(&barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Volume: 7}}})
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte{0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff})
	f.Add([]byte{0x0b, 0x0c})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = enc.strings.checkUTF8(data)
		var m barsv1.BarBatch
		if proto.Unmarshal(data, &m) != nil {
			return
		}
		got, err := enc.marshal(nil, &m)
		dropWellKnownUnknowns(m.ProtoReflect())
		want, wantErr := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
		if wantErr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}

// dropWellKnownUnknowns clears the unknown fields of every well-known type
// in m, which vtprotobuf's methods for those types do not write.
func dropWellKnownUnknowns(m protoreflect.Message) {
	if strings.HasPrefix(string(m.Descriptor().FullName()), "google.protobuf.") {
		m.SetUnknown(nil)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				dropWellKnownUnknowns(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
				dropWellKnownUnknowns(e.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			dropWellKnownUnknowns(v.Message())
		}
		return true
	})
}
