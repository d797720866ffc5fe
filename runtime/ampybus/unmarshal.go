package ampybus

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// FastUnmarshaler is what protoc-gen-go-vtproto's unmarshal feature adds to
// a message type. A consumer of such a type decodes with it instead of
// proto.Unmarshal's reflection tables, faster on a BarBatch
// (BenchmarkPayloadUnmarshal), once the payload's bytes have passed the
// checks those methods skip (unmarshaler): the decoded message and every
// refusal are proto.Unmarshal's.
type FastUnmarshaler interface {
	UnmarshalVT(dAtA []byte) error
}

// maxFastDepth is how deep messages may nest in a payload the generated
// methods decode; they recurse with no limit of their own, so a deeper
// payload goes to proto.Unmarshal and its recursion limit.
const maxFastDepth = 100

// unmarshaler decodes one payload type: with its FastUnmarshaler where the
// bytes pass wire, a walk that refuses everything proto.Unmarshal refuses
// and the generated methods might not (an over-long varint, a field number
// out of range, a string that is not UTF-8, a packed run cut short, nesting
// past maxFastDepth) and anything they would decode differently (an
// unknown field inside a well-known type, which they drop; an unknown
// field under a tag longer than it needs, which proto keeps re-encoded).
// Any other payload, and one the methods refuse, is decoded by
// proto.Unmarshal, whose answer — the message or the error — is the one
// consumers get.
type unmarshaler struct {
	wire *wireMessage // nil: proto.Unmarshal decodes every payload
}

// unmarshalerFor decides once per payload type, as marshalerFor does.
func unmarshalerFor[P proto.Message]() unmarshaler {
	var zero P
	return unmarshalerOf(zero)
}

// unmarshalerOf is unmarshalerFor for the type of m, which may be a nil
// pointer. The methods are used for the types the marshal methods are
// exact for (schema.Strings) but for those with a closed enum, whose
// unknown values proto keeps as unknown fields and they do not, and those
// holding a message type without the methods (hasFastUnmarshal).
func unmarshalerOf(m proto.Message) unmarshaler {
	if _, ok := m.(FastUnmarshaler); !ok {
		return unmarshaler{}
	}
	md := m.ProtoReflect().Descriptor()
	if _, ok := schema.Strings(md); !ok {
		return unmarshaler{}
	}
	w, ok := planWire(md, map[protoreflect.FullName]*wireMessage{})
	if !ok {
		return unmarshaler{}
	}
	return unmarshaler{wire: w}
}

// unmarshal decodes b into m, a new empty message.
func (u unmarshaler) unmarshal(b []byte, m proto.Message) error {
	if u.decodeFast(b, m) {
		return nil
	}
	return proto.Unmarshal(b, m)
}

// decodeFast decodes b into m with the generated methods and says true, or
// says false and leaves m empty for proto.Unmarshal.
func (u unmarshaler) decodeFast(b []byte, m proto.Message) bool {
	fu, ok := m.(FastUnmarshaler)
	if !ok || u.wire == nil || !u.wire.valid(b, maxFastDepth) {
		return false
	}
	if fu.UnmarshalVT(b) != nil { // a known field with another wire type, which proto keeps as unknown
		proto.Reset(m)
		return false
	}
	return true
}

// wireMessage is what the walk needs of one message type: which of its
// fields hold UTF-8, messages or packed scalars.
type wireMessage struct {
	dense  []wireField // by field number, up to maxDense
	sparse map[protowire.Number]wireField
	// exact: any unknown field sends the payload to proto (a well-known
	// type, whose generated methods drop unknown fields).
	exact bool
}

// maxDense is the highest field number looked up by index; higher numbers
// are in a map.
const maxDense = 256

type wireKind uint8

const (
	wireOther   wireKind = iota // nothing to check inside its value
	wireUTF8                    // a string that must be UTF-8
	wireMsg                     // a message (or a repeated one)
	wireVarints                 // a repeated varint scalar, maybe packed
	wireFixed32                 // a repeated 4-byte scalar, maybe packed
	wireFixed64                 // a repeated 8-byte scalar, maybe packed
)

type wireField struct {
	kind  wireKind
	known bool
	msg   *wireMessage
}

// planWire plans md and every type it uses; a recursive type meets itself
// in seen. It says false for a type the generated methods do not decode as
// proto does.
func planWire(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMessage) (*wireMessage, bool) {
	if w, ok := seen[md.FullName()]; ok {
		return w, true
	}
	w := &wireMessage{exact: strings.HasPrefix(string(md.FullName()), "google.protobuf.")}
	seen[md.FullName()] = w
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		f := wireField{known: true}
		switch kind := fd.Kind(); {
		case kind == protoreflect.EnumKind && fd.Enum().IsClosed():
			return nil, false
		case kind == protoreflect.MessageKind:
			if !hasFastUnmarshal(fd.Message().FullName()) {
				return nil, false
			}
			msg, ok := planWire(fd.Message(), seen)
			if !ok {
				return nil, false
			}
			f.kind, f.msg = wireMsg, msg
		case kind == protoreflect.StringKind && schema.IsUTF8(fd):
			f.kind = wireUTF8
		case fd.IsList():
			f.kind = packedKind(kind)
		}
		if n := fd.Number(); n <= maxDense {
			if int(n) >= len(w.dense) {
				w.dense = append(w.dense, make([]wireField, int(n)+1-len(w.dense))...)
			}
			w.dense[n] = f
		} else {
			if w.sparse == nil {
				w.sparse = map[protowire.Number]wireField{}
			}
			w.sparse[n] = f
		}
	}
	return w, true
}

// vtWellKnown are the well-known types vtprotobuf's generated methods
// decode with methods of their own (its generator's wellKnownTypes, but for
// Struct, Value and ListValue, which hold a map).
var vtWellKnown = map[protoreflect.FullName]bool{
	"google.protobuf.Any": true, "google.protobuf.Duration": true, "google.protobuf.Empty": true,
	"google.protobuf.FieldMask": true, "google.protobuf.Timestamp": true,
	"google.protobuf.DoubleValue": true, "google.protobuf.FloatValue": true, "google.protobuf.Int64Value": true,
	"google.protobuf.UInt64Value": true, "google.protobuf.Int32Value": true, "google.protobuf.UInt32Value": true,
	"google.protobuf.BoolValue": true, "google.protobuf.StringValue": true, "google.protobuf.BytesValue": true,
}

// hasFastUnmarshal is whether the generated methods decode a field of type
// name with methods: for a type without them they call proto.Unmarshal,
// which resets what an earlier occurrence of the field set, where proto
// merges the two.
func hasFastUnmarshal(name protoreflect.FullName) bool {
	if strings.HasPrefix(string(name), "google.protobuf.") {
		return vtWellKnown[name]
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return false
	}
	_, ok := mt.Zero().Interface().(FastUnmarshaler)
	return ok
}

// packedKind is how a repeated scalar of kind k is packed.
func packedKind(k protoreflect.Kind) wireKind {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return wireFixed32
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return wireFixed64
	case protoreflect.StringKind, protoreflect.BytesKind:
		return wireOther
	}
	return wireVarints
}

func (w *wireMessage) field(num protowire.Number) wireField {
	if int(num) < len(w.dense) {
		return w.dense[num]
	}
	return w.sparse[num]
}

// valid walks b, an encoding of w, and says whether the generated methods
// may decode it: every tag, varint and length as strict as proto's, every
// string that must be UTF-8 valid, every packed run whole, every message
// within depth levels, and no unknown field where w is exact or under a
// tag longer than it needs.
func (w *wireMessage) valid(b []byte, depth int) bool {
	for len(b) > 0 {
		tag, n := uint64(b[0]), 1
		if tag >= 0x80 {
			tag, n = protowire.ConsumeVarint(b)
		}
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		if n < 0 || num < protowire.MinValidNumber || tag>>3 > uint64(protowire.MaxValidNumber) {
			return false
		}
		b = b[n:]
		f := w.field(num)
		if !f.known && (w.exact || n != protowire.SizeTag(num)) { // proto keeps an unknown field's tag re-encoded, the methods as sent
			return false
		}
		switch typ {
		case protowire.VarintType:
			n = varintLen(b)
		case protowire.Fixed64Type:
			n = 8
		case protowire.Fixed32Type:
			n = 4
		case protowire.BytesType:
			size, m := uint64(0), varintLen(b)
			if m == 1 {
				size = uint64(b[0])
			} else if m > 1 {
				size, _ = protowire.ConsumeVarint(b)
			}
			if m < 0 || size > uint64(len(b)-m) {
				return false
			}
			n = m + int(size)
			if f.kind != wireOther && !f.validBytes(b[m:n], depth) {
				return false
			}
		default: // groups, which only unknown fields hold here, and the reserved types
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 || n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// varintLen is the length of the varint b starts with, or -1 where
// protowire.ConsumeVarint would refuse it: cut short, or past 64 bits.
func varintLen(b []byte) int {
	for i := 0; i < len(b) && i < 10; i++ {
		if b[i] < 0x80 {
			if i == 9 && b[i] > 1 {
				return -1
			}
			return i + 1
		}
	}
	return -1
}

// validBytes checks the value of a length-delimited field f.
func (f wireField) validBytes(v []byte, depth int) bool {
	switch f.kind {
	case wireUTF8:
		return utf8.Valid(v)
	case wireMsg:
		return depth > 1 && f.msg.valid(v, depth-1)
	case wireVarints:
		for len(v) > 0 {
			n := varintLen(v)
			if n < 0 {
				return false
			}
			v = v[n:]
		}
	case wireFixed32:
		return len(v)%4 == 0
	case wireFixed64:
		return len(v)%8 == 0
	}
	return true
}
