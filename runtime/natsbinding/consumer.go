package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// DurableName turns a consumer group into a valid durable name: durable
// names cannot hold dots, spaces or wildcards (ampy.features → ampy_features).
func DurableName(group string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ' ', '*', '>', '/', '\\', '\t':
			return '_'
		}
		return r
	}, group)
}

// Subscribe implements transport.Transport: a group is a push consumer per
// partition (group.go); any other subscription an ephemeral pull consumer
// on the domain's stream.
func (t *Transport) Subscribe(ctx context.Context, sub transport.Subscription) (transport.Consumer, error) {
	gctx, w, release := t.denials.guardSetup(ctx, "$JS.API.", "$KV.", "$JS.FC.")
	defer release()
	c, err := t.subscribe(gctx, sub)
	if err != nil {
		return nil, forbidden(w, err)
	}
	return c, nil
}

func (t *Transport) subscribe(ctx context.Context, sub transport.Subscription) (transport.Consumer, error) {
	st, err := t.stream(ctx, sub.Stream)
	if err != nil {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       sub.AckWait,
		MaxAckPending: sub.MaxInFlight,
		MaxDeliver:    -1,
	}
	if sub.MaxDeliver > 0 {
		cfg.MaxDeliver = sub.MaxDeliver
	}
	if sub.Bounded && sub.Group != "" {
		return nil, fmt.Errorf("replay of %s: a bounded subscription is never a group member, so it cannot move a live consumer", sub.Stream.Prefix)
	}
	// A key lives in one partition: a key-scoped read reads only that one.
	part := -1
	if sub.Key != "" {
		part = int(transport.Partition(sub.Key, t.Partitions(sub.Stream.Prefix)))
	}
	cfg.FilterSubjects = partitionFilters(sub.Filters, part)
	if sub.Group == "" {
		cfg.InactiveThreshold = time.Minute
	}
	switch sub.Start.Kind {
	case transport.StartNew:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case transport.StartFirst:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case transport.StartAtTime:
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		ts := sub.Start.Time
		cfg.OptStartTime = &ts
	case transport.StartAtSequence:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = sub.Start.Sequence
	case transport.StartAfter:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = sub.Start.After.Sequence + 1
	}
	if sub.Group != "" {
		return t.subscribeGroup(ctx, st, sub, cfg)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", StreamName(sub.Stream.Prefix), mapErr(err))
	}
	batch := sub.MaxInFlight
	if batch <= 0 || batch > 512 {
		batch = 512
	}
	c := &consumer{cons: cons, sub: sub, log: t.log}
	if sub.Bounded {
		// The high watermark is read after the consumer exists, so nothing
		// it can deliver below the watermark is missed.
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", StreamName(sub.Stream.Prefix), mapErr(err))
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("consumer on %s: %w", StreamName(sub.Stream.Prefix), mapErr(err))
		}
		c.lastSeq, c.nothingLeft = info.State.LastSeq, ci.NumPending == 0
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batch))
	if err != nil {
		return nil, fmt.Errorf("pull from %s: %w", StreamName(sub.Stream.Prefix), mapErr(err))
	}
	c.it = it
	return c, nil
}

type consumer struct {
	it   jetstream.MessagesContext
	cons jetstream.Consumer
	sub  transport.Subscription
	log  *slog.Logger
	// For a bounded subscription: the stream's last sequence when it began,
	// and whether the previous message said no more matched.
	lastSeq     uint64
	nothingLeft bool
}

// Lag implements transport.Consumer.
func (c *consumer) Lag(ctx context.Context) (uint64, error) {
	info, err := c.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer info: %w", mapErr(err))
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

func (c *consumer) Next(ctx context.Context) (transport.Delivery, error) {
	for {
		if c.sub.Bounded && c.nothingLeft {
			return nil, transport.ErrEndOfStream
		}
		m, err := c.it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			// A warning, not an end: the iterator issues a new pull request.
			c.log.Warn("nats: missed consumer heartbeats; pulling again", "stream", StreamName(c.sub.Stream.Prefix), "group", c.sub.Group)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, mapErr(err)
		}
		md, _ := m.Metadata()
		d := newDelivery(m, md)
		if c.sub.Bounded && md != nil {
			if md.Sequence.Stream > c.lastSeq || (!c.sub.Until.IsZero() && !md.Timestamp.Before(c.sub.Until)) {
				c.nothingLeft = true
				continue // past the window: left for a later replay
			}
			c.nothingLeft = md.NumPending == 0
		}
		if c.sub.Key != "" && d.msg.Headers.PartitionKey != c.sub.Key {
			_ = m.Ack() // another key's message: passed over
			continue
		}
		return d, nil
	}
}

func (c *consumer) Close() error {
	c.it.Stop()
	return nil
}

// Watermark implements transport.Consumer.
func (c *consumer) Watermark() transport.Position { return transport.Position{Sequence: c.lastSeq} }

// Abort implements transport.Consumer; unacked messages come back after AckWait.
func (c *consumer) Abort() error { return c.Close() }

// settler settles one delivery with the server: a pulled message is a
// jetstream.Msg, a pushed one a pushed (push.go).
type settler interface {
	Ack() error
	Nak() error
	NakWithDelay(time.Duration) error
	TermWithReason(string) error
	InProgress() error
}

type delivery struct {
	m settler
	// push is m for a pushed message, held here so settling it boxes
	// nothing per message.
	push    pushed
	msg     transport.Message
	herr    error
	attempt int
	seq     uint64
	// settled, when set, runs once when the delivery is acked, naked or
	// terminated: a group counts what each partition has outstanding.
	settled func()
	once    sync.Once
	// tenure is the holding of a partition it came under, for a group's
	// delivery.
	tenure *tenure
}

// Revoked implements transport.Revocable: this member no longer holds the
// partition, and the message comes again to whoever does.
func (d *delivery) Revoked() bool { return d.tenure != nil && d.tenure.lost.Load() }

// newDelivery decodes a received message: the topic without its partition
// token, and the envelope. A subject or header that does not parse is
// reported through HeaderErr, so the engine dead-letters the message. md is
// m's metadata, read once by the caller (nil when it has none).
func newDelivery(m jetstream.Msg, md *jetstream.MsgMetadata) *delivery {
	d := decode(m.Subject(), m.Data(), m.Headers())
	d.m = m
	if md != nil {
		d.attempt = int(md.NumDelivered)
		d.seq = md.Sequence.Stream
	}
	return d
}

// decode reads a delivery's topic and envelope; the caller sets how it is
// settled and its metadata.
func decode(subject string, data []byte, h nats.Header) *delivery {
	d := &delivery{}
	topic, _, terr := topicOf(subject)
	d.msg.Topic = topic
	d.msg.Payload = data
	d.msg.Headers, d.herr = parseHeaders(h)
	if terr != nil {
		d.herr = errors.Join(terr, d.herr)
	}
	return d
}

// done runs settled once.
func (d *delivery) done() {
	if d.settled != nil {
		d.once.Do(d.settled)
	}
}

func (d *delivery) Message() *transport.Message { return &d.msg }
func (d *delivery) HeaderErr() error            { return d.herr }
func (d *delivery) Attempt() int                { return d.attempt }
func (d *delivery) Sequence() uint64            { return d.seq }
func (d *delivery) Partition() int32            { return 0 }

func (d *delivery) Ack(context.Context) error {
	defer d.done()
	return mapErr(d.m.Ack())
}

func (d *delivery) Nak(_ context.Context, delay time.Duration) error {
	defer d.done()
	if d.Revoked() {
		return nil // the next holder has it: a nak would only redeliver it twice
	}
	if delay <= 0 {
		return mapErr(d.m.Nak())
	}
	return mapErr(d.m.NakWithDelay(delay))
}

func (d *delivery) Term(_ context.Context, reason string) error {
	defer d.done()
	return mapErr(d.m.TermWithReason(reason))
}

func (d *delivery) InProgress(context.Context) error { return mapErr(d.m.InProgress()) }

// sameFilters refuses to reuse a group's consumers for another pattern: two
// patterns under one Durable name would take each other's messages.
func sameFilters(sub transport.Subscription, have jetstream.ConsumerConfig, want []string) error {
	got := slices.Clone(have.FilterSubjects)
	if have.FilterSubject != "" {
		got = []string{have.FilterSubject}
	}
	if !sameSet(got, want) {
		for i, f := range got {
			if topic, _, err := topicOf(f); err == nil {
				got[i] = topic
			}
		}
		return fmt.Errorf("consumer group %q on %s already reads %v, not %v: one Durable name serves one pattern (two would take each other's messages); give this pattern its own group",
			sub.Group, StreamName(sub.Stream.Prefix), got, sub.Filters)
	}
	return nil
}

// sameSet reports whether a and b hold the same filters in any order.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
