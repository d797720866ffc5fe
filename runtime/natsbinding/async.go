package natsbinding

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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

// inflight tracks the async publishes awaiting their ack. The transport
// publishes them itself, each with a reply subject under one wildcard
// subscription, rather than through jetstream.PublishMsgAsync, which per
// message adds an options struct, a header set into the message's map
// (growing it), a future, a timer, and a JSON decode of the ack. Here a
// publish costs one entry in a map and a FIFO, acks are read by a small
// parser, and one sweeper fails publishes unanswered past asyncAckTimeout.
// The FIFO also lets Flush wait for everything sent before it, and lets a
// refusal by the server (which answers with an error on the connection,
// never a reply) fail the oldest publish to its subject.
type inflight struct {
	window *transport.Window
	// prefix is the reply subject of every publish, before its number.
	prefix string

	mu    sync.Mutex
	bySeq map[uint64]*asyncPublish
	// fifo[head:] are the publishes not yet completed or passed over, in
	// the order sent; completed ones are passed over from the head.
	fifo    []*asyncPublish
	head    int
	sent    uint64 // publishes registered so far
	flushes []flushWaiter
}

type asyncPublish struct {
	seq      uint64
	subject  string
	sentAt   int64 // monotonic nanoseconds since the transport opened
	done     transport.AsyncResult
	finished bool
}

// flushWaiter is a Flush waiting until every publish numbered below upTo
// has completed.
type flushWaiter struct {
	upTo uint64
	done chan struct{}
}

func newInflight(window *transport.Window, prefix string) *inflight {
	return &inflight{window: window, prefix: prefix, bySeq: map[uint64]*asyncPublish{}}
}

// add registers m before it is sent, so its ack cannot arrive first, and
// sets its reply subject. It returns m's number.
func (f *inflight) add(m *nats.Msg, now int64, done transport.AsyncResult) uint64 {
	f.mu.Lock()
	f.sent++
	p := &asyncPublish{seq: f.sent, subject: m.Subject, sentAt: now, done: done}
	f.bySeq[p.seq] = p
	f.fifo = append(f.fifo, p)
	f.mu.Unlock()
	m.Reply = f.prefix + strconv.FormatUint(p.seq, 36)
	return p.seq
}

// forget unregisters publish seq after nats.go refused to send it. It
// reports whether it was still registered: a server refusal may have
// completed it in between, and then its outcome is already delivered.
func (f *inflight) forget(seq uint64) bool {
	p := f.take(seq)
	if p == nil {
		return false
	}
	f.finish(p)
	return true
}

// reply reads the server's answer to an async publish: an ack, an error,
// or no responders (no stream leader took it).
func (f *inflight) reply(m *nats.Msg) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, f.prefix), 36, 64)
	if err != nil {
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		f.complete(seq, transport.PublishAck{}, publishErr(jetstream.ErrNoStreamResponse))
		return
	}
	ack, err := parsePubAck(m.Data)
	f.complete(seq, ack, err)
}

// sweep fails every publish sent before deadline and still unanswered: an
// ack lost with a connection, or a stream leader that died with it.
func (f *inflight) sweep(deadline int64) {
	var late []*asyncPublish
	f.mu.Lock()
	for _, p := range f.fifo[f.head:] {
		if p.sentAt > deadline {
			break // the FIFO is in sending order
		}
		if f.bySeq[p.seq] == p {
			delete(f.bySeq, p.seq)
			late = append(late, p)
		}
	}
	f.mu.Unlock()
	for _, p := range late {
		p.done(transport.PublishAck{}, publishErr(jetstream.ErrAsyncPublishTimeout))
		f.finish(p)
	}
}

// complete finishes publish seq once: one already failed by a refusal, a
// timeout or Close is not completed again when its answer comes later.
func (f *inflight) complete(seq uint64, ack transport.PublishAck, err error) {
	if p := f.take(seq); p != nil {
		p.done(ack, err)
		f.finish(p)
	}
}

// take unregisters publish seq, so nothing else completes it; nil when
// something did.
func (f *inflight) take(seq uint64) *asyncPublish {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.bySeq[seq]
	delete(f.bySeq, seq)
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
		if f.bySeq[p.seq] == p && p.subject == subject {
			hit = p
			delete(f.bySeq, p.seq)
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
	for seq, p := range f.bySeq {
		delete(f.bySeq, seq)
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
	msg := toNats(r, m)
	seq := t.inflight.add(msg, t.clock(), done)
	if err := t.nc.PublishMsg(msg); err != nil {
		if !t.inflight.forget(seq) {
			return nil // a refusal already completed it: done has its outcome
		}
		return publishErr(err)
	}
	return nil
}

// clock is monotonic nanoseconds since the transport opened, for the
// sweeper's deadlines.
func (t *Transport) clock() int64 { return int64(time.Since(t.opened)) }

// sweepAsync fails async publishes unanswered past asyncAckTimeout, until
// Close has waited for the last ones.
func (t *Transport) sweepAsync() {
	tick := time.NewTicker(asyncAckTimeout / 8)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.inflight.sweep(t.clock() - int64(asyncAckTimeout))
		case <-t.unswept:
			return
		}
	}
}

// parsePubAck reads a publish's ack: the forms nats-server writes by a small
// parser (parsePlainPubAck), anything else (an error, escapes, fields it may
// add) through encoding/json, which reads the plain forms the same way
// (FuzzParsePubAck).
func parsePubAck(b []byte) (transport.PublishAck, error) {
	if ack, ok := parsePlainPubAck(string(b)); ok {
		return ack, nil
	}
	var resp struct {
		Stream    string              `json:"stream"`
		Sequence  uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
		Error     *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return transport.PublishAck{}, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if resp.Error != nil {
		return transport.PublishAck{}, publishErr(resp.Error)
	}
	if resp.Stream == "" {
		return transport.PublishAck{}, jetstream.ErrInvalidJSAck
	}
	return transport.PublishAck{Stream: resp.Stream, Sequence: resp.Sequence, Duplicate: resp.Duplicate}, nil
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

	// The sweeper goes on meanwhile: a publish whose ack was lost fails
	// after its timeout, not after this wait.
	var err error
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("close: %d async publishes unacknowledged after 10s", t.window.InFlight())
	}
	close(t.unswept)
	t.inflight.abort(fmt.Errorf("%w: %w before the broker acknowledged: republish with the same message id to be sure", transport.ErrClosed, transport.ErrMaybeStored))
	t.nc.Close()
	return err
}

// parsePlainPubAck is parsePubAck's fast path, for the forms nats-server
// writes: {"stream":"S","seq":N}, with "domain":"D" before "seq" when the
// account has a domain, and ,"duplicate": true after it for a message id it
// already holds. ok is false for anything else.
func parsePlainPubAck(s string) (ack transport.PublishAck, ok bool) {
	rest, ok := strings.CutPrefix(s, `{"stream":"`)
	if !ok {
		return ack, false
	}
	stream, rest, ok := strings.Cut(rest, `"`)
	if !ok || !plainJSON(stream) {
		return ack, false
	}
	if r, ok := strings.CutPrefix(rest, `,"domain":"`); ok {
		domain, r, ok := strings.Cut(r, `"`)
		if !ok || !plainJSON(domain) {
			return ack, false
		}
		rest = r
	}
	if rest, ok = strings.CutPrefix(rest, `,"seq":`); !ok {
		return ack, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || (n > 1 && rest[0] == '0') {
		return ack, false // JSON numbers have no leading zero
	}
	seq, err := strconv.ParseUint(rest[:n], 10, 64)
	if err != nil {
		return ack, false
	}
	ack = transport.PublishAck{Stream: stream, Sequence: seq}
	rest = rest[n:]
	for _, dup := range []string{`,"duplicate": true`, `,"duplicate":true`} {
		if r, ok := strings.CutPrefix(rest, dup); ok {
			ack.Duplicate, rest = true, r
			break
		}
	}
	return ack, rest == "}"
}

// plainJSON reports a JSON string body that decodes to itself: printable
// ASCII without quotes or escapes.
func plainJSON(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}
