package ampybus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Hook is the one place cross-cutting concerns attach (metrics, traces,
// logs): any value implementing one or more of PublishHook, DeliveryHook,
// SubscriptionHook and PressureHook, passed to WithHooks. Hooks run synchronously on the hot
// path, in the order given: keep them quick, and safe for concurrent use.
// With none attached the bus builds no event at all.
type Hook = any

// PublishHook sees every message the bus sends: typed and erased publishes,
// dead-letter writes, redrives and envelopes published as given.
type PublishHook interface {
	// OnPublish runs once a message is built and checked, before it is
	// sent. It may replace e.Headers.Trace (to send a trace context of its
	// own); the context it returns is the one OnPublished gets.
	OnPublish(ctx context.Context, e *PublishEvent) context.Context
	// OnPublished runs once with the outcome: the ack, or the error after
	// the domain's publish_retry gave up. Async publishes call it from the
	// goroutine that completes them.
	OnPublished(ctx context.Context, e *PublishEvent, res PublishResult, err error)
}

// DeliveryHook sees every message a subscription or replay takes from the
// broker, and what became of it.
type DeliveryHook interface {
	// OnDelivery runs when the engine takes a delivery, before any check.
	// The context it returns reaches the handler, so a span started here
	// is the parent of whatever the handler publishes.
	OnDelivery(ctx context.Context, e *DeliveryEvent) context.Context
	// OnResult runs for each outcome: every failed attempt that is retried,
	// then the one that settles the delivery (or hands it back).
	OnResult(ctx context.Context, e *DeliveryEvent, r Result)
}

// SubscriptionHook sees subscriptions and replays start and stop: where a
// lag gauge registers, and where a replay's span begins and ends.
type SubscriptionHook interface {
	OnSubscribe(ctx context.Context, e *SubscriptionEvent)
	// OnStop runs once the subscription has settled what it held; err is
	// why it stopped, if not by Stop or its context.
	OnStop(e *SubscriptionEvent, stats Stats, err error)
}

// WithHooks attaches hooks to the bus; Open fails if one implements none of
// the hook interfaces.
func WithHooks(hooks ...Hook) Option {
	return func(o *options) { o.hooks = append(o.hooks, hooks...) }
}

// hooks are a bus's hooks sorted by what they implement.
type hooks struct {
	publish  []PublishHook
	deliver  []DeliveryHook
	subs     []SubscriptionHook
	pressure []PressureHook
}

func newHooks(list []Hook) (hooks, error) {
	var h hooks
	for _, x := range list {
		p, isP := x.(PublishHook)
		d, isD := x.(DeliveryHook)
		s, isS := x.(SubscriptionHook)
		pr, isPr := x.(PressureHook)
		if !isP && !isD && !isS && !isPr {
			return h, fmt.Errorf("WithHooks: %T implements none of PublishHook, DeliveryHook, SubscriptionHook and PressureHook", x)
		}
		if isPr {
			h.pressure = append(h.pressure, pr)
		}
		if isP {
			h.publish = append(h.publish, p)
		}
		if isD {
			h.deliver = append(h.deliver, d)
		}
		if isS {
			h.subs = append(h.subs, s)
		}
	}
	return h, nil
}

// PublishKind says why the bus sends a message.
type PublishKind uint8

const (
	// KindPublish is a publish through a typed or erased route.
	KindPublish PublishKind = iota + 1
	// KindDeadLetter is a consumer's write to the dead-letter queue.
	KindDeadLetter
	// KindRedrive puts a dead letter back on its original topic.
	KindRedrive
	// KindEnvelope stores a message as given (fixtures, poison tests).
	KindEnvelope
)

func (k PublishKind) String() string {
	switch k {
	case KindPublish:
		return "publish"
	case KindDeadLetter:
		return "dead_letter"
	case KindRedrive:
		return "redrive"
	case KindEnvelope:
		return "envelope"
	}
	return "unknown"
}

// PublishEvent is one message being sent. Hooks may keep it until
// OnPublished; not after.
type PublishEvent struct {
	Kind PublishKind
	// Domain is where the message goes (the dlq domain for a dead letter).
	Domain *DomainSpec
	// Spec is the subtopic the topic matches; nil for a dead letter.
	Spec *SubtopicSpec
	// Transport is the binding's name: "nats" or "kafka".
	Transport string
	Env       string
	Topic     string
	// Producer is the sending bus's identity (WithProducer): for a dead
	// letter or a redrive, the service that wrote it, while Headers keep
	// the original producer's.
	Producer string
	// Headers are the envelope as it will travel, valid until OnPublished
	// returns: an async publish's are reused afterwards, so copy what you keep.
	Headers *envelope.Headers
	// PayloadBytes is the payload as sent: compressed when gzipped, 0 for
	// a blob pointer.
	PayloadBytes int
	Async        bool
	Start        time.Time
}

// Pattern is the topic's pattern, ampy.prod.bars.v1.{mic}.{symbol}: a
// label of bounded cardinality, unlike Topic, which has every symbol.
func (e *PublishEvent) Pattern() string { return pattern(e.Domain, e.Spec, e.Env, e.Topic) }

// DeliveryEvent is one delivery as the engine took it. Hooks may keep it
// until the OnResult that settles it; not after.
type DeliveryEvent struct {
	Domain *DomainSpec
	Spec   *SubtopicSpec
	// Transport is the binding's name: "nats" or "kafka".
	Transport string
	Env       string
	Topic     string
	// Consumer is the consumer group; empty for an ephemeral subscription.
	Consumer string
	// Replay is the request a replay serves; empty for live consumption.
	Replay string
	// Headers are as received; when they were malformed, what did parse.
	Headers      *envelope.Headers
	PayloadBytes int
	Attempt      int
	Partition    int32
	Sequence     uint64
	Received     time.Time
}

// Pattern is the topic's pattern, ampy.prod.bars.v1.{mic}.{symbol}.
func (e *DeliveryEvent) Pattern() string { return pattern(e.Domain, e.Spec, e.Env, e.Topic) }

// Outcome is what the engine did with a delivery.
type Outcome uint8

const (
	// OutcomeOK: the handler returned nil and the message was acknowledged.
	OutcomeOK Outcome = iota + 1
	// OutcomeRetry: an attempt failed and the message will be tried again.
	OutcomeRetry
	// OutcomeDeadLetter: the message was written to the dead-letter queue
	// and settled.
	OutcomeDeadLetter
	// OutcomeDuplicate: already applied; acknowledged without the handler.
	OutcomeDuplicate
	// OutcomeStale: older than the newest value of its key in a
	// latest_wins domain; acknowledged without the handler.
	OutcomeStale
	// OutcomeHandedBack: left unsettled for redelivery because the
	// subscription is stopping or the key moved to another member.
	OutcomeHandedBack
	// OutcomeObserved: read and checked by a Tap (ampybusctl sub, consume,
	// dlq-inspect), which neither handles nor dead-letters; Rejected and
	// Reason say whether a consumer would dead-letter it.
	OutcomeObserved
	// OutcomeExpired: past the contract's expiry (signals' expires_at);
	// acknowledged without the handler.
	OutcomeExpired
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeRetry:
		return "retry"
	case OutcomeDeadLetter:
		return "dlq"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeStale:
		return "stale"
	case OutcomeHandedBack:
		return "handed_back"
	case OutcomeObserved:
		return "observed"
	case OutcomeExpired:
		return "expired"
	}
	return "unknown"
}

// Result is one outcome of a delivery.
type Result struct {
	Outcome Outcome
	// Reason is the dlq_reason of a dead letter, or why an attempt is
	// retried; ReasonClass gives its bounded label.
	Reason string
	// Rejected: the message failed the consumer's checks (decode, schema,
	// keys, limits) and never reached the handler.
	Rejected bool
	// Attempt is the delivery attempt the outcome belongs to, from 1.
	Attempt int
	// Handler is the time the handler took on this attempt; 0 when it did
	// not run.
	Handler time.Duration
	// OutOfOrder: the handler saw the message flagged as a regression.
	OutOfOrder bool
	// Err is the handler's error on a failed attempt.
	Err error
}

// ReasonClass is a reason's bounded label, the text before its first
// colon: "decode_error", "schema_mismatch", "contract_violation",
// "handler", "max_attempts", "blob_error", "decompression_limit".
func ReasonClass(reason string) string {
	class, _, _ := strings.Cut(reason, ":")
	return class
}

// SubscriptionEvent is one subscription or replay.
type SubscriptionEvent struct {
	Domain *DomainSpec
	Spec   *SubtopicSpec
	// Transport is the binding's name: "nats" or "kafka".
	Transport string
	Env       string
	// Filter is the full topic pattern the subscription reads.
	Filter   string
	Consumer string
	Replay   string
	sub      *Subscription
}

// Pattern is the subscribed subtopic's pattern, ampy.prod.bars.v1.{mic}.{symbol}.
func (e *SubscriptionEvent) Pattern() string { return pattern(e.Domain, e.Spec, e.Env, e.Filter) }

// Lag is the subscription's lag (Subscription.Lag), for a gauge read on scrape.
func (e *SubscriptionEvent) Lag(ctx context.Context) (uint64, error) { return e.sub.Lag(ctx) }

func pattern(d *DomainSpec, s *SubtopicSpec, env, topic string) string {
	if s == nil || d == nil {
		return topic
	}
	return d.Prefix(env) + "." + s.Pattern
}

// publishing runs the OnPublish hooks; nil when none is attached.
func (b *Bus) publishing(ctx context.Context, kind PublishKind, spec *SubtopicSpec, d *DomainSpec, m *transport.Message, async bool) (context.Context, *PublishEvent) {
	if len(b.hooks.publish) == 0 {
		return ctx, nil
	}
	e := &PublishEvent{Kind: kind, Domain: d, Spec: spec, Transport: b.t.Name(), Env: b.env, Topic: m.Topic, Producer: b.producer, Headers: &m.Headers,
		PayloadBytes: len(m.Payload), Async: async, Start: time.Now()}
	for _, h := range b.hooks.publish {
		ctx = h.OnPublish(ctx, e)
	}
	return ctx, e
}

// published runs the OnPublished hooks for an event from publishing.
func (b *Bus) published(ctx context.Context, e *PublishEvent, res PublishResult, err error) {
	if e == nil {
		return
	}
	for _, h := range b.hooks.publish {
		h.OnPublished(ctx, e, res, err)
	}
}
