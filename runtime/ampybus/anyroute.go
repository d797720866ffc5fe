package ampybus

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// RawSubtopic is a subtopic in its topic form (XNAS.AAPL), for routes whose
// Go types are erased.
type RawSubtopic string

// String implements Subtopic.
func (s RawSubtopic) String() string { return string(s) }

// AnyMessage is a delivered message whose payload type is known only at run time.
type AnyMessage = Message[RawSubtopic, proto.Message]

// AnyRoute is a route with its Go types erased. Tools that take any topic of
// the contract (ampybusctl, fixture checks) publish and check messages through
// it, on the same code path as the generated publishers and consumers.
type AnyRoute struct {
	// Spec is the subtopic the route serves.
	Spec       *SubtopicSpec
	route      *Route[RawSubtopic, proto.Message]
	newPayload func() proto.Message
}

// Erase returns r with its types erased; generated packages list their routes
// this way for the catalog.
func Erase[S Subtopic, P proto.Message](r *Route[S, P]) *AnyRoute {
	newP := newMessageFunc[P]()
	typed := func(m proto.Message) (P, error) {
		p, ok := m.(P)
		if !ok {
			var zero P
			return zero, fmt.Errorf("%w: payload is %s, but %s carries %s", ErrContract, m.ProtoReflect().Descriptor().FullName(), r.Spec.Pattern, r.Spec.Schema.FQDN)
		}
		return p, nil
	}
	ar := &AnyRoute{Spec: r.Spec, newPayload: func() proto.Message { return newP() }}
	ar.route = &Route[RawSubtopic, proto.Message]{
		Spec:       r.Spec,
		newPayload: ar.newPayload,
		Parse: func(s string) (RawSubtopic, error) {
			if _, err := r.Parse(s); err != nil {
				return "", err
			}
			return RawSubtopic(s), nil
		},
		Keys: func(s RawSubtopic, m proto.Message) (Keys, error) {
			st, err := r.Parse(string(s))
			if err != nil {
				return Keys{}, err
			}
			p, err := typed(m)
			if err != nil {
				return Keys{}, err
			}
			return r.Keys(st, p)
		},
	}
	if r.OrderTime != nil {
		ar.route.OrderTime = func(m proto.Message) time.Time {
			if p, err := typed(m); err == nil {
				return r.OrderTime(p)
			}
			return time.Time{}
		}
	}
	return ar
}

// NewAnyRoute builds a route from functions rather than generated types:
// tools that read a contract at run time (ampybusctl --contract) interpret
// its rules over dynamic messages. parse checks a subtopic against the
// pattern; keys derives the contract's keys; orderTime, when the domain
// orders by a field, reads it (nil otherwise).
func NewAnyRoute(spec *SubtopicSpec, newPayload func() proto.Message, parse func(subtopic string) error,
	keys func(subtopic string, p proto.Message) (Keys, error), orderTime func(proto.Message) time.Time) *AnyRoute {
	return &AnyRoute{Spec: spec, newPayload: newPayload, route: &Route[RawSubtopic, proto.Message]{
		Spec:       spec,
		newPayload: newPayload,
		Parse: func(s string) (RawSubtopic, error) {
			if err := parse(s); err != nil {
				return "", err
			}
			return RawSubtopic(s), nil
		},
		Keys:      func(s RawSubtopic, p proto.Message) (Keys, error) { return keys(string(s), p) },
		OrderTime: orderTime,
	}}
}

// OrderTime is the point on the domain's ordering axis the contract reads
// from p; zero when the domain orders by no field or p carries none.
func (r *AnyRoute) OrderTime(p proto.Message) time.Time {
	if r.route.OrderTime == nil {
		return time.Time{}
	}
	return r.route.OrderTime(p)
}

// Subscribe consumes the route's messages as a generated Subscribe does
// (verification, dedupe, ordering, retries, dead-lettering), handing each
// to h with its payload as a proto.Message of the route's schema.
func (r *AnyRoute) Subscribe(ctx context.Context, b *Bus, pattern string, h func(context.Context, *AnyMessage) error, opts ...SubscribeOption) (*Subscription, error) {
	return Subscribe(ctx, b, r.route, pattern, Handler[RawSubtopic, proto.Message](h), opts...)
}

// NewPayload returns an empty payload of the route's schema.
func (r *AnyRoute) NewPayload() proto.Message { return r.newPayload() }

// Keys derives the keys the contract gives payload p on subtopic.
func (r *AnyRoute) Keys(subtopic string, p proto.Message) (Keys, error) {
	return r.route.Keys(RawSubtopic(subtopic), p)
}

// Publish publishes p to subtopic exactly as the generated publisher would:
// contract checks, derived keys, envelope, compression, size limits.
func (r *AnyRoute) Publish(ctx context.Context, b *Bus, subtopic string, p proto.Message, opts ...PublishOption) (PublishResult, error) {
	return NewPublisher(b, r.route).Publish(ctx, RawSubtopic(subtopic), p, opts...)
}

// PublishAsync is Publish without waiting for the broker's ack.
func (r *AnyRoute) PublishAsync(ctx context.Context, b *Bus, subtopic string, p proto.Message, opts ...PublishOption) (*PublishFuture, error) {
	return NewPublisher(b, r.route).PublishAsync(ctx, RawSubtopic(subtopic), p, opts...)
}

// Verify checks a stored message as every consumer of the route does and
// decodes it. A non-empty reason is why a consumer would dead-letter it; an
// error is a blob fetch that may succeed later.
func (r *AnyRoute) Verify(ctx context.Context, b *Bus, m *transport.Message) (*AnyMessage, string, error) {
	return verify(ctx, b, r.route, r.newPayload, r.Spec.Domain.Prefix(envOf(m.Topic))+".", m, nil)
}

// envOf reads the env token of a topic: ampy.{env}.….
func envOf(topic string) string {
	toks := strings.SplitN(topic, ".", 3)
	if len(toks) < 2 {
		return ""
	}
	return toks[1]
}

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
	for param, path := range r.Spec.Bind {
		if err := setString(m, path, params[param]); err != nil {
			return nil, err
		}
	}
	if pk != "" {
		vals, err := matchTemplate(r.Spec.PartitionKey, pk)
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			if fixed, ok := params[v.name]; ok {
				if fixed != v.value {
					return nil, fmt.Errorf("%w: partition key %q gives {%s} = %q, but the topic's subtopic has %q", ErrContract, pk, v.name, v.value, fixed)
				}
				continue
			}
			if err := setString(m, v.name, v.value); err != nil {
				return nil, err
			}
		}
	}
	// A time a key is built from (an order's created_at) is now; a text
	// field only the dedupe key reads (a trade id) is fresh, so each
	// skeleton is a message of its own.
	for _, t := range []string{r.Spec.PartitionKey, r.Spec.DedupeKey} {
		for _, loc := range templateField.FindAllStringSubmatch(t, -1) {
			setTimeIfUnset(m, loc[1], now)
		}
	}
	inPK := map[string]bool{}
	for _, loc := range templateField.FindAllStringSubmatch(r.Spec.PartitionKey, -1) {
		inPK[loc[1]] = true
	}
	for _, loc := range templateField.FindAllStringSubmatch(r.Spec.DedupeKey, -1) {
		if _, isParam := params[loc[1]]; !isParam && !inPK[loc[1]] && stringUnset(m, loc[1]) {
			_ = setString(m, loc[1], fresh())
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

// subtopicParams maps a pattern's parameters to their values in subtopic.
func subtopicParams(pattern, subtopic string) (map[string]string, error) {
	pt, st := strings.Split(pattern, "."), strings.Split(subtopic, ".")
	if len(pt) != len(st) {
		return nil, fmt.Errorf("%w: subtopic %q does not match %s", ErrContract, subtopic, pattern)
	}
	out := map[string]string{}
	for i, tok := range pt {
		if strings.HasPrefix(tok, "{") && strings.HasSuffix(tok, "}") {
			out[tok[1:len(tok)-1]] = st[i]
		} else if tok != st[i] {
			return nil, fmt.Errorf("%w: subtopic %q does not match %s", ErrContract, subtopic, pattern)
		}
	}
	return out, nil
}

type templateValue struct{ name, value string }

var templateField = regexp.MustCompile(`\{([^{}]+)\}`)

// matchTemplate reads the values a key template's fields have in key. A field
// takes as little as it can, except the last, which takes the rest.
func matchTemplate(template, key string) ([]templateValue, error) {
	locs := templateField.FindAllStringSubmatchIndex(template, -1)
	var re strings.Builder
	re.WriteString("^")
	var names []string
	last := 0
	for i, loc := range locs {
		re.WriteString(regexp.QuoteMeta(template[last:loc[0]]))
		if i == len(locs)-1 {
			re.WriteString("(.+)")
		} else {
			re.WriteString("(.+?)")
		}
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

// setString sets the string field at a dotted path, creating the messages
// on the way.
func setString(m proto.Message, path, value string) error {
	msg := m.ProtoReflect()
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() {
			return fmt.Errorf("%w: %s has no singular field %s", ErrContract, msg.Descriptor().FullName(), name)
		}
		if i < len(parts)-1 {
			if fd.Kind() != protoreflect.MessageKind {
				return fmt.Errorf("%w: %s.%s is not a message", ErrContract, msg.Descriptor().FullName(), name)
			}
			msg = msg.Mutable(fd).Message()
			continue
		}
		if fd.Kind() != protoreflect.StringKind {
			return fmt.Errorf("%w: key field %s is a %s; only string key fields can be filled from a key", ErrContract, path, fd.Kind())
		}
		msg.Set(fd, protoreflect.ValueOfString(value))
	}
	return nil
}

// setTimeIfUnset sets the Timestamp field at a dotted path to now when it
// is unset; a path to anything else is left alone.
func setTimeIfUnset(m proto.Message, path string, now time.Time) {
	var fds []protoreflect.FieldDescriptor
	md := m.ProtoReflect().Descriptor()
	for _, name := range strings.Split(path, ".") {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() || fd.Kind() != protoreflect.MessageKind {
			return
		}
		fds, md = append(fds, fd), fd.Message()
	}
	if md.FullName() != "google.protobuf.Timestamp" {
		return
	}
	msg := m.ProtoReflect()
	for _, fd := range fds[:len(fds)-1] {
		msg = msg.Mutable(fd).Message()
	}
	if last := fds[len(fds)-1]; !msg.Has(last) {
		msg.Set(last, protoreflect.ValueOfMessage(timestamppb.New(now).ProtoReflect()))
	}
}

// stringUnset reports a string field at a dotted path that is empty (or
// under a message that is unset).
func stringUnset(m proto.Message, path string) bool {
	msg, set := m.ProtoReflect(), true
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.IsList() || fd.IsMap() {
			return false
		}
		if i == len(parts)-1 {
			return fd.Kind() == protoreflect.StringKind && (!set || msg.Get(fd).String() == "")
		}
		if fd.Kind() != protoreflect.MessageKind {
			return false
		}
		set = set && msg.Has(fd)
		msg = msg.Get(fd).Message()
	}
	return false
}
