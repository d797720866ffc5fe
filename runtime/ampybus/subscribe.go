package ampybus

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Message is one delivered message, decoded.
type Message[S Subtopic, P proto.Message] struct {
	Topic    string
	Subtopic S
	Payload  P
	Headers  envelope.Headers
	// Attempt counts deliveries of this message, from 1.
	Attempt int
	// Sequence and Partition locate the message in its stream.
	Sequence  uint64
	Partition int32
}

// Handler processes one message. Returning nil acknowledges it; an error
// asks for redelivery later; an error wrapping ErrPermanent sends it to the
// dead-letter queue at once.
type Handler[S Subtopic, P proto.Message] func(ctx context.Context, m *Message[S, P]) error

// ErrPermanent marks a handler error that retrying cannot fix.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so the message goes to the dead-letter queue without retries.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// SubscribeOption configures a subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	group       string
	start       transport.StartPosition
	concurrency int
	maxInFlight int
	ackWait     time.Duration
	retry       RetryPolicy
	backoff     func(attempt int) time.Duration
}

// Durable names the consumer group. Members of one group share the work, and
// a durable group resumes after its last acknowledged message when restarted.
// Without it the subscription is ephemeral and sees only new messages.
func Durable(group string) SubscribeOption { return func(o *subOptions) { o.group = group } }

// DeliverAll starts a new group at the oldest retained message rather than the next new one.
func DeliverAll() SubscribeOption {
	return func(o *subOptions) { o.start = transport.StartPosition{Kind: transport.StartFirst} }
}

// StartAtTime starts a new group at the first message stored at or after t.
func StartAtTime(t time.Time) SubscribeOption {
	return func(o *subOptions) { o.start = transport.StartPosition{Kind: transport.StartAtTime, Time: t} }
}

// Concurrency sets how many handlers run at once. Messages with the same
// partition key always go to the same handler goroutine, so per-key order holds.
func Concurrency(n int) SubscribeOption { return func(o *subOptions) { o.concurrency = n } }

// MaxInFlight bounds delivered-but-unsettled messages (default 1024).
func MaxInFlight(n int) SubscribeOption { return func(o *subOptions) { o.maxInFlight = n } }

// AckWait is how long a handler may take before the broker redelivers (default 30s).
func AckWait(d time.Duration) SubscribeOption { return func(o *subOptions) { o.ackWait = d } }

// RetryBackoff replaces the contract's backoff: f returns the delay after
// the given failed attempt.
func RetryBackoff(f func(attempt int) time.Duration) SubscribeOption {
	return func(o *subOptions) { o.backoff = f }
}

// Retry replaces the contract's retry policy for this subscription.
func Retry(p RetryPolicy) SubscribeOption { return func(o *subOptions) { o.retry = p.orDefault() } }

// MaxAttempts overrides the contract's retry.max_attempts: after n failed
// deliveries the message goes to the dead-letter queue.
func MaxAttempts(n int) SubscribeOption { return func(o *subOptions) { o.retry.MaxAttempts = n } }

// Subscription is a running consumer.
type Subscription struct {
	cons   transport.Consumer
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Stop stops fetching, waits for in-flight handlers to finish and settle their
// messages, and closes the consumer. Unfetched messages stay on the broker.
func (s *Subscription) Stop() error {
	s.cancel()
	<-s.done
	return s.Err()
}

// Done is closed when the subscription has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription stopped, if not by Stop or its context.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Subscribe consumes the subtopic's messages whose topics match pattern (a
// subtopic pattern with * and > wildcards) and calls h for each, until ctx
// ends or Stop is called. Generated code calls it with typed patterns.
func Subscribe[S Subtopic, P proto.Message](ctx context.Context, b *Bus, spec *SubtopicSpec, pattern string, parse func(string) (S, error), h Handler[S, P], opts ...SubscribeOption) (*Subscription, error) {
	d := spec.Domain
	o := subOptions{concurrency: 1, maxInFlight: 1024, ackWait: 30 * time.Second, retry: d.Retry.orDefault()}
	for _, opt := range opts {
		opt(&o)
	}
	o.concurrency = max(o.concurrency, 1)
	if o.backoff == nil {
		o.backoff = o.retry.Delay
	}
	filter := d.Prefix(b.env) + "." + pattern
	s, err := b.stream(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", filter, err)
	}
	cons, err := b.t.Subscribe(ctx, transport.Subscription{
		Stream: s, Filters: []string{filter}, Group: o.group, Start: o.start,
		MaxInFlight: o.maxInFlight, AckWait: o.ackWait,
		// A backstop only: the engine dead-letters at MaxAttempts itself.
		MaxDeliver: o.retry.MaxAttempts + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", filter, err)
	}
	loopCtx, cancel := context.WithCancel(ctx)
	sub := &Subscription{cons: cons, cancel: cancel, done: make(chan struct{})}
	e := &engine[S, P]{bus: b, spec: spec, prefix: d.Prefix(b.env) + ".", parse: parse, handler: h, opts: o,
		newPayload: newMessageFunc[P](), seed: maphash.MakeSeed()}
	go e.run(loopCtx, sub)
	return sub, nil
}

// newMessageFunc returns a constructor for P's concrete message type.
func newMessageFunc[P proto.Message]() func() P {
	var zero P
	mt := zero.ProtoReflect().Type()
	return func() P { return mt.New().Interface().(P) }
}

type engine[S Subtopic, P proto.Message] struct {
	bus        *Bus
	spec       *SubtopicSpec
	prefix     string
	parse      func(string) (S, error)
	handler    Handler[S, P]
	opts       subOptions
	newPayload func() P
	seed       maphash.Seed
}

func (e *engine[S, P]) run(ctx context.Context, sub *Subscription) {
	defer close(sub.done)
	// Handlers finish their message even while the subscription stops.
	hctx := context.WithoutCancel(ctx)
	shards := make([]chan transport.Delivery, e.opts.concurrency)
	var wg sync.WaitGroup
	for i := range shards {
		shards[i] = make(chan transport.Delivery, 16)
		wg.Add(1)
		go func(ch chan transport.Delivery) {
			defer wg.Done()
			for d := range ch {
				e.process(hctx, d)
			}
		}(shards[i])
	}
	for {
		d, err := sub.cons.Next(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrClosed) {
				sub.mu.Lock()
				sub.err = err
				sub.mu.Unlock()
				e.bus.log.Error("subscription stopped", "topic", e.prefix+"…", "err", err)
			}
			break
		}
		i := 0
		if len(shards) > 1 {
			i = int(maphash.String(e.seed, d.Message().Headers.PartitionKey) % uint64(len(shards)))
		}
		shards[i] <- d
	}
	for _, ch := range shards {
		close(ch)
	}
	wg.Wait()
	_ = sub.cons.Close()
}

// process checks, decodes and handles one delivery, and settles it.
func (e *engine[S, P]) process(ctx context.Context, d transport.Delivery) {
	m := d.Message()
	maxAttempts := e.opts.retry.MaxAttempts
	if d.Attempt() > maxAttempts {
		// Earlier deliveries died with their consumer before settling.
		e.deadLetter(ctx, d, fmt.Sprintf("max_attempts: delivered %d times, over the limit of %d, without being settled", d.Attempt(), maxAttempts))
		return
	}
	msg, reason := e.decode(d)
	if reason != "" {
		e.deadLetter(ctx, d, reason)
		return
	}
	hctx := envelope.ContextWithTrace(ctx, m.Headers.Trace)
	err := e.call(hctx, msg)
	switch {
	case err == nil:
		if aerr := d.Ack(ctx); aerr != nil {
			e.bus.log.Warn("ack failed; the message will be redelivered", "topic", m.Topic, "message_id", m.Headers.MessageID, "err", aerr)
		}
	case errors.Is(err, ErrPermanent):
		e.deadLetter(ctx, d, "handler: "+err.Error())
	case d.Attempt() >= maxAttempts:
		e.deadLetter(ctx, d, fmt.Sprintf("max_attempts: %d attempts failed; last error: %v", d.Attempt(), err))
	default:
		delay := e.opts.backoff(d.Attempt())
		e.bus.log.Warn("handler failed; redelivering", "topic", m.Topic, "message_id", m.Headers.MessageID,
			"trace_id", m.Headers.Trace.TraceIDHex(), "attempt", d.Attempt(), "retry_in", delay, "err", err)
		if nerr := d.Nak(ctx, delay); nerr != nil {
			e.bus.log.Warn("nak failed; the broker redelivers after ack_wait", "message_id", m.Headers.MessageID, "err", nerr)
		}
	}
}

// call runs the handler, turning a panic into an error.
func (e *engine[S, P]) call(ctx context.Context, msg *Message[S, P]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return e.handler(ctx, msg)
}

// decode returns the typed message, or the reason it is a poison pill.
func (e *engine[S, P]) decode(d transport.Delivery) (*Message[S, P], string) {
	m := d.Message()
	if err := d.HeaderErr(); err != nil {
		return nil, "contract_violation: " + err.Error()
	}
	if err := m.Headers.Validate(); err != nil {
		return nil, "contract_violation: " + err.Error()
	}
	if m.Headers.SchemaFQDN != e.spec.Schema.FQDN {
		return nil, fmt.Sprintf("schema_mismatch: schema_fqdn %s, but %s carries %s", m.Headers.SchemaFQDN, e.spec.Pattern, e.spec.Schema.FQDN)
	}
	if len(m.Topic) <= len(e.prefix) || m.Topic[:len(e.prefix)] != e.prefix {
		return nil, "contract_violation: topic " + m.Topic + " is outside " + e.prefix + ">"
	}
	st, err := e.parse(m.Topic[len(e.prefix):])
	if err != nil {
		return nil, "contract_violation: " + err.Error()
	}
	payload := m.Payload
	switch m.Headers.ContentEncoding {
	case "":
	case envelope.EncodingGzip:
		if payload, err = gunzip(payload); err != nil {
			return nil, "decode_error: gzip: " + err.Error()
		}
	default:
		return nil, "decode_error: unknown content_encoding " + m.Headers.ContentEncoding
	}
	p := e.newPayload()
	if err := proto.Unmarshal(payload, p); err != nil {
		return nil, "decode_error: " + err.Error()
	}
	h := m.Headers
	// JetStream redelivers the stored headers; retry_count tells the handler
	// how many deliveries came before this one.
	h.RetryCount = max(h.RetryCount, d.Attempt()-1)
	return &Message[S, P]{
		Topic: m.Topic, Subtopic: st, Payload: p, Headers: h,
		Attempt: d.Attempt(), Sequence: d.Sequence(), Partition: d.Partition(),
	}, ""
}

func gunzip(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Headers the dead-letter queue adds to a message's own.
const (
	HeaderDLQTopic    = "dlq_original_topic"
	HeaderDLQConsumer = "dlq_consumer"
	HeaderDLQAt       = "dlq_at"
)

// deadLetter writes the delivery, bytes and headers unchanged plus dlq_reason,
// to ampy.{env}.dlq.v1.{domain}, and terminates it only once that write is
// acknowledged; if the write fails the message is redelivered instead.
func (e *engine[S, P]) deadLetter(ctx context.Context, d transport.Delivery, reason string) {
	m := d.Message()
	err := e.bus.deadLetter(ctx, e.spec.Domain, m, reason, e.opts.group)
	if err != nil {
		delay := e.opts.backoff(d.Attempt())
		e.bus.log.Error("dead-letter write failed; redelivering", "topic", m.Topic, "message_id", m.Headers.MessageID, "reason", reason, "err", err)
		_ = d.Nak(ctx, delay)
		return
	}
	e.bus.log.Warn("dead-lettered", "topic", m.Topic, "message_id", m.Headers.MessageID, "reason", reason)
	if err := d.Term(ctx, reason); err != nil {
		e.bus.log.Warn("term failed after dead-lettering; a redelivery will be deduplicated by message_id", "message_id", m.Headers.MessageID, "err", err)
	}
}

// DeadLetterDomain is the dlq domain used when a domain names none; the
// contract's dlq domain overrides it through DomainSpec.DeadLetter.
func DeadLetterDomain(d *DomainSpec) *DomainSpec {
	if d.DeadLetter != nil {
		return d.DeadLetter
	}
	return &DomainSpec{
		Namespace: d.Namespace, Envs: d.Envs, Name: "dlq", Version: "v1",
		Ordering: OrderAccumulate, Retention: 30 * 24 * time.Hour, Partitions: 1, DedupeWindow: 2 * time.Minute,
	}
}

func (b *Bus) deadLetter(ctx context.Context, d *DomainSpec, m *transport.Message, reason, consumer string) error {
	dl := DeadLetterDomain(d)
	s, err := b.stream(ctx, dl)
	if err != nil {
		return err
	}
	h := m.Headers
	h.Extra = make(map[string]string, len(m.Headers.Extra)+3)
	for k, v := range m.Headers.Extra {
		h.Extra[k] = v
	}
	h.DLQReason = reason
	h.Extra[HeaderDLQTopic] = m.Topic
	h.Extra[HeaderDLQAt] = envelope.FormatTime(time.Now())
	if consumer != "" {
		h.Extra[HeaderDLQConsumer] = consumer
	}
	if h.MessageID == "" {
		// Without an id the broker cannot deduplicate a repeated dead-letter write.
		h.MessageID = envelope.NewMessageID()
	}
	dm := &transport.Message{Topic: dl.Prefix(b.env) + "." + d.Name, Headers: h, Payload: m.Payload}
	if _, err := b.t.Publish(ctx, s, dm); err != nil {
		return fmt.Errorf("publish %s: %w", dm.Topic, err)
	}
	return nil
}
