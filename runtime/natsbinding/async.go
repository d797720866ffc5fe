package natsbinding

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// asyncAckTimeout fails an async publish whose ack has not come, so the bus
// retries it (same message id) instead of stalling for half a minute when a
// stream leader dies.
const asyncAckTimeout = 2 * time.Second

// inflight tracks the async publishes awaiting their ack. nats.go completes
// each through the ack and error handlers the transport registers, on the
// goroutine that read the reply: no goroutine, future or channel per
// message. Publishes stay in a FIFO too, so Flush can wait for everything
// sent before it, and a refusal by the server (which answers with an error
// on the connection, never a reply) fails the oldest publish to its subject.
type inflight struct {
	window *transport.Window

	mu    sync.Mutex
	byMsg map[*nats.Msg]*asyncPublish
	// fifo[head:] are the publishes not yet completed or passed over, in
	// the order sent; completed ones are passed over from the head.
	fifo    []*asyncPublish
	head    int
	sent    uint64 // publishes registered so far
	flushes []flushWaiter
}

type asyncPublish struct {
	seq      uint64
	msg      *nats.Msg
	subject  string
	done     transport.AsyncResult
	finished bool
}

// flushWaiter is a Flush waiting until every publish numbered below upTo
// has completed.
type flushWaiter struct {
	upTo uint64
	done chan struct{}
}

func newInflight(window *transport.Window) *inflight {
	return &inflight{window: window, byMsg: map[*nats.Msg]*asyncPublish{}}
}

// add registers m before it is sent, so its ack cannot arrive first.
func (f *inflight) add(m *nats.Msg, done transport.AsyncResult) {
	f.mu.Lock()
	f.sent++
	p := &asyncPublish{seq: f.sent, msg: m, subject: m.Subject, done: done}
	f.byMsg[m] = p
	f.fifo = append(f.fifo, p)
	f.mu.Unlock()
}

// forget unregisters m after nats.go refused to send it. It reports
// whether m was still registered: a server refusal may have completed it
// in between, and then its outcome is already delivered.
func (f *inflight) forget(m *nats.Msg) bool {
	p := f.take(m)
	if p == nil {
		return false
	}
	f.finish(p)
	return true
}

// acked is nats.go's ack handler, called after it released its own lock.
func (f *inflight) acked(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	f.complete(m, transport.PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil)
}

// failed is nats.go's error handler. nats.go calls it for a timeout while
// holding its own lock, so the completion (and the bus's hooks and retries
// behind it) runs on its own goroutine: failures are rare.
func (f *inflight) failed(_ jetstream.JetStream, m *nats.Msg, err error) {
	go f.complete(m, transport.PublishAck{}, publishErr(err))
}

// complete finishes m's publish once: a publish already failed by a refusal
// or by Close is not completed again when nats.go gives up on it later.
func (f *inflight) complete(m *nats.Msg, ack transport.PublishAck, err error) {
	if p := f.take(m); p != nil {
		p.done(ack, err)
		f.finish(p)
	}
}

// take unregisters m, so nothing else completes it; nil when something did.
func (f *inflight) take(m *nats.Msg) *asyncPublish {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.byMsg[m]
	delete(f.byMsg, m)
	return p
}

// finish gives p's window slot back and passes it in the FIFO. It runs
// after p's outcome was delivered, so a Flush it wakes finds every
// completion (and any retry it scheduled) already done.
func (f *inflight) finish(p *asyncPublish) {
	f.mu.Lock()
	f.finishLocked(p)
	f.mu.Unlock()
	f.window.Release()
}

// finishLocked marks p done, passes over the completed head of the FIFO and
// wakes the flushes it satisfies.
func (f *inflight) finishLocked(p *asyncPublish) {
	p.finished = true
	for f.head < len(f.fifo) && f.fifo[f.head].finished {
		f.fifo[f.head] = nil
		f.head++
	}
	if f.head == len(f.fifo) {
		f.fifo, f.head = f.fifo[:0], 0
	} else if f.head > 1024 && f.head > len(f.fifo)/2 {
		n := copy(f.fifo, f.fifo[f.head:])
		clear(f.fifo[n:])
		f.fifo, f.head = f.fifo[:n], 0
	}
	if len(f.flushes) == 0 {
		return
	}
	oldest := f.sent + 1 // nothing outstanding
	if f.head < len(f.fifo) {
		oldest = f.fifo[f.head].seq
	}
	kept := f.flushes[:0]
	for _, w := range f.flushes {
		if w.upTo < oldest {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(f.flushes[len(kept):])
	f.flushes = kept
}

// flushed returns a channel closed once every publish registered so far
// has completed.
func (f *inflight) flushed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	done := make(chan struct{})
	if f.head == len(f.fifo) {
		close(done)
		return done
	}
	f.flushes = append(f.flushes, flushWaiter{upTo: f.sent, done: done})
	return done
}

// refused fails the oldest outstanding publish to subject, which the server
// refused; a refusal that matches none changes nothing.
func (f *inflight) refused(subject string) {
	f.mu.Lock()
	var hit *asyncPublish
	for _, p := range f.fifo[f.head:] {
		if f.byMsg[p.msg] == p && p.subject == subject {
			hit = p
			delete(f.byMsg, p.msg)
			break
		}
	}
	f.mu.Unlock()
	if hit == nil {
		return
	}
	hit.done(transport.PublishAck{}, &ForbiddenError{Op: "publish", Subject: subject})
	f.finish(hit)
}

// abort fails every outstanding publish with err: the transport is closing.
func (f *inflight) abort(err error) {
	f.mu.Lock()
	var left []*asyncPublish
	for m, p := range f.byMsg {
		delete(f.byMsg, m)
		left = append(left, p)
	}
	f.mu.Unlock()
	for _, p := range left {
		p.done(transport.PublishAck{}, err)
		f.finish(p)
	}
}

// PublishAsync implements transport.Transport. The window bounds messages in
// flight; when it is full the call waits for room until ctx ends.
func (t *Transport) PublishAsync(ctx context.Context, s transport.Stream, m *transport.Message, done transport.AsyncResult) error {
	r, err := t.route(ctx, s)
	if err != nil {
		return err
	}
	if err := t.window.Acquire(ctx, t.done); err != nil {
		return err
	}
	t.closeMu.RLock()
	defer t.closeMu.RUnlock()
	if t.closed {
		t.window.Release()
		return transport.ErrClosed
	}
	msg := toNats(r.partitions, m)
	t.inflight.add(msg, done)
	if _, err := t.js.PublishMsgAsync(msg, r.opts...); err != nil {
		if !t.inflight.forget(msg) {
			return nil // a refusal already completed it: done has its outcome
		}
		return publishErr(err)
	}
	return nil
}

// Flush implements transport.Transport.
func (t *Transport) Flush(ctx context.Context) error {
	t.closeMu.RLock()
	if t.closed {
		t.closeMu.RUnlock()
		return transport.ErrClosed
	}
	flushed := t.inflight.flushed()
	t.closeMu.RUnlock()
	select {
	case <-flushed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush: %d async publishes still in flight: %w", t.window.InFlight(), ctx.Err())
	}
}

// Close stops taking async publishes, waits (up to 10 s) for the broker to
// acknowledge those in flight, fails any still unanswered with ErrClosed, and
// closes the connection.
func (t *Transport) Close() error {
	t.closeMu.Lock()
	if t.closed {
		t.closeMu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	flushed := t.inflight.flushed()
	t.closeMu.Unlock()

	var err error
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("close: %d async publishes unacknowledged after 10s", t.window.InFlight())
	}
	t.inflight.abort(fmt.Errorf("%w before the broker acknowledged: the message may or may not be stored; republish with the same message id to be sure", transport.ErrClosed))
	t.nc.Close()
	return err
}
