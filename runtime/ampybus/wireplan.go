package ampybus

import (
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// wireMessage is one message type as the payload codec walks its encoding
// without decoding it: the publisher's UTF-8 check on bytes it wrote
// (marshaler) and the consumer's check before the generated decoder
// (unmarshaler) share it. It says which fields hold UTF-8, messages or
// packed scalars.
type wireMessage struct {
	name   protoreflect.FullName
	dense  []wireField // by field number, up to maxDense
	sparse map[protowire.Number]wireField
	// exact: any unknown field sends the payload to proto (a well-known
	// type, whose generated methods drop unknown fields).
	exact bool
	// strings: the type, or one it leads to, holds a string that must be
	// UTF-8 (schema.Strings); a walk for those alone skips the rest.
	strings bool
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
	fd    protoreflect.FieldDescriptor // names a string that is not UTF-8
}

// planWire plans md and every type it uses; fields is schema.Strings of md,
// and a recursive type meets itself in seen. decodable says whether the
// generated methods decode md as proto does: not with a closed enum, whose
// unknown values proto keeps as unknown fields and they do not, nor with a
// message type that lacks the methods (hasFastUnmarshal).
func planWire(md protoreflect.MessageDescriptor, fields schema.UTF8Fields, seen map[protoreflect.FullName]*wireMessage) (w *wireMessage, decodable bool) {
	if w, ok := seen[md.FullName()]; ok {
		return w, true
	}
	_, hasStrings := fields[md.FullName()]
	w = &wireMessage{name: md.FullName(), exact: strings.HasPrefix(string(md.FullName()), "google.protobuf."), strings: hasStrings}
	seen[md.FullName()] = w
	decodable = true
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		f := wireField{known: true, fd: fd}
		switch kind := fd.Kind(); {
		case kind == protoreflect.EnumKind && fd.Enum().IsClosed():
			decodable = false
		case kind == protoreflect.MessageKind:
			msg, ok := planWire(fd.Message(), fields, seen)
			decodable = decodable && ok && hasFastUnmarshal(fd.Message().FullName())
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
	return w, decodable
}

func (w *wireMessage) field(num protowire.Number) wireField {
	if int(num) < len(w.dense) {
		return w.dense[num]
	}
	return w.sparse[num]
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
