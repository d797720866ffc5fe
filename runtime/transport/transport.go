// Package transport is the boundary between the bus and a broker. A binding
// (NATS JetStream, Kafka) implements Transport; everything above it — keys,
// envelopes, retries, ordering, dead letters — is broker-neutral.
package transport

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Sentinel errors a caller may branch on. Bindings wrap them.
var (
	// ErrUnavailable: the broker cannot be reached, refused service or did
	// not answer in time. A publish that fails with it was not acknowledged;
	// the bus retries it under the domain's publish_retry.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrMaybeStored: the publish failed after the request reached the
	// broker (an ack that timed out, a connection lost in flight), so the
	// message may be stored. Bindings wrap it together with ErrUnavailable.
	ErrMaybeStored = errors.New("the broker may have stored the message")
	// ErrTooLarge: the message exceeds what the stream or topic accepts.
	ErrTooLarge = errors.New("message too large")
	// ErrClosed: the transport or consumer is closed.
	ErrClosed = errors.New("closed")
	// ErrNotFound: a stream, topic or durable consumer does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBackpressure: the async window is full; the broker is not keeping up.
	ErrBackpressure = errors.New("async window full")
	// ErrEndOfStream: a bounded subscription (a replay) has read its window.
	ErrEndOfStream = errors.New("end of replay window")
	// ErrForbidden: the broker refused this identity the action (a
	// publish, a subscription, a stream or topic change); retrying cannot
	// help until the identity is granted the right.
	ErrForbidden = errors.New("forbidden")
)

// DefaultFailover is how soon a dead group member's keys reach a live
// member when a subscription does not say.
const DefaultFailover = 5 * time.Second

// Message is what a transport carries: a concrete topic, the envelope and the
// payload bytes.
type Message struct {
	Topic   string
	Headers envelope.Headers
	Payload []byte
	// DedupeID, when set, replaces the message id as the broker's publish
	// dedupe id (JetStream's Nats-Msg-Id): a dead letter is unique per
	// message and consumer group, not per message.
	DedupeID string
}

// Stream is the broker-side home of one env and domain, such as
// ampy.prod.bars.v1: one JetStream stream or one Kafka topic. Its limits
// come from the contract.
type Stream struct {
	// Prefix is the topic prefix the stream holds: ampy.prod.bars.v1.
	Prefix     string
	Retention  time.Duration
	MaxPayload int64
	// Partitions spreads keys: Kafka partitions, NATS subject partitions.
	// A broker that already has more keeps them.
	Partitions int
	// Replicas is how many brokers hold each message. A broker that already
	// has more keeps them; one with fewer nodes holds as many as it has.
	Replicas     int
	DedupeWindow time.Duration
	// Subtopics are the shapes of the topics the contract allows after the
	// prefix, each parameter a *: "*.*", "trade.*". Empty allows any. NATS
	// streams store only these subjects; Kafka consumers hand out a record
	// outside them (a missing or off-contract subtopic) so it is
	// dead-lettered, never passed over.
	Subtopics []string
}

// Holds reports whether topic is one the stream's contract allows: under
// its prefix, in one of its Subtopics shapes.
func (s Stream) Holds(topic string) bool {
	rest, ok := strings.CutPrefix(topic, s.Prefix+".")
	if !ok {
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	if len(s.Subtopics) == 0 {
		return true
	}
	for _, shape := range s.Subtopics {
		if Match(shape, rest) {
			return true
		}
	}
	return false
}

// PublishAck is the broker's receipt for a stored message.
type PublishAck struct {
	// Stream names where it was stored (a JetStream stream or Kafka topic).
	Stream string
	// Sequence is the JetStream stream sequence or the Kafka offset.
	Sequence  uint64
	Partition int32
	// Duplicate is true when the broker recognised the message id and did not store it again.
	Duplicate bool
}

// AsyncResult completes one PublishAsync.
type AsyncResult func(PublishAck, error)

// StartPosition says where a new subscription begins reading.
type StartPosition struct {
	Kind StartKind
	// Time is used with StartAtTime.
	Time time.Time
	// Sequence is used with StartAtSequence (stream sequence or offset).
	Sequence uint64
	// After is used with StartAfter: a bounded consumer's Watermark.
	After Position
}

// Position is a point in a stream: everything at or before it is behind it.
type Position struct {
	// Sequence is the JetStream stream sequence.
	Sequence uint64
	// Offsets are Kafka's next offsets per partition.
	Offsets map[int32]int64
}

// StartKind enumerates start positions.
type StartKind int

const (
	// StartNew reads only messages published after the subscription starts.
	StartNew StartKind = iota
	// StartFirst reads everything the stream still holds.
	StartFirst
	// StartAtTime reads from the first message stored at or after Time.
	StartAtTime
	// StartAtSequence reads from a stream sequence (or offset).
	StartAtSequence
	// StartAfter reads from just after a Position (a bounded read's
	// watermark), so the two together miss nothing and repeat nothing.
	StartAfter
)

// Subscription describes what to read and how.
type Subscription struct {
	Stream Stream
	// Filters are full topic patterns with NATS wildcards (* one token, > the rest).
	Filters []string
	// Group is the durable consumer (NATS) or consumer group (Kafka); empty
	// for an ephemeral subscription that starts fresh each time.
	Group string
	Start StartPosition
	// MaxInFlight bounds delivered-but-unsettled messages.
	MaxInFlight int
	// AckWait is how long a delivery may stay unsettled before the broker redelivers it.
	AckWait time.Duration
	// MaxDeliver stops broker redelivery after this many deliveries (0: no limit).
	MaxDeliver int
	// Failover bounds how long a dead group member's keys wait before a live
	// member takes them over (0: the binding's default, 5 s). Shorter means
	// a member that stalls that long (a long GC pause, a frozen VM) loses its
	// keys to another while it still holds messages.
	Failover time.Duration
	// OnAssign, when set, runs before a group member handles the messages
	// of partitions newly given to it (a Kafka assignment, a NATS
	// takeover), so stores the group shares can first read what the
	// previous holder wrote.
	OnAssign func(ctx context.Context) error

	// Bounded makes the subscription a replay: it reads what the stream held
	// when it started, and no further; then Next returns ErrEndOfStream, so
	// messages published meanwhile are left for a later replay.
	Bounded bool
	// Until, for a bounded subscription, stops at the first message stored at
	// or after it (the window's exclusive end); zero means no time bound.
	// Kafka compares record times at their millisecond resolution.
	Until time.Time
	// Key keeps only messages with this partition key; empty keeps all.
	Key string
}

// Transport is implemented by each broker binding.
type Transport interface {
	// Name is the binding's name: "nats" or "kafka".
	Name() string
	// EnsureStream creates or updates the stream so its limits match s:
	// provisioning, which takes administrator rights.
	EnsureStream(ctx context.Context, s Stream) error
	// CheckStream finds the stream of s and learns its layout (its
	// partitions), changing nothing: what a publisher or consumer without
	// administrator rights does. ErrNotFound when it does not exist.
	CheckStream(ctx context.Context, s Stream) error
	// Publish stores m and waits for the broker's acknowledgement.
	Publish(ctx context.Context, s Stream, m *Message) (PublishAck, error)
	// PublishAsync hands m to the broker and returns; done runs exactly once
	// with the outcome, unless PublishAsync returns an error. It blocks while
	// the async window is full, until ctx ends. m is the caller's again once
	// done returns or PublishAsync fails: the binding keeps only its own
	// wire form (the caller reuses m).
	PublishAsync(ctx context.Context, s Stream, m *Message, done AsyncResult) error
	// Flush waits until every PublishAsync so far has completed.
	Flush(ctx context.Context) error
	// Subscribe opens a consumer; messages are pulled with Consumer.Next.
	Subscribe(ctx context.Context, sub Subscription) (Consumer, error)
	// Close releases the connection; pending async publishes are flushed first.
	Close() error
}

// Consumer yields deliveries of one subscription.
type Consumer interface {
	// Next blocks until a delivery arrives, ctx ends, or the consumer closes (ErrClosed).
	Next(ctx context.Context) (Delivery, error)
	// Close stops fetching. Unsettled deliveries are redelivered later.
	Close() error
	// Abort drops the consumer as a crash would: nothing more is committed or
	// acknowledged, and every unsettled delivery is redelivered.
	Abort() error
	// Lag is how many messages of the subscription are not yet acknowledged
	// (NATS: pending plus unacked; Kafka: end offsets minus the group's commits).
	Lag(ctx context.Context) (uint64, error)
	// Watermark is where a bounded subscription stops: the stream's end when
	// it began. Zero for unbounded subscriptions.
	Watermark() Position
}

// Delivery is one received message and the means to settle it. Exactly one of
// Ack, Nak or Term must be called.
type Delivery interface {
	// Message is the received message. When its headers were malformed,
	// HeaderErr says how, and Message holds everything that did parse.
	Message() *Message
	HeaderErr() error
	// Attempt counts deliveries of this message, from 1.
	Attempt() int
	// Sequence is the stream sequence or offset; Partition is 0 on NATS.
	Sequence() uint64
	Partition() int32
	// Ack settles the message as processed.
	Ack(ctx context.Context) error
	// Nak asks for redelivery no sooner than delay.
	Nak(ctx context.Context, delay time.Duration) error
	// Term settles the message as never to be redelivered; reason is recorded.
	Term(ctx context.Context, reason string) error
	// InProgress extends the ack deadline of a slow handler.
	InProgress(ctx context.Context) error
}

// Revocable is implemented by deliveries of a consumer group that can lose
// their partition while held (a Kafka revocation, a NATS partition taken by
// another member). The engine does not start a revoked delivery: the
// partition's new holder handles it, and two members never work on one key.
type Revocable interface {
	Revoked() bool
}

// StreamInfo is what the broker holds for one stream (a JetStream stream or
// a Kafka topic).
type StreamInfo struct {
	// Name is the JetStream stream or Kafka topic name.
	Name string
	// Prefix is the topic prefix it holds: ampy.prod.bars.v1.
	Prefix string
	// Messages and Bytes are what it holds now (Bytes is 0 where the broker
	// does not say).
	Messages, Bytes uint64
	Partitions      int
	// Replicas is how many brokers hold each message.
	Replicas int
	// Retention and MaxMessageBytes are the broker-side limits.
	Retention       time.Duration
	MaxMessageBytes int64
	// First and Last are the stored sequence range (NATS), or the summed
	// start and end offsets (Kafka).
	First, Last uint64
	Created     time.Time
}

// LagReader is implemented by bindings that can read a consumer group's lag
// without joining the group: producers watch it to back off.
type LagReader interface {
	// GroupLag is how many messages of s the group has not yet acknowledged
	// (NATS: pending plus unacked over its partition consumers; Kafka: end
	// offsets minus its commits). ErrNotFound when the group has never
	// consumed s.
	GroupLag(ctx context.Context, s Stream, group string) (uint64, error)
}

// Describer is implemented by bindings that can say what the broker holds;
// ampybusctl's list-topics and describe-topic use it.
type Describer interface {
	// Streams lists every stream on the broker whose prefix starts with namespace.
	Streams(ctx context.Context, namespace string) ([]StreamInfo, error)
	// DescribeStream describes the stream of one prefix; ErrNotFound when absent.
	DescribeStream(ctx context.Context, prefix string) (StreamInfo, error)
}
