package ampybus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// TapOptions says where a Tap reads from and how far.
type TapOptions struct {
	// Group is a durable consumer group; empty reads ephemerally.
	Group string
	// Start is where a new group or an ephemeral read begins (default: new messages).
	Start transport.StartPosition
	// Bounded stops at what the streams held when the tap opened (and at
	// Until, when set); Next then returns transport.ErrEndOfStream. With a
	// Group, a bounded tap reads until the group has nothing left unread or
	// unacknowledged, so acknowledge each message before asking for the next.
	Bounded bool
	Until   time.Time
	// Key keeps only one partition key (ephemeral taps).
	Key string
}

// Tap reads the stored messages matching a subject across domains, checking
// each as a consumer would, and never dead-letters: the tool reading decides.
// A group tap leaves settling to the caller; an ephemeral one settles each
// message as it hands it out. ampybusctl's sub, consume,
// dlq-inspect, dlq-redrive and replay read through it.
type Tap struct {
	bus    *Bus
	cat    *Catalog
	cons   []transport.Consumer
	items  chan tapItem
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// drain ends a bounded group tap when the group has caught up.
	drain bool
	group string
}

// settled is a delivery the tap has already settled.
type settled struct{ transport.Delivery }

func (settled) Ack(context.Context) error                { return nil }
func (settled) Nak(context.Context, time.Duration) error { return nil }
func (settled) Term(context.Context, string) error       { return nil }

type tapItem struct {
	d   transport.Delivery
	err error
}

// Inspected is one message as a Tap read it.
type Inspected struct {
	// Delivery settles the message (Ack, Nak, Term) and locates it.
	transport.Delivery
	// Topic is where it was read; for a dead letter, the dlq topic.
	Topic string
	// Original is the topic a dead letter came from; otherwise Topic.
	Original string
	// Route is the typed route of Original; nil when it has none.
	Route *AnyRoute
	// Decoded is the checked, decoded message; nil when Problem is set or
	// the topic has no typed route.
	Decoded *AnyMessage
	// Problem is why a consumer would dead-letter the message; empty when it
	// is sound.
	Problem string
}

// OpenTap opens a consumer on every domain subject can match.
func OpenTap(ctx context.Context, b *Bus, c *Catalog, subject string, o TapOptions) (*Tap, error) {
	s, err := c.ResolveSubject(subject)
	if err != nil {
		return nil, err
	}
	if s.Env != b.env {
		return nil, fmt.Errorf("%w: subject %q is in env %s, but the bus serves %s", ErrContract, subject, s.Env, b.env)
	}
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &Tap{bus: b, cat: c, items: make(chan tapItem), cancel: cancel, group: o.Group}
	sub := transport.Subscription{Filters: []string{subject}, Group: o.Group, Start: o.Start,
		MaxInFlight: 256, AckWait: 30 * time.Second, Bounded: o.Bounded, Until: o.Until, Key: o.Key}
	if o.Group != "" && o.Bounded {
		// A bounded read is never a group member (it must not move a live
		// group); a group reads live and ends when it has caught up.
		t.drain, sub.Bounded, sub.Until, sub.Key = true, false, time.Time{}, ""
	}
	for _, d := range s.Domains {
		st, err := b.stream(ctx, d)
		if err == nil {
			var cons transport.Consumer
			sub.Stream = st
			cons, err = b.t.Subscribe(ctx, sub)
			if err == nil {
				t.cons = append(t.cons, cons)
				continue
			}
		}
		t.Close()
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	for _, cons := range t.cons {
		t.wg.Add(1)
		go t.pump(tctx, cons)
	}
	go func() {
		t.wg.Wait()
		close(t.items)
	}()
	return t, nil
}

func (t *Tap) pump(ctx context.Context, cons transport.Consumer) {
	defer t.wg.Done()
	for {
		d, err := cons.Next(ctx)
		if err != nil && (ctx.Err() != nil || errors.Is(err, transport.ErrEndOfStream)) {
			return
		}
		select {
		case t.items <- tapItem{d, err}:
		case <-ctx.Done():
			if d != nil {
				_ = d.Nak(context.Background(), 0)
			}
			return
		}
		if err != nil {
			return
		}
	}
}

// Next returns the next message, checked and decoded where its topic has a
// typed route. It returns transport.ErrEndOfStream when a bounded tap has read
// everything.
func (t *Tap) Next(ctx context.Context) (*Inspected, error) {
	var poll <-chan time.Time
	for {
		if t.drain {
			poll = time.After(100 * time.Millisecond)
		}
		select {
		case it, ok := <-t.items:
			if !ok {
				return nil, transport.ErrEndOfStream
			}
			if it.err != nil {
				return nil, it.err
			}
			return t.inspect(ctx, it.d)
		case <-poll:
			lag, err := t.Lag(ctx)
			if err != nil {
				return nil, fmt.Errorf("lag of group %s: %w", t.group, err)
			}
			if lag == 0 {
				return nil, transport.ErrEndOfStream
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (t *Tap) inspect(ctx context.Context, d transport.Delivery) (*Inspected, error) {
	if t.group == "" {
		// Nothing to keep for an ephemeral read: settle it now, so a bounded
		// read can end, and make the caller's settling a no-op.
		_ = d.Ack(ctx)
		d = settled{d}
	}
	m := d.Message()
	in := &Inspected{Delivery: d, Topic: m.Topic, Original: m.Topic}
	if orig := m.Headers.Extra[HeaderDLQTopic]; orig != "" {
		in.Original = orig
	}
	if err := d.HeaderErr(); err != nil {
		in.Problem = "contract_violation: " + err.Error()
		return in, nil
	}
	tp, err := t.cat.Resolve(in.Original)
	if err != nil {
		in.Problem = violation(err)
		return in, nil
	}
	if in.Route = tp.Route; in.Route == nil {
		return in, nil
	}
	om := *m
	om.Topic = in.Original
	msg, reason, err := in.Route.Verify(ctx, t.bus, &om)
	if err != nil {
		in.Problem = "blob_error: " + err.Error()
		return in, nil
	}
	in.Decoded, in.Problem = msg, reason
	if msg != nil {
		msg.Attempt, msg.Sequence, msg.Partition = d.Attempt(), d.Sequence(), d.Partition()
	}
	t.report(ctx, tp, in)
	return in, nil
}

// report hands what the tap read to the bus's DeliveryHooks, as observed.
func (t *Tap) report(ctx context.Context, tp Topic, in *Inspected) {
	hooks := t.bus.hooks.deliver
	if len(hooks) == 0 || in.Route == nil || in.Topic != in.Original {
		return // a dead letter read back is not a delivery of its topic
	}
	m := in.Message()
	ev := &DeliveryEvent{Domain: tp.Domain, Spec: in.Route.Spec, Transport: t.bus.t.Name(), Env: t.bus.env, Topic: in.Topic,
		Consumer: t.group, Headers: &m.Headers, PayloadBytes: len(m.Payload), Attempt: in.Attempt(),
		Partition: in.Partition(), Sequence: in.Sequence(), Received: time.Now()}
	for _, h := range hooks {
		ctx = h.OnDelivery(ctx, ev)
	}
	r := Result{Outcome: OutcomeObserved, Reason: in.Problem, Rejected: in.Problem != "", Attempt: in.Attempt()}
	for _, h := range hooks {
		h.OnResult(ctx, ev, r)
	}
}

// Lag sums the lag of the tap's consumers.
func (t *Tap) Lag(ctx context.Context) (uint64, error) {
	var n uint64
	for _, c := range t.cons {
		l, err := c.Lag(ctx)
		if err != nil {
			return n, err
		}
		n += l
	}
	return n, nil
}

// Close stops reading; unsettled messages are redelivered to the group later.
func (t *Tap) Close() error {
	t.cancel()
	t.wg.Wait() // the pumps return once their Next sees the cancel
	var errs []error
	for _, c := range t.cons {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// PublishEnvelope stores m exactly as given, headers and bytes, on the stream
// of its topic's domain: for golden fixtures, redrives and poison tests.
// Nothing is checked but that the topic is the contract's and in the bus's
// env; services publish through the generated publishers.
func PublishEnvelope(ctx context.Context, b *Bus, c *Catalog, m *transport.Message) (PublishResult, error) {
	return publishEnvelope(ctx, b, c, m, KindEnvelope)
}

func publishEnvelope(ctx context.Context, b *Bus, c *Catalog, m *transport.Message, kind PublishKind) (PublishResult, error) {
	tp, err := c.Resolve(m.Topic)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	if tp.Env != b.env {
		return PublishResult{}, fmt.Errorf("publish %s: %w: the topic is in env %s, but the bus serves %s", m.Topic, ErrContract, tp.Env, b.env)
	}
	s, err := b.stream(ctx, tp.Domain)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	var spec *SubtopicSpec
	if tp.Route != nil {
		spec = tp.Route.Spec
	}
	ack, err := b.send(ctx, outgoing{kind, tp.Domain, spec}, s, m)
	if err != nil {
		return PublishResult{MessageID: m.Headers.MessageID, Topic: m.Topic}, fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	return result(m, ack), nil
}

// HeaderRedriveOf names the dead letter a redriven message came from:
// dlq topic, partition and sequence.
const HeaderRedriveOf = "redrive_of"

// Redrive puts a dead letter back on its original topic after a fix: the
// original bytes and headers, without the dead-letter headers, retry_count one
// higher. The message id is kept, so consumer groups that had applied it skip
// it. On NATS the publish dedupe id is the dead letter's position, so
// redriving one entry twice within the duplicate window stores it once; Kafka
// stores a repeat, and consumers drop it by message id.
func Redrive(ctx context.Context, b *Bus, c *Catalog, in *Inspected) (PublishResult, error) {
	m := in.Message()
	orig := m.Headers.Extra[HeaderDLQTopic]
	if orig == "" {
		return PublishResult{}, fmt.Errorf("redrive %s seq %d: %w: it has no %s header, so its original topic is unknown", in.Topic, in.Sequence(), ErrContract, HeaderDLQTopic)
	}
	h := m.Headers
	h.DLQReason = ""
	h.RetryCount++
	h.Extra = map[string]string{}
	for k, v := range m.Headers.Extra {
		switch k {
		case HeaderDLQTopic, HeaderDLQConsumer, HeaderDLQAt:
		default:
			h.Extra[k] = v
		}
	}
	entry := in.Topic + "/" + strconv.Itoa(int(in.Partition())) + "/" + strconv.FormatUint(in.Sequence(), 10)
	h.Extra[HeaderRedriveOf] = entry
	rm := &transport.Message{Topic: orig, Headers: h, Payload: m.Payload, DedupeID: h.MessageID + "|redrive|" + entry}
	res, err := publishEnvelope(ctx, b, c, rm, KindRedrive)
	if err != nil {
		return PublishResult{}, fmt.Errorf("redrive: %w", err)
	}
	return res, nil
}
