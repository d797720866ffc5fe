package ampybus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// process checks, decodes and handles one delivery, retrying in place for
// ordered domains, and settles it. It reports whether it handed the delivery
// back unsettled because the subscription is stopping.
func (e *engine[S, P]) process(ctx context.Context, stopping <-chan struct{}, d transport.Delivery) (abandoned bool) {
	m := d.Message()
	if e.replaySubject != "" && !transport.Match(e.replaySubject, m.Topic) {
		_ = d.Ack(ctx) // outside the replay request's subject
		return false
	}
	if e.isAborted() {
		return true
	}
	received := time.Now()
	ctx, ev := e.delivered(ctx, d, received)
	if revoked(d) {
		return e.handBack(ctx, ev, d, d.Attempt()) // its partition moved: the new holder has it
	}
	maxAttempts := e.opts.retry.MaxAttempts
	attempt := d.Attempt()
	msg, reason, fetchErr := e.decode(ctx, d)
	for fetchErr != nil {
		// The blob store may come back: retry within the attempt budget, in
		// place for ordered domains so the key's order holds.
		if attempt >= maxAttempts {
			return e.deadLetter(ctx, stopping, ev, d, Result{Reason: fmt.Sprintf("blob_error: %d attempts failed; last error: %v", attempt, fetchErr), Attempt: attempt})
		}
		e.stats.retried.Add(1)
		delay := e.opts.backoff(attempt)
		e.bus.log.Warn("blob fetch failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID, "blob_ref", m.Headers.BlobRef,
			"consumer", e.opts.group, "result", "retry", "retry_in", delay, "err", fetchErr)
		e.report(ctx, ev, Result{Outcome: OutcomeRetry, Reason: "blob_error: " + fetchErr.Error(), Attempt: attempt, Err: fetchErr})
		if !e.inPlace {
			_ = d.Nak(ctx, delay)
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, ev, d, attempt)
		}
		attempt++
		msg, reason, fetchErr = e.decode(ctx, d)
	}
	if reason != "" {
		return e.deadLetter(ctx, stopping, ev, d, Result{Reason: reason, Rejected: true, Attempt: attempt})
	}
	dupKey := e.dedupeKey(m)
	seen, ok := e.seen(ctx, stopping, dupKey)
	if !ok {
		return e.handBack(ctx, ev, d, attempt)
	}
	if seen {
		e.stats.duplicates.Add(1)
		if !e.isAborted() {
			_ = d.Ack(ctx)
		}
		e.settled(ctx, ev, m, received, Result{Outcome: OutcomeDuplicate, Attempt: attempt})
		return false
	}
	if attempt > maxAttempts {
		// Earlier deliveries died with their consumer before settling.
		return e.deadLetter(ctx, stopping, ev, d, Result{Reason: fmt.Sprintf("max_attempts: delivered %d times, over the limit of %d, without being settled", attempt, maxAttempts), Attempt: attempt})
	}
	if e.expired(msg, received) {
		e.stats.expired.Add(1)
		if !e.route.Spec.Domain.FlagExpired {
			if !e.isAborted() {
				_ = d.Ack(ctx)
			}
			// Per message and expected when a consumer lags: Debug, as stale
			// (Stats.Expired counts them).
			if e.bus.log.Enabled(ctx, slog.LevelDebug) {
				e.bus.log.Debug("expired: past its expiry, not current; skipped", "topic", m.Topic,
					"partition_key", m.Headers.PartitionKey, "message_id", m.Headers.MessageID, "consumer", e.opts.group,
					"result", "expired", "expires_by", e.route.Spec.Domain.ExpiresBy)
			}
			e.report(ctx, ev, Result{Outcome: OutcomeExpired, Attempt: attempt})
			return false
		}
		msg.Expired = true
	}
	var at time.Time
	if e.route.OrderTime != nil {
		at = e.route.OrderTime(msg.Payload)
	}
	if !at.IsZero() {
		newest, behind := e.order.behind(m.Headers.PartitionKey, at)
		if !behind && !newest.IsZero() && at.After(newest) && e.route.Spec.Domain.Restatements {
			e.stats.restatements.Add(1)
			msg.Restatement = true
		}
		if behind {
			dom := e.route.Spec.Domain
			switch dom.Ordering {
			case OrderLatestWins:
				e.stats.stale.Add(1)
				if !e.isAborted() {
					_ = d.Ack(ctx)
				}
				// Per message and expected under latest_wins: Debug, not Info,
				// so a busy consumer's log stays quiet (Stats.Stale counts them).
				if e.bus.log.Enabled(ctx, slog.LevelDebug) {
					e.bus.log.Debug("stale: a newer value was already handled for the key; skipped", "topic", m.Topic,
						"partition_key", m.Headers.PartitionKey, "message_id", m.Headers.MessageID, "consumer", e.opts.group,
						"result", "stale", "at", dom.orderValue(at), "newest", dom.orderValue(newest))
				}
				e.report(ctx, ev, Result{Outcome: OutcomeStale, Attempt: attempt})
				return false
			case OrderMonotonic, OrderSnapshot:
				e.stats.regressions.Add(1)
				msg.OutOfOrder = true
				e.bus.log.Warn("ordering regression: older than a message already handled for the key", "topic", m.Topic,
					"partition_key", m.Headers.PartitionKey, "message_id", m.Headers.MessageID, "consumer", e.opts.group,
					"ordered_by", dom.OrderBy, "at", dom.orderValue(at), "newest", dom.orderValue(newest))
			}
		}
	}
	hctx := envelope.ContextWithTrace(ctx, m.Headers.Trace)
	for {
		if revoked(d) {
			return e.handBack(ctx, ev, d, attempt) // its partition moved while it waited
		}
		msg.Attempt = attempt
		msg.Headers.RetryCount = max(m.Headers.RetryCount, attempt-1)
		began := time.Now()
		err := e.call(hctx, msg)
		took := time.Since(began)
		select {
		case <-e.aborted:
			return true // a dead consumer settles nothing
		default:
		}
		switch {
		case err == nil:
			e.stats.handled.Add(1)
			e.mark(ctx, stopping, dupKey)
			if !at.IsZero() {
				e.order.advance(m.Headers.PartitionKey, at)
			}
			if aerr := d.Ack(ctx); aerr != nil {
				e.bus.log.Warn("ack failed; the message will be redelivered", "topic", m.Topic, "message_id", m.Headers.MessageID, "err", aerr)
			}
			e.settled(ctx, ev, m, received, Result{Outcome: OutcomeOK, Attempt: attempt, Handler: took, OutOfOrder: msg.OutOfOrder})
			return false
		case errors.Is(err, ErrPermanent):
			return e.deadLetter(ctx, stopping, ev, d, Result{Reason: "handler: " + err.Error(), Attempt: attempt, Handler: took, Err: err})
		case attempt >= maxAttempts:
			return e.deadLetter(ctx, stopping, ev, d, Result{Reason: fmt.Sprintf("max_attempts: %d attempts failed; last error: %v", attempt, err), Attempt: attempt, Handler: took, Err: err})
		}
		delay := e.opts.backoff(attempt)
		e.stats.retried.Add(1)
		e.bus.log.Warn("handler failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID,
			"trace_id", m.Headers.Trace.TraceIDHex(), "consumer", e.opts.group, "result", "retry", "attempt", attempt,
			"latency_ms", latencyMS(m.Headers.ProducedAt, received), "retry_in", delay, "in_place", e.inPlace, "err", err)
		e.report(ctx, ev, Result{Outcome: OutcomeRetry, Reason: "handler: " + err.Error(), Attempt: attempt, Handler: took, Err: err})
		if !e.inPlace {
			if nerr := d.Nak(ctx, delay); nerr != nil {
				e.bus.log.Warn("nak failed; the broker redelivers after ack_wait", "message_id", m.Headers.MessageID, "err", nerr)
			}
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, ev, d, attempt)
		}
		attempt++
	}
}

// expired reports a payload past the contract's expiry. A live consumer
// judges by its clock when the message arrived; a replay re-lives the
// stream, so by when the message was produced: a signal that was current
// when published is replayed as current.
func (e *engine[S, P]) expired(msg *Message[S, P], received time.Time) bool {
	if e.route.ExpiresAt == nil {
		return false
	}
	exp := e.route.ExpiresAt(msg.Payload)
	if exp.IsZero() {
		return false
	}
	now := received
	if e.replaying && !msg.Headers.ProducedAt.IsZero() {
		now = msg.Headers.ProducedAt
	}
	return !exp.After(now)
}

// delivered runs the OnDelivery hooks; the event is nil when none is attached.
func (e *engine[S, P]) delivered(ctx context.Context, d transport.Delivery, received time.Time) (context.Context, *DeliveryEvent) {
	if len(e.bus.hooks.deliver) == 0 {
		return ctx, nil
	}
	m := d.Message()
	ev := &DeliveryEvent{Domain: e.route.Spec.Domain, Spec: e.route.Spec, Transport: e.bus.t.Name(), Env: e.bus.env, Topic: m.Topic,
		Consumer: e.opts.group, Replay: e.replay, Headers: &m.Headers, PayloadBytes: len(m.Payload),
		Attempt: d.Attempt(), Partition: d.Partition(), Sequence: d.Sequence(), Received: received}
	for _, h := range e.bus.hooks.deliver {
		ctx = h.OnDelivery(ctx, ev)
	}
	return ctx, ev
}

// report runs the OnResult hooks.
func (e *engine[S, P]) report(ctx context.Context, ev *DeliveryEvent, r Result) {
	if ev == nil {
		return
	}
	for _, h := range e.bus.hooks.deliver {
		h.OnResult(ctx, ev, r)
	}
}

// settled logs a message settled without trouble, at Debug so a busy
// consumer's log stays quiet by default, and reports it.
func (e *engine[S, P]) settled(ctx context.Context, ev *DeliveryEvent, m *transport.Message, received time.Time, r Result) {
	if e.bus.log.Enabled(ctx, slog.LevelDebug) {
		e.bus.log.Debug("consumed", "topic", m.Topic, "message_id", m.Headers.MessageID, "trace_id", m.Headers.Trace.TraceIDHex(),
			"consumer", e.opts.group, "producer", m.Headers.Producer, "result", r.Outcome.String(), "attempt", r.Attempt,
			"latency_ms", latencyMS(m.Headers.ProducedAt, received), "handler_ms", float64(r.Handler.Microseconds())/1000)
	}
	e.report(ctx, ev, r)
}

// latencyMS is the time from produced_at to delivery, in milliseconds; 0
// when produced_at is missing.
func latencyMS(produced, received time.Time) float64 {
	if produced.IsZero() {
		return 0
	}
	return float64(received.Sub(produced).Microseconds()) / 1000
}

// dedupeKey is the key under which an applied message is remembered, ""
// without a store: its dedupe_key when the contract derives one (a
// republish of the same effect carries it under a new message_id, and a
// redelivery carries both), else its message_id. It is scoped to the
// subscription's group: another group must still see the message.
func (e *engine[S, P]) dedupeKey(m *transport.Message) string {
	switch {
	case e.opts.dedupe == nil:
		return ""
	case m.Headers.DedupeKey != "":
		return e.dedupeScope + "dk|" + m.Headers.DedupeKey
	default:
		return e.dedupeScope + "id|" + m.Headers.MessageID
	}
}

// seen reports whether key was applied before. A store that cannot be read
// is retried, holding the message (and its key), rather than risk applying
// it twice; ok is false when the subscription stopped first.
func (e *engine[S, P]) seen(ctx context.Context, stopping <-chan struct{}, key string) (seen, ok bool) {
	if key == "" {
		return false, true
	}
	for try := 1; ; try++ {
		found, err := e.opts.dedupe.Seen(ctx, key)
		if err == nil {
			return found, true
		}
		delay := storeRetry(try)
		e.bus.log.Warn("dedupe store unreadable; retrying before handling the message", "key", key, "attempt", try, "retry_in", delay, "err", err)
		if !e.wait(stopping, delay) {
			return false, false
		}
	}
}

// storeRetry is the wait before retrying a dedupe store after failure n:
// short, so a mark lands soon after the store is back, before another member
// can take the message over.
func storeRetry(n int) time.Duration {
	return RetryPolicy{Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}.Delay(n)
}

// revoked reports a delivery whose partition moved to another member.
func revoked(d transport.Delivery) bool {
	r, ok := d.(transport.Revocable)
	return ok && r.Revoked()
}

// mark records an applied message in the dedupe store before it is
// acknowledged. The effect has happened: a message acknowledged without its
// mark would be applied again if it came back, so a store that is down is
// retried, holding the message (and its key), until the mark is stored or
// the subscription stops.
func (e *engine[S, P]) mark(ctx context.Context, stopping <-chan struct{}, key string) {
	if key == "" {
		return
	}
	for try := 1; ; try++ {
		err := e.opts.dedupe.Mark(ctx, key, e.opts.dedupeTTL)
		if err == nil {
			return
		}
		delay := storeRetry(try)
		e.bus.log.Warn("dedupe mark failed; retrying before the message is acknowledged", "key", key, "attempt", try, "retry_in", delay, "err", err)
		if !e.wait(stopping, delay) {
			e.bus.log.Error("dedupe mark not stored before stopping; if redelivered the message is applied again", "key", key, "err", err)
			return
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

// decode returns the typed message, or the reason it is a poison pill, or
// (only for a blob that could not be fetched) an error worth retrying.
func (e *engine[S, P]) decode(ctx context.Context, d transport.Delivery) (*Message[S, P], string, error) {
	m := d.Message()
	msg, reason, err := verify(ctx, e.bus, e.route, e.newPayload, e.prefix, m, d.HeaderErr())
	if msg == nil {
		return nil, reason, err
	}
	if e.replay != "" {
		h := &msg.Headers
		h.Extra = make(map[string]string, len(m.Headers.Extra)+1)
		for k, v := range m.Headers.Extra {
			h.Extra[k] = v
		}
		h.Extra[HeaderReplayRequestID] = e.replay
	}
	msg.ReplayRequestID, msg.Attempt, msg.Sequence, msg.Partition = e.replay, d.Attempt(), d.Sequence(), d.Partition()
	return msg, "", nil
}
