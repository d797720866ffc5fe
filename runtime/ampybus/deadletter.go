package ampybus

import (
	"context"
	"fmt"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Headers the dead-letter queue adds to a message's own.
const (
	HeaderDLQTopic    = "dlq_original_topic"
	HeaderDLQConsumer = "dlq_consumer"
	HeaderDLQAt       = "dlq_at"
)

// deadLetter writes the delivery, bytes and headers unchanged plus dlq_reason,
// to ampy.{env}.dlq.v1.{domain}, and terminates it only once that write is
// acknowledged. A failed write is retried: in place for ordered domains (the
// key waits), by redelivery otherwise. It reports whether it handed the
// delivery back because the subscription is stopping. r says why (Reason)
// and what led there; the hooks get it with OutcomeDeadLetter.
func (e *engine[S, P]) deadLetter(ctx context.Context, stopping <-chan struct{}, ev *DeliveryEvent, d transport.Delivery, r Result) (abandoned bool) {
	m, reason := d.Message(), r.Reason
	for try := 1; ; try++ {
		if e.isAborted() {
			return true
		}
		err := e.bus.deadLetter(ctx, e.route.Spec.Domain, m, reason, e.opts.group)
		if err == nil {
			break
		}
		delay := e.opts.backoff(try)
		e.bus.log.Error("dead-letter write failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID, "consumer", e.opts.group,
			"result", "retry", "reason", reason, "retry_in", delay, "err", err)
		e.report(ctx, ev, Result{Outcome: OutcomeRetry, Reason: "dlq_write: " + err.Error(), Attempt: r.Attempt, Err: err})
		if !e.inPlace {
			if nerr := d.Nak(ctx, delay); nerr != nil {
				e.bus.log.Warn("nak failed; the broker redelivers after ack_wait", "message_id", m.Headers.MessageID, "err", nerr)
			}
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, ev, d, r.Attempt)
		}
	}
	e.stats.deadLettered.Add(1)
	e.bus.log.Warn("dead-lettered", "topic", m.Topic, "message_id", m.Headers.MessageID, "trace_id", m.Headers.Trace.TraceIDHex(),
		"consumer", e.opts.group, "producer", m.Headers.Producer, "result", "dlq", "reason", reason, "attempt", r.Attempt,
		"latency_ms", latencyMS(m.Headers.ProducedAt, time.Now()))
	if err := d.Term(ctx, reason); err != nil {
		e.bus.log.Warn("term failed after dead-lettering; the message will be delivered again and dead-lettered again", "message_id", m.Headers.MessageID, "err", err)
	}
	r.Outcome = OutcomeDeadLetter
	e.report(ctx, ev, r)
	return false
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
	// Each group's dead letter is its own; a group's repeated write (a crash
	// between the write and the settle) is still dropped by the broker.
	dm := &transport.Message{Topic: dl.Prefix(b.env) + "." + d.Name, Headers: h, Payload: m.Payload,
		DedupeID: h.MessageID + "|" + consumer}
	if _, err := b.send(ctx, outgoing{KindDeadLetter, dl, nil}, s, dm); err != nil {
		return fmt.Errorf("publish %s: %w", dm.Topic, err)
	}
	return nil
}
