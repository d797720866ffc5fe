package schema

import (
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// UTF8Fields are, for each message type of a payload that holds a string
// proto requires be UTF-8, the fields on the way to one: the strings
// themselves and the message fields that lead to one, in declaration
// order. A type with none is absent.
type UTF8Fields map[protoreflect.FullName][]protoreflect.FieldDescriptor

// Strings returns the UTF8Fields of md and every type it uses, for an
// encoder that skips proto's UTF-8 check and must make it itself: the
// generated vtprotobuf marshal methods a publisher prefers. It says false
// when those methods would not write what proto.MarshalOptions{
// Deterministic: true} writes for md, so proto must encode it: a map
// anywhere in its types (they leave key order to Go), an extension range
// (they drop extensions), a group or a proto2 required field (they do not
// check it).
func Strings(md protoreflect.MessageDescriptor) (UTF8Fields, bool) {
	var types []protoreflect.MessageDescriptor
	seen := map[protoreflect.FullName]bool{}
	var visit func(md protoreflect.MessageDescriptor) bool
	visit = func(md protoreflect.MessageDescriptor) bool {
		if seen[md.FullName()] {
			return true
		}
		seen[md.FullName()] = true
		if md.ExtensionRanges().Len() > 0 {
			return false
		}
		types = append(types, md)
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			switch {
			case fd.IsMap(), fd.Cardinality() == protoreflect.Required, fd.Kind() == protoreflect.GroupKind:
				return false
			case fd.Kind() == protoreflect.MessageKind && !visit(fd.Message()):
				return false
			}
		}
		return true
	}
	if !visit(md) {
		return nil, false
	}
	// A type holds a string when a field is one or leads to a type that
	// holds one; a recursive type needs the fixpoint.
	has := map[protoreflect.FullName]bool{}
	leads := func(fd protoreflect.FieldDescriptor) bool {
		return IsUTF8(fd) || fd.Kind() == protoreflect.MessageKind && has[fd.Message().FullName()]
	}
	for changed := true; changed; {
		changed = false
		for _, t := range types {
			if !has[t.FullName()] && slices.ContainsFunc(fieldsOf(t), leads) {
				has[t.FullName()], changed = true, true
			}
		}
	}
	out := UTF8Fields{}
	for _, t := range types {
		if has[t.FullName()] {
			out[t.FullName()] = slices.DeleteFunc(fieldsOf(t), func(fd protoreflect.FieldDescriptor) bool { return !leads(fd) })
		}
	}
	return out, true
}

// fieldsOf lists md's fields in declaration order.
func fieldsOf(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	fds := make([]protoreflect.FieldDescriptor, md.Fields().Len())
	for i := range fds {
		fds[i] = md.Fields().Get(i)
	}
	return fds
}

// IsUTF8 is whether proto refuses invalid UTF-8 in fd, encoding or
// decoding: proto3 strings, and editions strings unless utf8_validation is
// NONE.
func IsUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.StringKind {
		return false
	}
	if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
		return e.EnforceUTF8()
	}
	return fd.Syntax() == protoreflect.Proto3
}
