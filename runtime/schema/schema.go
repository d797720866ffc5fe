// Package schema fingerprints payload types, so a consumer can tell that a
// message was produced against exactly the schema it was compiled with.
package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// HashPrefix names the algorithm in every hash this package writes.
const HashPrefix = "sha256:"

// Hash returns "sha256:<hex>" over the descriptor of md and of every message
// and enum it references, transitively, in name order. It changes when any
// field, number, type or name the payload depends on changes, and not when an
// unrelated message in the same file does.
func Hash(md protoreflect.MessageDescriptor) string {
	seen := map[protoreflect.FullName]protoreflect.Descriptor{}
	collect(md, seen)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, string(n))
	}
	sort.Strings(names)
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, n := range names {
		var m proto.Message
		switch d := seen[protoreflect.FullName(n)].(type) {
		case protoreflect.MessageDescriptor:
			m = protodesc.ToDescriptorProto(d)
		case protoreflect.EnumDescriptor:
			m = protodesc.ToEnumDescriptorProto(d)
		}
		b, err := opts.Marshal(m)
		if err != nil {
			panic("schema: marshal descriptor " + n + ": " + err.Error())
		}
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(b)
	}
	return HashPrefix + hex.EncodeToString(h.Sum(nil))
}

func collect(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]protoreflect.Descriptor) {
	if _, ok := seen[md.FullName()]; ok {
		return
	}
	seen[md.FullName()] = md
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if m := f.Message(); m != nil {
			collect(m, seen)
		}
		if e := f.Enum(); e != nil {
			seen[e.FullName()] = e
		}
	}
}
