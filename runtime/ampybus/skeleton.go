package ampybus

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Skeleton is the smallest payload the contract accepts on subtopic with
// partition key pk: empty but for the fields the keys and bound subtopic
// parameters are read from. ampybusctl pub-empty publishes it. With pk empty,
// only the fields the subtopic fixes are set.
func (r *AnyRoute) Skeleton(subtopic, pk string) (proto.Message, error) {
	return r.skeleton(subtopic, pk, func() string { return "skeleton-" + envelope.NewMessageID() }, time.Now())
}

// StableSkeleton is Skeleton with fixed fill-ins (the text "skeleton", the
// given time), so the same arguments always give the same message: for
// golden fixtures.
func (r *AnyRoute) StableSkeleton(subtopic, pk string, at time.Time) (proto.Message, error) {
	return r.skeleton(subtopic, pk, func() string { return "skeleton" }, at)
}

func (r *AnyRoute) skeleton(subtopic, pk string, fresh func() string, now time.Time) (proto.Message, error) {
	params, err := subtopicParams(r.Spec.Pattern, subtopic)
	if err != nil {
		return nil, err
	}
	m := r.newPayload()
	inPK, absent := map[string]bool{}, map[string]bool{}
	for _, name := range templateFields(r.Spec.PartitionKey) {
		inPK[name] = true
	}
	if pk != "" {
		vals, err := matchTemplate(r.Spec.PartitionKey, pk)
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			if v.value == "" { // an optional part the key leaves out
				absent[v.name] = true
				continue
			}
			if fixed, ok := params[v.name]; ok {
				if fixed != v.value {
					return nil, fmt.Errorf("%w: partition key %q gives {%s} = %q, but the topic's subtopic has %q", ErrContract, pk, v.name, v.value, fixed)
				}
				continue
			}
			if err := setKeyField(m, v.name, v.value); err != nil {
				return nil, err
			}
		}
	}
	// A time a key is built from (an order's created_at) is now; a text
	// field only the dedupe key reads (a trade id) is fresh, so each
	// skeleton is a message of its own.
	for _, t := range []string{r.Spec.PartitionKey, r.Spec.DedupeKey} {
		for _, name := range templateFields(t) {
			if leaf := pathLeaf(m.ProtoReflect().Descriptor(), name); leaf == nil || !isTimestamp(leaf) || absent[name] {
				continue
			}
			visitPath(m.ProtoReflect(), name, true, func(parent protoreflect.Message, fd protoreflect.FieldDescriptor) {
				if isTimestamp(fd) && !parent.Has(fd) {
					parent.Set(fd, protoreflect.ValueOfMessage(timestamppb.New(now).ProtoReflect()))
				}
			})
		}
	}
	for _, name := range templateFields(r.Spec.DedupeKey) {
		if _, isParam := params[name]; isParam || inPK[name] {
			continue
		}
		visitPath(m.ProtoReflect(), name, true, func(parent protoreflect.Message, fd protoreflect.FieldDescriptor) {
			if fd.Kind() == protoreflect.StringKind && parent.Get(fd).String() == "" {
				parent.Set(fd, protoreflect.ValueOfString(fresh()))
			}
		})
	}
	// Bound fields last, so the elements the keys made agree with the
	// subtopic too; a repeated field with no element binds nothing.
	for param, paths := range r.Spec.Bind {
		for _, path := range paths {
			visitPath(m.ProtoReflect(), path, false, func(parent protoreflect.Message, fd protoreflect.FieldDescriptor) {
				parent.Set(fd, protoreflect.ValueOfString(params[param]))
			})
		}
	}
	keys, err := r.Keys(subtopic, m)
	if err != nil {
		return nil, err
	}
	if pk != "" && keys.Partition != pk {
		return nil, fmt.Errorf("%w: partition key %q does not fit the template %s (it derives %q)", ErrContract, pk, r.Spec.PartitionKey, keys.Partition)
	}
	return m, nil
}

type templateValue struct{ name, value string }

var templateField = regexp.MustCompile(`\{([^{}?]+)\??\}`)

// templateFields lists the names a key template reads, optional ones
// ({horizon?}) without their mark.
func templateFields(template string) []string {
	var out []string
	for _, loc := range templateField.FindAllStringSubmatch(template, -1) {
		out = append(out, loc[1])
	}
	return out
}

// matchTemplate reads the values a key template's fields have in key. A field
// takes as little as it can, except the last, which takes the rest; an
// optional field may take nothing.
func matchTemplate(template, key string) ([]templateValue, error) {
	locs := templateField.FindAllStringSubmatchIndex(template, -1)
	var re strings.Builder
	re.WriteString("^")
	var names []string
	last := 0
	for i, loc := range locs {
		re.WriteString(regexp.QuoteMeta(template[last:loc[0]]))
		n := "+"
		if template[loc[1]-2] == '?' {
			n = "*"
		}
		if i < len(locs)-1 {
			n += "?"
		}
		re.WriteString("(." + n + ")")
		names = append(names, template[loc[2]:loc[3]])
		last = loc[1]
	}
	re.WriteString(regexp.QuoteMeta(template[last:]) + "$")
	sub := regexp.MustCompile(re.String()).FindStringSubmatch(key)
	if sub == nil {
		return nil, fmt.Errorf("%w: partition key %q does not fit the contract's template %s", ErrContract, key, template)
	}
	out := make([]templateValue, len(names))
	for i, n := range names {
		out[i] = templateValue{n, sub[i+1]}
	}
	return out, nil
}

// setKeyField sets the field at a dotted path to its text in a key: a
// string as it is, a Timestamp from RFC 3339. Messages and list elements on
// the way are made.
func setKeyField(m proto.Message, path, value string) error {
	var err error
	found := visitPath(m.ProtoReflect(), path, true, func(parent protoreflect.Message, fd protoreflect.FieldDescriptor) {
		switch {
		case fd.Kind() == protoreflect.StringKind:
			parent.Set(fd, protoreflect.ValueOfString(value))
		case isTimestamp(fd):
			t, perr := time.Parse(time.RFC3339Nano, value)
			if perr != nil {
				err = fmt.Errorf("%w: key field %s needs an RFC 3339 time, not %q", ErrContract, path, value)
				return
			}
			parent.Set(fd, protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()))
		default:
			err = fmt.Errorf("%w: key field %s is a %s; only string and Timestamp key fields can be filled from a key", ErrContract, path, fd.Kind())
		}
	})
	if !found && err == nil {
		err = fmt.Errorf("%w: %s has no field %s", ErrContract, m.ProtoReflect().Descriptor().FullName(), path)
	}
	return err
}

// visitPath calls leaf with the message holding the last field of a dotted
// path, for every element of the repeated fields on the way. With create set
// it makes what is missing (a message, a first list element, a oneof
// member); without, it visits only what is there. It reports whether the
// path names fields at all.
func visitPath(msg protoreflect.Message, path string, create bool, leaf func(parent protoreflect.Message, fd protoreflect.FieldDescriptor)) bool {
	names := strings.Split(path, ".")
	var walk func(msg protoreflect.Message, i int) bool
	walk = func(msg protoreflect.Message, i int) bool {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(names[i]))
		if fd == nil || fd.IsMap() {
			return false
		}
		last := i == len(names)-1
		if last && !fd.IsList() {
			leaf(msg, fd)
			return true
		}
		if fd.Kind() != protoreflect.MessageKind {
			return false // a repeated scalar, or a path past a scalar: nothing to fill
		}
		if fd.IsList() {
			list := msg.Mutable(fd).List()
			if list.Len() == 0 && create {
				list.Append(list.NewElement())
			}
			ok := true
			for j := range list.Len() {
				ok = walk(list.Get(j).Message(), i+1) && ok
			}
			return ok
		}
		if !create && !msg.Has(fd) {
			if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
				return true // another member is set: the path says nothing here
			}
		}
		return walk(msg.Mutable(fd).Message(), i+1)
	}
	return walk(msg, 0)
}

// pathLeaf is the last field of a dotted path, nil when the path names none.
func pathLeaf(md protoreflect.MessageDescriptor, path string) protoreflect.FieldDescriptor {
	var fd protoreflect.FieldDescriptor
	for _, name := range strings.Split(path, ".") {
		if md == nil {
			return nil
		}
		if fd = md.Fields().ByName(protoreflect.Name(name)); fd == nil {
			return nil
		}
		md = fd.Message()
	}
	return fd
}

func isTimestamp(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == "google.protobuf.Timestamp"
}
