package ampybus

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// KeyFunc derives a message's keys from its subtopic and payload, as the
// contract's key rules say. Generated code supplies one per subtopic.
type KeyFunc[S Subtopic, P proto.Message] func(S, P) (Keys, error)

// Route ties one subtopic's Go types to the runtime: its spec, how to read
// its subtopic from a topic, and how the contract derives its keys.
// Generated code declares one per subtopic; publishers and consumers share it.
type Route[S Subtopic, P proto.Message] struct {
	Spec  *SubtopicSpec
	Parse func(subtopic string) (S, error)
	Keys  KeyFunc[S, P]
	// OrderTime reads the payload time the domain's ordering rule compares;
	// nil when the rule orders by no field.
	OrderTime func(P) time.Time
	// ExpiresAt reads the time after which a payload is no longer current
	// (zero: it does not expire); nil when the domain's messages never do.
	ExpiresAt func(P) time.Time
	// CheckUTF8 refuses a payload holding a string proto requires be UTF-8
	// that is not; generated where the payload type has such strings, for
	// publishers that encode with its FastMarshaler, which does not check.
	// Nil: the check is made on the encoded bytes.
	CheckUTF8 func(P) error
	// newPayload makes an empty payload when P names no concrete type (an
	// erased route); nil for generated routes.
	newPayload func() P
	// encOnce decides enc, how P is encoded, on the first publisher: a
	// walk of P's descriptors that every later publisher reuses.
	encOnce sync.Once
	enc     marshaler
	// decOnce decides dec, how consumers of r decode P, on the first
	// message consumed.
	decOnce sync.Once
	dec     unmarshaler
}

// encoder is how publishers of r encode P.
func (r *Route[S, P]) encoder() marshaler {
	r.encOnce.Do(func() { r.enc = marshalerFor[P](r.CheckUTF8 != nil) })
	return r.enc
}

// decoder is how consumers of r decode P; an erased route's payload type is
// read from one of its payloads.
func (r *Route[S, P]) decoder() unmarshaler {
	r.decOnce.Do(func() {
		if r.newPayload != nil {
			r.dec = unmarshalerOf(r.newPayload())
		} else {
			r.dec = unmarshalerFor[P]()
		}
	})
	return r.dec
}

// checkExpiry refuses a payload that expires no later than its own order
// time (a signal whose expires_at is not after its generated_at): it would
// never be current, and every consumer would skip it. Whether it has
// expired by now is the consumers' call, on their clocks.
func (r *Route[S, P]) checkExpiry(msg P) error {
	if r.ExpiresAt == nil || r.OrderTime == nil || r.Spec.Domain.OrderBySequence {
		return nil
	}
	exp := r.ExpiresAt(msg)
	if exp.IsZero() {
		return nil
	}
	d := r.Spec.Domain
	if at := r.OrderTime(msg); !at.IsZero() && !exp.After(at) {
		return fmt.Errorf("%w: %s %s is not after %s %s: the message would never be current", ErrContract,
			d.ExpiresBy, exp.UTC().Format(time.RFC3339Nano), d.OrderBy, at.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// payloads returns the constructor of r's payloads.
func (r *Route[S, P]) payloads() func() P {
	if r.newPayload != nil {
		return r.newPayload
	}
	return newMessageFunc[P]()
}

// Publisher publishes one subtopic's payload type. Generated publishers wrap
// it; it is safe for concurrent use.
type Publisher[S Subtopic, P proto.Message] struct {
	bus   *Bus
	route *Route[S, P]
	// topicPrefix is the domain's prefix in the bus's env and a dot: a
	// publish's topic is one concatenation away.
	topicPrefix string
	enc         marshaler
	// checkUTF8 is the route's CheckUTF8 when enc encodes with the
	// generated methods, nil otherwise.
	checkUTF8 func(P) error
}

// NewPublisher is called by generated code.
func NewPublisher[S Subtopic, P proto.Message](b *Bus, r *Route[S, P]) *Publisher[S, P] {
	p := &Publisher[S, P]{bus: b, route: r, topicPrefix: r.Spec.Domain.Prefix(b.env) + ".", enc: r.encoder()}
	if p.enc.fast {
		p.checkUTF8 = r.CheckUTF8
	}
	return p
}

// BatchSize is how many items a producer that batches (BarBatch,
// TickBatch) should put in its next message: limit, or a quarter of it
// while a consumer group of the domain lags past the contract's max_lag
// (seed §8: producers reduce batch size). Critical domains always get limit.
func (p *Publisher[S, P]) BatchSize(limit int) int {
	return p.bus.batchSize(p.route.Spec.Domain, limit)
}

// PublishResult is where a published message was stored.
type PublishResult struct {
	MessageID string
	Topic     string
	// Stream is the JetStream stream or Kafka topic that stored it.
	Stream string
	// Sequence is the stream sequence (NATS) or offset (Kafka).
	Sequence  uint64
	Partition int32
	// Duplicate reports that the broker had already stored this message id.
	Duplicate bool
}

// PublishOption adjusts one publish.
type PublishOption func(*publishOptions)

type publishOptions struct {
	messageID string
	extra     map[string]string
}

// noOptions is the options of a publish without any; never written.
var noOptions = &publishOptions{}

// WithMessageID reuses a message id, so a producer retrying after a timeout is
// deduplicated by the broker instead of stored twice. It must be a UUIDv7.
func WithMessageID(id string) PublishOption {
	return func(o *publishOptions) { o.messageID = id }
}

// WithHeader adds a header outside the envelope set; envelope headers cannot be overridden.
func WithHeader(key, value string) PublishOption {
	return func(o *publishOptions) {
		if o.extra == nil {
			o.extra = map[string]string{}
		}
		o.extra[key] = value
	}
}

// Publish sends msg to subtopic and waits until the broker has stored it.
func (p *Publisher[S, P]) Publish(ctx context.Context, subtopic S, msg P, opts ...PublishOption) (PublishResult, error) {
	// Held back first, so produced_at is when it goes out, and a publish
	// that gives up while held leaves no blob behind.
	d := p.route.Spec.Domain
	watching, err := p.bus.admit(ctx, d)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", p.topicPrefix+subtopic.String(), err)
	}
	m := new(transport.Message)
	s, err := p.prepare(ctx, subtopic, msg, opts, time.Now(), m, nil)
	if err != nil {
		return PublishResult{}, err
	}
	ack, err := p.bus.send(ctx, outgoing{KindPublish, d, p.route.Spec}, s, m)
	if err != nil {
		// The id lets the caller republish the same message (WithMessageID).
		return PublishResult{MessageID: m.Headers.MessageID, Topic: m.Topic}, fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	if !watching {
		p.bus.startWatch(d)
	}
	return result(m, ack), nil
}

// PublishAsync hands msg to the broker without waiting for its ack; the
// future completes when the broker answers. It waits, bounded by ctx, while
// the async window is full and while the domain's producers back off for a
// lagging consumer group (paused or paced by priority). Bus.Flush waits for
// every pending publish.
func (p *Publisher[S, P]) PublishAsync(ctx context.Context, subtopic S, msg P, opts ...PublishOption) (*PublishFuture, error) {
	d := p.route.Spec.Domain
	watching, err := p.bus.admit(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", p.topicPrefix+subtopic.String(), err)
	}
	a := newAsyncSend()
	f := &PublishFuture{send: a}
	now := time.Now()
	s, err := p.prepare(ctx, subtopic, msg, opts, now, &a.msg, &a.encoded)
	if err != nil {
		a.release()
		return nil, err
	}
	if !watching {
		f.onSuccess = func() { p.bus.startWatch(d) }
	}
	if err := p.bus.sendAsync(ctx, outgoing{KindPublish, d, p.route.Spec}, s, f, now); err != nil {
		err = fmt.Errorf("publish %s: %w", a.msg.Topic, err)
		a.release()
		return nil, err
	}
	return f, nil
}

func result(m *transport.Message, ack transport.PublishAck) PublishResult {
	return PublishResult{
		MessageID: m.Headers.MessageID, Topic: m.Topic, Stream: ack.Stream,
		Sequence: ack.Sequence, Partition: ack.Partition, Duplicate: ack.Duplicate,
	}
}

// PublishFuture is the pending outcome of PublishAsync.
type PublishFuture struct {
	mu sync.Mutex
	// done is made on demand: a publisher that never waits (and checks
	// Flush instead) pays for no channel.
	done     chan struct{}
	finished bool
	res      PublishResult
	err      error
	// send is the publish while it is in flight: its message and retry
	// state, let go once the outcome is known.
	send *asyncSend
	// onSuccess runs once the broker stored the message (the first publish
	// to a watched domain starts the watch).
	onSuccess func()
}

// doneAlready is the Done of every future whose outcome was known before
// anyone asked: a caller checking old futures pays for no channel.
var doneAlready = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done is closed when the outcome is known.
func (f *PublishFuture) Done() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done == nil {
		if f.finished {
			return doneAlready
		}
		f.done = make(chan struct{})
	}
	return f.done
}

// Wait returns the outcome, waiting for it until ctx ends.
func (f *PublishFuture) Wait(ctx context.Context) (PublishResult, error) {
	f.mu.Lock()
	if f.finished {
		defer f.mu.Unlock()
		return f.res, f.err
	}
	f.mu.Unlock()
	select {
	case <-f.Done():
		return f.res, f.err
	case <-ctx.Done():
		return PublishResult{}, ctx.Err()
	}
}

// prepare checks msg against the contract and builds its envelope in m,
// produced now; nothing reaches the broker when it fails. A non-nil encoded
// is a buffer to marshal into, kept for the next publish: an async publish's
// pooled one.
func (p *Publisher[S, P]) prepare(ctx context.Context, subtopic S, msg P, opts []PublishOption, now time.Time, m *transport.Message, encoded *[]byte) (transport.Stream, error) {
	b, d := p.bus, p.route.Spec.Domain
	sub := subtopic.String()
	topic := p.topicPrefix + sub
	fail := func(err error) (transport.Stream, error) {
		return transport.Stream{}, fmt.Errorf("publish %s: %w", topic, err)
	}
	if b.producer == "" {
		return fail(fmt.Errorf("%w: open the bus with ampybus.WithProducer(\"svc@host\", \"svc\")", ErrNoProducer))
	}
	if err := validSubtopic(sub); err != nil {
		return fail(err)
	}
	if any(msg) == nil || !msg.ProtoReflect().IsValid() {
		return fail(fmt.Errorf("%w: payload is nil", ErrContract))
	}
	keys, err := p.route.Keys(subtopic, msg)
	if err != nil {
		return fail(err)
	}
	if keys.Partition == "" {
		return fail(fmt.Errorf("%w: the key function returned an empty partition key", ErrContract))
	}
	if err := p.route.checkExpiry(msg); err != nil {
		return fail(err)
	}
	o := noOptions
	if len(opts) > 0 {
		o = &publishOptions{} // only a publish with options pays for them
		for _, opt := range opts {
			opt(o)
		}
	}
	// The caller's parts are checked before anything touches a store or
	// the broker: a refused publish leaves no blob and no stream behind.
	if o.messageID != "" {
		if id, err := uuid.Parse(o.messageID); err != nil || id.Version() != 7 {
			return fail(fmt.Errorf("%w: WithMessageID(%q) is not a UUIDv7", ErrContract, o.messageID))
		}
	}
	for k, v := range o.extra {
		if err := checkExtraHeader(k, v); err != nil {
			return fail(err)
		}
	}
	var buf []byte
	if encoded != nil {
		buf = (*encoded)[:0]
	}
	if p.checkUTF8 != nil {
		if err := p.checkUTF8(msg); err != nil {
			return fail(fmt.Errorf("marshal %s: %w", p.route.Spec.Schema.FQDN, err))
		}
	}
	payload, err := p.enc.marshal(buf, msg)
	if err != nil {
		return fail(fmt.Errorf("marshal %s: %w", p.route.Spec.Schema.FQDN, err))
	}
	if encoded != nil {
		*encoded = payload
	}
	if int64(len(payload)) > d.InflateLimit() {
		return fail(fmt.Errorf("%w: payload is %d bytes, over the %s domain's max_inflated of %d bytes, which consumers refuse to inflate: split it, or raise max_inflated in the contract", ErrTooLarge, len(payload), d.Name, d.InflateLimit()))
	}
	var encoding string
	if d.CompressAbove > 0 && int64(len(payload)) > d.CompressAbove {
		payload, encoding = Gzip(payload), envelope.EncodingGzip
	}
	m.Topic = topic
	h := &m.Headers
	*h = envelope.Headers{
		MessageID:       o.messageID,
		SchemaFQDN:      p.route.Spec.Schema.FQDN,
		SchemaVersion:   p.route.Spec.Schema.Version,
		SchemaHash:      p.route.Spec.Schema.Hash,
		ContentType:     envelope.ContentTypeProtobuf,
		ContentEncoding: encoding,
		ProducedAt:      now.UTC(),
		Producer:        b.producer,
		Source:          b.source,
		RunID:           b.runID,
		PartitionKey:    keys.Partition,
		DedupeKey:       keys.Dedupe,
		Extra:           o.extra,
	}
	if h.MessageID == "" {
		h.MessageID = envelope.MessageIDAt(now)
	}
	if tc, ok := envelope.TraceFromContext(ctx); ok {
		h.Trace = tc.Child()
	} else {
		h.Trace = envelope.NewTrace()
	}
	offload := d.MaxPayload > 0 && int64(len(payload)) > d.MaxPayload
	if offload && b.blobs == nil {
		return fail(fmt.Errorf("%w: payload is %d bytes after compression, over the %s domain's max_payload of %d bytes: split the batch, or open the bus with ampybus.WithBlobStore to send a pointer", ErrTooLarge, len(payload), d.Name, d.MaxPayload))
	}
	// The headers as they will travel (keys derived from the payload can be
	// long too), with room for a blob reference of up to 512 bytes: a
	// message every consumer would dead-letter is refused here instead.
	if offload {
		h.BlobRef, h.BlobHash, h.BlobSize = strings.Repeat("x", 512), blob.Hash(payload), int64(len(payload))
	}
	if err := h.CheckSize(); err != nil {
		return fail(fmt.Errorf("%w: %w: shorten the key fields or drop some WithHeader options", ErrContract, err))
	}
	s, err := b.stream(ctx, d)
	if err != nil {
		return fail(err)
	}
	if offload {
		ref, err := b.blobs.Put(ctx, payload)
		if err != nil {
			return fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
		h.BlobRef, h.BlobHash, h.BlobSize, payload = ref, blob.Hash(payload), int64(len(payload)), nil
	}
	// Everything else in h is built here from checked inputs; only the
	// caller-supplied parts above need checking on this hot path.
	m.Payload = payload
	return s, nil
}

// checkExtraHeader refuses a WithHeader that would override an envelope or
// binding header, or that a broker could not carry.
func checkExtraHeader(k, v string) error {
	switch {
	case isEnvelopeHeader(k):
		return fmt.Errorf("%w: WithHeader(%q) would override an envelope header", ErrContract, k)
	case k == "subtopic" || strings.HasPrefix(k, "Nats-"):
		return fmt.Errorf("%w: WithHeader(%q) would override a header the broker binding writes", ErrContract, k)
	case k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }):
		return fmt.Errorf("%w: WithHeader(%q): a header name is printable ASCII without spaces or ':'", ErrContract, k)
	case strings.ContainsAny(v, "\r\n"):
		return fmt.Errorf("%w: WithHeader(%q): the value contains a line break", ErrContract, k)
	}
	return nil
}

func validSubtopic(sub string) error {
	start := 0
	for i := 0; i <= len(sub); i++ {
		if i == len(sub) || sub[i] == '.' {
			if tok := sub[start:i]; !ValidToken(tok) {
				return fmt.Errorf("%w: subtopic %q has an empty or invalid token: build subtopics with the generated New…Subtopic constructors", ErrContract, sub)
			}
			start = i + 1
		}
	}
	return nil
}

var envelopeHeaders = map[string]bool{
	envelope.HeaderMessageID: true, envelope.HeaderSchemaFQDN: true, envelope.HeaderSchemaVersion: true,
	envelope.HeaderContentType: true, envelope.HeaderContentEncoding: true, envelope.HeaderProducedAt: true,
	envelope.HeaderProducer: true, envelope.HeaderSource: true, envelope.HeaderRunID: true,
	envelope.HeaderTraceparent: true, envelope.HeaderPartitionKey: true, envelope.HeaderDedupeKey: true,
	envelope.HeaderRetryCount: true, envelope.HeaderDLQReason: true, envelope.HeaderSchemaHash: true,
	envelope.HeaderBlobRef: true, envelope.HeaderBlobHash: true, envelope.HeaderBlobSize: true,
	envelope.HeaderTraceID: true,
}

func isEnvelopeHeader(k string) bool { return envelopeHeaders[k] }

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}}

// Gzip compresses b deterministically: no file name, no modification time,
// so the same payload always gives the same bytes.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b) / 2)
	w := gzipPool.Get().(*gzip.Writer)
	w.Reset(&buf) // a reset header carries no name and a zero ModTime
	_, _ = w.Write(b)
	_ = w.Close()
	gzipPool.Put(w)
	return buf.Bytes()
}

func newRunSuffix() string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return time.Now().UTC().Format("20060102T150405") + "_" + hex.EncodeToString(r[:])
}
