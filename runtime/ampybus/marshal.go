package ampybus

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ampyfin/ampy-bus/runtime/schema"
)

// FastMarshaler is what protoc-gen-go-vtproto's size and marshal features
// (--go-vtproto_opt=features=size+marshal) add to a message type. A
// publisher of such a type encodes with them instead of proto.Marshal's
// reflection tables, several times as fast on a BarBatch
// (BenchmarkPayloadMarshal), and gives the same bytes and the same
// refusals (marshaler). One difference stays: unknown fields inside a
// well-known type (a Timestamp decoded from bytes that carried some) are
// not written, since vtprotobuf's methods for those types cannot see them.
type FastMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
}

// marshaler encodes one payload type: with its FastMarshaler where that
// writes what proto.MarshalOptions{Deterministic: true} writes, else with
// proto itself (schema.Strings says which). The one check the generated
// methods skip, refusing invalid UTF-8 in a string that must hold UTF-8, is
// made on the encoded bytes (strings), or before encoding by the route's
// generated CheckUTF8, which reads the strings through their getters and
// costs a fraction of the walk.
type marshaler struct {
	fast    bool
	strings *stringFields // nil when nothing is left to check on the bytes
}

// marshalerFor decides once per payload type: P's zero value says whether
// the concrete type has the methods (an interface P, as AnyRoute's, has
// none) and, through its descriptor, whether they are exact for it.
// checked says the caller checks the strings itself.
func marshalerFor[P proto.Message](checked bool) marshaler {
	var zero P
	return marshalerOf(zero, checked)
}

// marshalerOf is marshalerFor for the type of m, which may be a nil pointer.
func marshalerOf(m proto.Message, checked bool) marshaler {
	if _, ok := m.(FastMarshaler); !ok {
		return marshaler{}
	}
	md := m.ProtoReflect().Descriptor()
	fields, ok := schema.Strings(md)
	if !ok {
		return marshaler{}
	}
	if checked || len(fields) == 0 {
		return marshaler{fast: true}
	}
	return marshaler{fast: true, strings: planStrings(md, fields, map[protoreflect.FullName]*stringFields{})}
}

// marshal appends msg's encoding to buf.
func (e marshaler) marshal(buf []byte, msg proto.Message) ([]byte, error) {
	fm, ok := msg.(FastMarshaler)
	if !e.fast || !ok {
		return proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, msg)
	}
	if buf == nil {
		buf = []byte{} // an empty message is an empty payload, not none, as with proto
	}
	n, start := fm.SizeVT(), len(buf)
	buf = slices.Grow(buf, n)[:start+n]
	w, err := fm.MarshalToSizedBufferVT(buf[start:])
	if err != nil {
		return nil, err
	}
	if w != n { // the methods fill the buffer from its end
		copy(buf[start:], buf[start+n-w:])
		buf = buf[:start+w]
	}
	if e.strings != nil {
		if err := e.strings.check(buf[start:]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// stringFields is where a message's UTF-8 strings are on the wire: its
// string fields that must hold UTF-8 and its message fields that lead to
// one. A field number absent from it is skipped unread.
type stringFields struct {
	name   protoreflect.FullName
	fields []stringField
}

type stringField struct {
	num  protowire.Number
	fd   protoreflect.FieldDescriptor
	utf8 bool          // a string that must be UTF-8
	msg  *stringFields // a message holding such strings
}

// planStrings is md's plan from schema.Strings; a recursive type meets
// itself in seen and is planned once.
func planStrings(md protoreflect.MessageDescriptor, fields schema.UTF8Fields, seen map[protoreflect.FullName]*stringFields) *stringFields {
	if p, ok := seen[md.FullName()]; ok {
		return p
	}
	p := &stringFields{name: md.FullName()}
	seen[md.FullName()] = p
	for _, fd := range fields[md.FullName()] {
		f := stringField{num: fd.Number(), fd: fd}
		if fd.Kind() == protoreflect.MessageKind {
			f.msg = planStrings(fd.Message(), fields, seen)
		} else {
			f.utf8 = true
		}
		p.fields = append(p.fields, f)
	}
	return p
}

// check walks b, p's encoding just written, and refuses the first string
// that is not UTF-8, as proto.Marshal would have. It runs on every fast
// publish, so the common cases (one-byte tags and lengths, varints, fixed
// widths) are decoded inline; protowire takes the rest.
func (p *stringFields) check(b []byte) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%s: %w", p.name, protowire.ParseError(n))
		}
		b = b[n:]
		num, typ := protowire.DecodeTag(tag)
		switch typ {
		case protowire.VarintType:
			n = 0
			for n < len(b) && b[n] >= 0x80 {
				n++
			}
			n++ // the last byte
		case protowire.Fixed64Type:
			n = 8
		case protowire.Fixed32Type:
			n = 4
		case protowire.BytesType:
			size, m := uvarint(b)
			if m <= 0 || size > uint64(len(b)-m) {
				return fmt.Errorf("%s: field %d: %w", p.name, num, protowire.ParseError(-1))
			}
			v := b[m : m+int(size)]
			if f := p.field(num); f != nil {
				if f.utf8 && !utf8.Valid(v) {
					return InvalidUTF8(string(f.fd.FullName()))
				}
				if f.msg != nil {
					if err := f.msg.check(v); err != nil {
						return err
					}
				}
			}
			n = m + int(size)
		default: // groups, only in unknown fields here
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%s: %w", p.name, protowire.ParseError(n))
			}
		}
		if n > len(b) {
			return fmt.Errorf("%s: field %d: %w", p.name, num, protowire.ParseError(-1))
		}
		b = b[n:]
	}
	return nil
}

// uvarint is protowire.ConsumeVarint with the one-byte case inline.
func uvarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return protowire.ConsumeVarint(b)
}

// InvalidUTF8 is the error for a string field, named in full, that holds
// invalid UTF-8, as proto.Marshal refuses it; generated CheckUTF8
// functions return it.
func InvalidUTF8(field string) error {
	return fmt.Errorf("string field %s contains invalid UTF-8", field)
}

func (p *stringFields) field(num protowire.Number) *stringField {
	for i := range p.fields {
		if p.fields[i].num == num {
			return &p.fields[i]
		}
	}
	return nil
}
