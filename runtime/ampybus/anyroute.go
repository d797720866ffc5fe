package ampybus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

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
	ar.route.OrderTime = erasedTime(r.OrderTime, typed)
	ar.route.ExpiresAt = erasedTime(r.ExpiresAt, typed)
	return ar
}

// erasedTime is a payload time reader over erased payloads; nil for nil.
func erasedTime[P proto.Message](read func(P) time.Time, typed func(proto.Message) (P, error)) func(proto.Message) time.Time {
	if read == nil {
		return nil
	}
	return func(m proto.Message) time.Time {
		if p, err := typed(m); err == nil {
			return read(p)
		}
		return time.Time{}
	}
}

// RouteFuncs are a subtopic's contract rules as functions over dynamic
// messages, for NewAnyRoute.
type RouteFuncs struct {
	// Parse checks a subtopic against the pattern.
	Parse func(subtopic string) error
	// Keys derives the contract's keys, bind checks first.
	Keys func(subtopic string, p proto.Message) (Keys, error)
	// OrderTime reads the field the domain orders by; nil when it orders by none.
	OrderTime func(proto.Message) time.Time
	// ExpiresAt reads the time after which a message is no longer current;
	// nil when the domain's messages do not expire.
	ExpiresAt func(proto.Message) time.Time
}

// NewAnyRoute builds a route from functions rather than generated types:
// tools that read a contract at run time (ampybusctl --contract) interpret
// its rules over dynamic messages.
func NewAnyRoute(spec *SubtopicSpec, newPayload func() proto.Message, f RouteFuncs) *AnyRoute {
	return &AnyRoute{Spec: spec, newPayload: newPayload, route: &Route[RawSubtopic, proto.Message]{
		Spec:       spec,
		newPayload: newPayload,
		Parse: func(s string) (RawSubtopic, error) {
			if err := f.Parse(s); err != nil {
				return "", err
			}
			return RawSubtopic(s), nil
		},
		Keys:      func(s RawSubtopic, p proto.Message) (Keys, error) { return f.Keys(string(s), p) },
		OrderTime: f.OrderTime,
		ExpiresAt: f.ExpiresAt,
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

// ExpiresAt is the time after which p is no longer current, as the
// contract's ordering expires: reads it; zero when the domain's messages do
// not expire or p carries none.
func (r *AnyRoute) ExpiresAt(p proto.Message) time.Time {
	if r.route.ExpiresAt == nil {
		return time.Time{}
	}
	return r.route.ExpiresAt(p)
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
