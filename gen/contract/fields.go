package contract

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// pathUse says what a field path is for, which decides the field kinds allowed.
type pathUse int

const (
	pathKey    pathUse = iota // a key part: a scalar, enum or Timestamp, through repeated messages too
	pathString                // a subtopic binding: a string, through repeated messages too
	pathOrder                 // an ordering field: a Timestamp or an integer sequence, through repeated messages too
)

const timestampName = "google.protobuf.Timestamp"

type pathError struct{ problem, fix string }

// resolvePath walks a dotted field path through md.
func resolvePath(md protoreflect.MessageDescriptor, path string, use pathUse) (FieldPath, *pathError) {
	fp := FieldPath{Text: path}
	cur := md
	names := strings.Split(path, ".")
	for i, name := range names {
		fd := cur.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			var all []string
			for j := 0; j < cur.Fields().Len(); j++ {
				all = append(all, string(cur.Fields().Get(j).Name()))
			}
			fix := fmt.Sprintf("fields of %s: %s", cur.FullName(), strings.Join(all, ", "))
			if s := suggest(name, all); s != "" {
				fix = fmt.Sprintf("did you mean %q?", strings.Join(append(names[:i:i], s), "."))
			}
			return fp, &pathError{fmt.Sprintf("%s has no field %q", cur.FullName(), name), fix}
		}
		fp.Fields = append(fp.Fields, fd)
		last := i == len(names)-1
		if fd.IsMap() {
			return fp, &pathError{fmt.Sprintf("field %s is a map", fd.FullName()), "name a singular or repeated field"}
		}
		if !last {
			if fd.Kind() != protoreflect.MessageKind {
				return fp, &pathError{fmt.Sprintf("field %s is a %s, so it has no field %q", fd.FullName(), fd.Kind(), names[i+1]), "stop the path at a scalar field"}
			}
			cur = fd.Message()
			continue
		}
		switch use {
		case pathOrder:
			if !IsTimestamp(fd) && !IsSequence(fd) {
				return fp, &pathError{fmt.Sprintf("field %s is a %s, neither a %s nor an integer sequence", fd.FullName(), kindLabel(fd), timestampName), "order by a Timestamp field such as event_time or as_of, or an integer sequence such as seq"}
			}
		case pathString:
			if fd.Kind() != protoreflect.StringKind {
				return fp, &pathError{fmt.Sprintf("field %s is a %s, not a string", fd.FullName(), kindLabel(fd)), "bind parameters to string fields"}
			}
		case pathKey:
			if !KeyKind(fd.Kind()) && !IsTimestamp(fd) {
				return fp, &pathError{fmt.Sprintf("field %s is a %s", fd.FullName(), kindLabel(fd)), "build keys from string, integer, bool, enum or Timestamp fields"}
			}
		}
	}
	return fp, nil
}

// Each reports whether the path reads a value per element of a repeated
// field, or only when a oneof member on the way is set: such a path is
// checked in every element that has it (bind: every bar's symbol) and, in a
// key, must give one value however many elements there are.
func (fp FieldPath) Each() bool {
	for i, fd := range fp.Fields {
		if fd.IsList() || Conditional(fd, i == len(fp.Fields)-1) {
			return true
		}
	}
	return false
}

// Conditional reports a field the path reads only when it is set: a message
// member of a real oneof, before the path's end. A path through a split of a
// corporate action says nothing about a dividend.
func Conditional(fd protoreflect.FieldDescriptor, last bool) bool {
	o := fd.ContainingOneof()
	return !last && o != nil && !o.IsSynthetic() && fd.Kind() == protoreflect.MessageKind
}

// KeyKind reports whether a field of kind k may be part of a key.
func KeyKind(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BoolKind, protoreflect.EnumKind,
		protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// IsTimestamp reports a google.protobuf.Timestamp field. As a key part it
// reads as RFC 3339 in UTC with as many fraction digits as it has
// (2025-09-05T19:31:01.5Z): a time tells one version of an entity from the
// next, as an order's amend from its submit.
func IsTimestamp(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == timestampName
}

// IsSequence reports an integer field, which can order messages as a
// sequence number (a larger number is newer; 0 means none).
func IsSequence(fd protoreflect.FieldDescriptor) bool {
	return KeyKind(fd.Kind()) && fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BoolKind && fd.Kind() != protoreflect.EnumKind
}

func kindLabel(fd protoreflect.FieldDescriptor) string {
	if fd.Kind() == protoreflect.MessageKind {
		return "message " + string(fd.Message().FullName())
	}
	return fd.Kind().String()
}
