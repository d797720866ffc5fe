package ampybus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// attemptTimeout bounds one publish attempt, so a broker that went silent
// (a dead leader, a blackholed connection) costs a retry, not the whole
// budget.
const attemptTimeout = 2 * time.Second

// send stores m on s and waits for the ack, retrying an unacknowledged
// publish with the same message id under the domain's publish_retry: the
// broker's dedupe (Nats-Msg-Id; consumers' message_id on Kafka) keeps a
// retry from being stored twice. When any attempt may have reached the
// broker, the error wraps ErrMaybeStored.
func (b *Bus) send(ctx context.Context, o outgoing, s transport.Stream, m *transport.Message) (transport.PublishAck, error) {
	ctx, ev := b.publishing(ctx, o.kind, o.spec, o.domain, m, false)
	var began time.Time
	debug := b.log.Enabled(ctx, slog.LevelDebug)
	if debug {
		began = time.Now()
	}
	ack, err := b.sendRetrying(ctx, o.domain, s, m)
	if debug {
		b.logPublished(ctx, m, began, err)
	}
	if ev != nil {
		b.published(ctx, ev, result(m, ack), err)
	}
	return ack, err
}

// logPublished logs a stored message at Debug, so the default log stays
// quiet; failures are the caller's to report.
func (b *Bus) logPublished(ctx context.Context, m *transport.Message, began time.Time, err error) {
	if err == nil {
		b.log.Debug("published", "topic", m.Topic, "message_id", m.Headers.MessageID, "trace_id", m.Headers.Trace.TraceIDHex(),
			"producer", m.Headers.Producer, "result", "ok", "latency_ms", float64(time.Since(began).Microseconds())/1000)
	}
}

// outgoing says what a message sent is, for the hooks.
type outgoing struct {
	kind   PublishKind
	domain *DomainSpec
	spec   *SubtopicSpec
}

func (b *Bus) sendRetrying(ctx context.Context, d *DomainSpec, s transport.Stream, m *transport.Message) (transport.PublishAck, error) {
	r := d.PublishRetry.orDefault()
	giveUp := time.Now().Add(r.GiveUpAfter)
	maybeStored := false
	for attempt := 1; ; attempt++ {
		at := time.Now().Add(attemptTimeout)
		if giveUp.Before(at) {
			at = giveUp
		}
		actx, cancel := context.WithDeadline(ctx, at)
		ack, err := b.t.Publish(actx, s, m)
		cancel()
		if err == nil {
			return ack, nil
		}
		maybeStored = maybeStored || errors.Is(err, ErrMaybeStored)
		delay := r.delay(attempt)
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || time.Now().Add(delay).After(giveUp) {
			return transport.PublishAck{}, gaveUp(err, attempt, maybeStored, m.Headers.MessageID)
		}
		b.log.Warn("publish not acknowledged; retrying with the same message id", "topic", m.Topic,
			"message_id", m.Headers.MessageID, "attempt", attempt, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return transport.PublishAck{}, gaveUp(fmt.Errorf("%w: %w", ctx.Err(), err), attempt, maybeStored, m.Headers.MessageID)
		}
	}
}

// gaveUp says how many attempts failed and, when any may have been stored,
// how to make sure without storing it twice.
func gaveUp(err error, attempts int, maybeStored bool, id string) error {
	switch {
	case maybeStored && errors.Is(err, ErrMaybeStored):
		return fmt.Errorf("%w (after %d attempt(s); republish with WithMessageID(%q) to be sure)", err, attempts, id)
	case maybeStored:
		return fmt.Errorf("%w (after %d attempt(s); an earlier one %w: republish with WithMessageID(%q) to be sure)", err, attempts, ErrMaybeStored, id)
	case attempts > 1:
		return fmt.Errorf("%w (after %d attempts)", err, attempts)
	}
	return err
}

// sendAsync hands f's message to the broker and completes f once: with the
// ack, or with the last error once the domain's publish_retry gives up.
// Retries wait for room in the async window like any publish. The retry
// state travels with the message in f.send (pooled), so an async publish
// costs a small future and one callback. now is when the publish began: the
// retry budget and the latency count from it.
func (b *Bus) sendAsync(ctx context.Context, o outgoing, s transport.Stream, f *PublishFuture, now time.Time) error {
	a := f.send
	m := &a.msg
	ctx, ev := b.publishing(ctx, o.kind, o.spec, o.domain, m, true)
	a.b, a.ctx, a.s, a.ev, a.policy, a.n, a.began = b, ctx, s, ev, o.domain.PublishRetry.orDefault(), 1, now
	a.debug = b.log.Enabled(ctx, slog.LevelDebug)
	a.giveUp = now.Add(a.policy.GiveUpAfter)
	a.fut = f
	if err := b.t.PublishAsync(ctx, s, m, a.answered); err != nil {
		if ev != nil {
			b.published(ctx, ev, PublishResult{MessageID: m.Headers.MessageID, Topic: m.Topic}, err)
		}
		return err
	}
	return nil
}

// asyncSend is an async publish between its attempts: its message and
// retry budget.
type asyncSend struct {
	b           *Bus
	ctx         context.Context
	s           transport.Stream
	ev          *PublishEvent
	debug       bool
	began       time.Time
	policy      PublishRetry
	giveUp      time.Time
	n           int // the attempt in flight
	maybeStored bool
	msg         transport.Message // what is sent, built by prepare
	fut         *PublishFuture
	// encoded is the marshalled payload's buffer, and answered the binding's
	// callback (fut.attempted), both made once and kept through the pool:
	// msg.Payload is encoded unless compressed or offloaded.
	encoded  []byte
	answered transport.AsyncResult
}

// maxPooledPayload bounds the payload buffer an async publish keeps for the
// next: a rare large payload is not held by the pool.
const maxPooledPayload = 64 << 10

// attempted receives the outcome of attempt a.n: it completes the future, or
// retries with the same message id after the policy's delay.
func (f *PublishFuture) attempted(ack transport.PublishAck, err error) {
	a := f.send
	if err == nil {
		f.finish(ack, nil)
		return
	}
	a.maybeStored = a.maybeStored || errors.Is(err, ErrMaybeStored)
	delay := a.policy.delay(a.n)
	if !errors.Is(err, ErrUnavailable) || time.Now().Add(delay).After(a.giveUp) {
		f.finish(transport.PublishAck{}, gaveUp(err, a.n, a.maybeStored, a.msg.Headers.MessageID))
		return
	}
	b := a.b
	b.log.Warn("async publish not acknowledged; retrying with the same message id", "topic", a.msg.Topic,
		"message_id", a.msg.Headers.MessageID, "attempt", a.n, "retry_in", delay, "err", err)
	b.retrying.add()
	time.AfterFunc(delay, func() {
		rctx, cancel := context.WithDeadline(context.WithoutCancel(a.ctx), a.giveUp)
		defer cancel()
		a.n++
		if err := b.t.PublishAsync(rctx, a.s, &a.msg, f.retried); err != nil {
			f.finish(transport.PublishAck{}, err)
			b.retrying.done()
		}
	})
}

// retried is attempted for a retry, which Flush waits for.
func (f *PublishFuture) retried(ack transport.PublishAck, err error) {
	b := f.send.b // finish clears f.send
	f.attempted(ack, err)
	b.retrying.done()
}

// finish reports the outcome to the hooks and completes the future.
func (f *PublishFuture) finish(ack transport.PublishAck, err error) {
	a := f.send
	m := &a.msg
	if a.debug {
		a.b.logPublished(a.ctx, m, a.began, err)
	}
	if a.ev != nil {
		a.b.published(a.ctx, a.ev, result(m, ack), err)
	}
	f.mu.Lock()
	if err != nil {
		f.res = PublishResult{MessageID: m.Headers.MessageID, Topic: m.Topic}
		f.err = fmt.Errorf("publish %s: %w", m.Topic, err)
	} else {
		f.res = result(m, ack)
	}
	f.finished = true
	if f.done != nil {
		close(f.done)
	}
	f.send = nil
	onSuccess := f.onSuccess
	f.onSuccess = nil
	f.mu.Unlock()
	a.release()
	if err == nil && onSuccess != nil {
		onSuccess()
	}
}

// asyncSends recycles the in-flight state of async publishes and their
// payload buffers: at tens of thousands a second they would otherwise be the
// largest allocations of each, and most of the collector's work. Nothing
// holds one past its outcome: a binding lets the message and its payload go
// once done returns (transport.Transport), and hooks see the headers only
// while they run (PublishEvent).
var asyncSends sync.Pool

func newAsyncSend() *asyncSend {
	if a, ok := asyncSends.Get().(*asyncSend); ok {
		return a
	}
	a := new(asyncSend)
	a.answered = func(ack transport.PublishAck, err error) { a.fut.attempted(ack, err) }
	return a
}

// release clears a, so the pool holds no message or context, and returns
// it to the pool with its payload buffer emptied for the next publish.
func (a *asyncSend) release() {
	buf, answered := a.encoded[:0], a.answered
	*a = asyncSend{answered: answered}
	if cap(buf) <= maxPooledPayload {
		a.encoded = buf
	}
	asyncSends.Put(a)
}

// retries counts async publishes between a failed attempt and the outcome
// of their retry, so Flush can wait for them.
type retries struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while n is 0
}

func (r *retries) add() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		r.zero = make(chan struct{})
	}
	r.n++
}

func (r *retries) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n--; r.n == 0 {
		close(r.zero)
		r.zero = nil
	}
}

// idle is closed once no publish is waiting for a retry.
func (r *retries) idle() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return r.zero
}
