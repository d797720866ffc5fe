package ampybus

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FastMarshaler is what protoc-gen-go-vtproto's size and marshal features
// (--go-vtproto_opt=features=size+marshal) add to a message type. A
// publisher of such a type encodes with them instead of proto.Marshal's
// reflection tables — about twice as fast on a BarBatch, the UTF-8 check
// included (BenchmarkPayloadMarshal) — and gives the same bytes and the
// same refusals (marshaler). One difference stays: unknown fields inside a
// well-known type (a Timestamp decoded from bytes that carried some) are
// not written, since vtprotobuf's methods for those types cannot see them.
type FastMarshaler interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
}

// marshaler encodes one payload type: with its FastMarshaler where that
// writes what proto.MarshalOptions{Deterministic: true} writes, else with
// proto itself. The generated methods skip three things proto does, so a
// type that needs any of them keeps proto: map entries in key order
// (deterministic), extensions, and the check of proto2 required fields. The
// fourth, refusing invalid UTF-8 in a string field that must hold UTF-8, is
// done on the encoded bytes (strings).
type marshaler struct {
	fast    bool
	strings *stringFields // nil when no string field in the type must hold UTF-8
}

// marshalerFor decides once per payload type: P's zero value says whether
// the concrete type has the methods (an interface P, as AnyRoute's, has
// none) and, through its descriptor, whether they are exact for it.
func marshalerFor[P proto.Message]() marshaler {
	var zero P
	return marshalerOf(zero)
}

// marshalerOf is marshalerFor for the type of m, which may be a nil pointer.
func marshalerOf(m proto.Message) marshaler {
	if _, ok := m.(FastMarshaler); !ok {
		return marshaler{}
	}
	seen := map[protoreflect.FullName]*stringFields{}
	strs, ok := planStrings(m.ProtoReflect().Descriptor(), seen)
	if !ok {
		return marshaler{}
	}
	if !prune(seen)[strs] {
		strs = nil
	}
	return marshaler{fast: true, strings: strs}
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

// planStrings maps d's strings, and says false when d's generated methods
// are not exact for it (see marshaler). A recursive type meets itself in
// seen and is mapped once.
func planStrings(d protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*stringFields) (*stringFields, bool) {
	if p, ok := seen[d.FullName()]; ok {
		return p, true
	}
	if d.ExtensionRanges().Len() > 0 {
		return nil, false
	}
	p := &stringFields{name: d.FullName()}
	seen[d.FullName()] = p
	fds := d.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		switch {
		case fd.IsMap(), fd.Cardinality() == protoreflect.Required, fd.Kind() == protoreflect.GroupKind:
			return nil, false
		case fd.Kind() == protoreflect.StringKind && enforcesUTF8(fd):
			p.fields = append(p.fields, stringField{num: fd.Number(), fd: fd, utf8: true})
		case fd.Kind() == protoreflect.MessageKind:
			sub, ok := planStrings(fd.Message(), seen)
			if !ok {
				return nil, false
			}
			p.fields = append(p.fields, stringField{num: fd.Number(), fd: fd, msg: sub})
		}
	}
	return p, true
}

// prune drops from every plan the message fields that lead to no string to
// check, so check skips them unread, and says which plans hold one. A
// recursive type needs the fixpoint: whether it holds a string may be known
// only after its own fields are.
func prune(plans map[protoreflect.FullName]*stringFields) map[*stringFields]bool {
	has := map[*stringFields]bool{}
	for changed := true; changed; {
		changed = false
		for _, p := range plans {
			if has[p] {
				continue
			}
			for _, f := range p.fields {
				if f.utf8 || has[f.msg] {
					has[p], changed = true, true
					break
				}
			}
		}
	}
	for _, p := range plans {
		p.fields = slices.DeleteFunc(p.fields, func(f stringField) bool { return !f.utf8 && !has[f.msg] })
	}
	return has
}

// enforcesUTF8 is whether proto.Marshal refuses invalid UTF-8 in fd: proto3
// strings, and editions strings unless utf8_validation is NONE.
func enforcesUTF8(fd protoreflect.FieldDescriptor) bool {
	if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
		return e.EnforceUTF8()
	}
	return fd.Syntax() == protoreflect.Proto3
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
					return fmt.Errorf("string field %s contains invalid UTF-8", f.fd.FullName())
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

func (p *stringFields) field(num protowire.Number) *stringField {
	for i := range p.fields {
		if p.fields[i].num == num {
			return &p.fields[i]
		}
	}
	return nil
}
