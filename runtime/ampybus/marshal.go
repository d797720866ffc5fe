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
	strings *wireMessage // nil when nothing is left to check on the bytes
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
	w, _ := planWire(md, fields, map[protoreflect.FullName]*wireMessage{})
	return marshaler{fast: true, strings: w}
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
		if err := e.strings.checkUTF8(buf[start:]); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// checkUTF8 walks b, w's encoding just written, and refuses the first
// string that is not UTF-8, as proto.Marshal would have, descending only
// into messages that lead to one. It runs on every fast publish without a
// generated check, so the common cases (one-byte tags and lengths, varints,
// fixed widths) are decoded inline; protowire takes the rest.
func (w *wireMessage) checkUTF8(b []byte) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%s: %w", w.name, protowire.ParseError(n))
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
				return fmt.Errorf("%s: field %d: %w", w.name, num, protowire.ParseError(-1))
			}
			v := b[m : m+int(size)]
			switch f := w.field(num); {
			case f.kind == wireUTF8 && !utf8.Valid(v):
				return InvalidUTF8(string(f.fd.FullName()))
			case f.kind == wireMsg && f.msg.strings:
				if err := f.msg.checkUTF8(v); err != nil {
					return err
				}
			}
			n = m + int(size)
		default: // groups, only in unknown fields here
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%s: %w", w.name, protowire.ParseError(n))
			}
		}
		if n > len(b) {
			return fmt.Errorf("%s: field %d: %w", w.name, num, protowire.ParseError(-1))
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
