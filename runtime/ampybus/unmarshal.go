package ampybus

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

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
// exact for (schema.Strings) that they also decode as proto does
// (planWire's decodable).
func unmarshalerOf(m proto.Message) unmarshaler {
	if _, ok := m.(FastUnmarshaler); !ok {
		return unmarshaler{}
	}
	md := m.ProtoReflect().Descriptor()
	fields, ok := schema.Strings(md)
	if !ok {
		return unmarshaler{}
	}
	w, decodable := planWire(md, fields, map[protoreflect.FullName]*wireMessage{})
	if !decodable {
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
