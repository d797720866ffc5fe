package ampybus

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/checkpoint"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
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
	// ReplayRequestID is set when the message is being replayed, to the
	// request that asked for it.
	ReplayRequestID string
	// Snapshot is set on the state-of-the-world messages SnapshotThenSubscribe
	// delivers before going live.
	Snapshot bool
	// OutOfOrder reports that the payload's order time (the contract's
	// ordering.by) is older than one already handled for its partition key.
	// Monotonic and snapshot domains deliver such a message flagged, and count
	// it in Stats.Regressions; latest_wins domains skip it (Stats.Stale).
	OutOfOrder bool
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
	checkpoints checkpoint.Store
	dedupe      dedupe.Store
	dedupeTTL   time.Duration
	group       string
	start       transport.StartPosition
	concurrency int
	maxInFlight int
	ackWait     time.Duration
	failover    time.Duration
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

// Concurrency sets how many partition keys are handled at once (default 1).
// Messages with the same key are always handled one at a time, in order.
func Concurrency(n int) SubscribeOption { return func(o *subOptions) { o.concurrency = n } }

// MaxInFlight bounds delivered-but-unsettled messages (default 1024).
func MaxInFlight(n int) SubscribeOption { return func(o *subOptions) { o.maxInFlight = n } }

// AckWait is how long a handler may take before the broker redelivers
// (default 30s; for a Durable group at most the Failover bound). The
// subscription renews the lease of every message it holds, so only a dead
// consumer's messages wait it out.
func AckWait(d time.Duration) SubscribeOption { return func(o *subOptions) { o.ackWait = d } }

// Failover bounds how long the keys of a group member that died wait before
// a live member takes them over (default 5s). The new holder starts from the
// first message the dead one left unsettled, so keys keep their order; with
// a persistent Dedupe store nothing it had applied is applied again. A
// member that stalls longer than this loses its keys while still holding
// messages, so set it above your longest pause. Kafka brokers refuse session
// timeouts below group.min.session.timeout.ms (6s unless lowered).
func Failover(d time.Duration) SubscribeOption { return func(o *subOptions) { o.failover = d } }

// RetryBackoff replaces the contract's backoff: f returns the delay after
// the given failed attempt.
func RetryBackoff(f func(attempt int) time.Duration) SubscribeOption {
	return func(o *subOptions) { o.backoff = f }
}

// Dedupe sets where the subscription remembers the messages it has applied,
// for ttl: a message whose message_id or dedupe_key is there is acknowledged
// without calling the handler, and counted in Stats.Duplicates. The default
// is an in-memory store of 65536 keys kept for an hour; a
// natsbinding.KVStore survives restarts.
func Dedupe(store dedupe.Store, ttl time.Duration) SubscribeOption {
	if ttl <= 0 {
		ttl = time.Hour
	}
	return func(o *subOptions) { o.dedupe, o.dedupeTTL = store, ttl }
}

// Checkpoints keeps the subscription's per-key ordering state (the newest
// ordering time handled per partition key) in store, so after a restart the
// contract's ordering rule still skips stale values and flags regressions.
// Stream positions need nothing: durable groups resume where they acked.
func Checkpoints(store checkpoint.Store) SubscribeOption {
	return func(o *subOptions) { o.checkpoints = store }
}

// NoDedupe turns consumer-side deduplication off: every delivery reaches the handler.
func NoDedupe() SubscribeOption { return func(o *subOptions) { o.dedupe = nil; o.dedupeTTL = -1 } }

// Retry replaces the contract's retry policy for this subscription.
func Retry(p RetryPolicy) SubscribeOption { return func(o *subOptions) { o.retry = p.orDefault() } }

// MaxAttempts overrides the contract's retry.max_attempts: after n failed
// deliveries the message goes to the dead-letter queue.
func MaxAttempts(n int) SubscribeOption {
	return func(o *subOptions) { o.retry = o.retry.orDefault(); o.retry.MaxAttempts = max(n, 1) }
}

// Subscription is a running consumer.
type Subscription struct {
	cons   transport.Consumer
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
	stats  counters
	// aborted closes on Abort: handlers still running settle nothing.
	aborted   chan struct{}
	abortOnce sync.Once
}

// Stats counts what a subscription did with its messages; nothing it skips
// goes uncounted.
type Stats struct {
	// Handled messages returned nil from the handler and were acknowledged.
	Handled uint64
	// Retried counts failed attempts that were retried.
	Retried uint64
	// DeadLettered messages went to the dead-letter queue.
	DeadLettered uint64
	// Duplicates were acknowledged without the handler: already applied.
	Duplicates uint64
	// Stale messages of latest_wins domains were older than the newest for
	// their key, and were acknowledged without the handler.
	Stale uint64
	// Regressions went back in time for their key in a monotonic or snapshot
	// domain; they reach the handler with OutOfOrder set.
	Regressions uint64
}

type counters struct {
	handled, retried, deadLettered, duplicates, stale, regressions atomic.Uint64
}

// Stats returns the subscription's counters so far.
func (s *Subscription) Stats() Stats {
	return Stats{
		Handled: s.stats.handled.Load(), Retried: s.stats.retried.Load(),
		DeadLettered: s.stats.deadLettered.Load(), Duplicates: s.stats.duplicates.Load(),
		Stale: s.stats.stale.Load(), Regressions: s.stats.regressions.Load(),
	}
}

// Stop stops fetching, waits for in-flight handlers to finish and settle their
// messages, and closes the consumer. Unfetched messages stay on the broker.
func (s *Subscription) Stop() error {
	s.cancel()
	<-s.done
	return s.Err()
}

// Abort stops the subscription at once, as a crash would: it closes the
// consumer without waiting for running handlers, so whatever they have not
// settled is redelivered. Prefer Stop; Abort is for fatal errors and tests.
func (s *Subscription) Abort() {
	s.abortOnce.Do(func() {
		close(s.aborted)
		s.cancel()
		_ = s.cons.Abort()
	})
}

// Lag is how many of the subscription's messages are not yet acknowledged:
// the number to alert on when a consumer falls behind.
func (s *Subscription) Lag(ctx context.Context) (uint64, error) { return s.cons.Lag(ctx) }

// Done is closed when the subscription has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription stopped, if not by Stop or its context.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Subscribe consumes the route's messages whose topics match pattern (a
// subtopic pattern with * and > wildcards) and calls h for each, until ctx
// ends or Stop is called. Generated code calls it with typed patterns.
//
// Messages with the same partition key are handled one at a time, in order;
// up to Concurrency keys are handled at once. A failing message of an ordered
// domain is retried in place and holds back only its own key; in accumulate
// and counter_gauge domains it is redelivered later and its key moves on.
func Subscribe[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern string, h Handler[S, P], opts ...SubscribeOption) (*Subscription, error) {
	return start(ctx, b, r, pattern, h, nil, opts)
}

// ReplayWindow is what a replay reads: [Start, End) by stored time, for one
// partition key or all.
type ReplayWindow struct {
	// Start is inclusive; zero means the oldest message retained.
	Start time.Time
	// End is exclusive; zero means up to the newest message when the replay
	// begins. Either way the replay stops at that high watermark, so what is
	// published while it runs is left for a later replay.
	End time.Time
	// Key limits the replay to one partition key (key-scoped replay).
	Key string
	// RequestID names the replay request served; replayed messages carry it
	// in Message.ReplayRequestID and the replay_request_id header.
	RequestID string
	// Subject narrows the replay to topics matching this full pattern
	// (ampy.prod.ticks.v1.trade.>), as a ReplayRequest's subject does.
	Subject string
}

// HeaderReplayRequestID marks a replayed message with the request it serves.
const HeaderReplayRequestID = "replay_request_id"

// Replay runs h over the window's messages matching pattern and returns when
// the window is read. It reads through its own ephemeral consumer and never
// moves a live consumer's position. Pass the live subscription's Durable
// group and Dedupe store so effects already applied are not applied twice.
func Replay[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern string, w ReplayWindow, h Handler[S, P], opts ...SubscribeOption) (Stats, error) {
	if !w.End.IsZero() && !w.Start.Before(w.End) {
		return Stats{}, fmt.Errorf("replay %s: %w: the window [%s, %s) is empty", r.Spec.Domain.Prefix(b.env)+"."+pattern, ErrContract,
			envelope.FormatTime(w.Start), envelope.FormatTime(w.End))
	}
	if w.RequestID == "" {
		w.RequestID = "replay_" + newRunSuffix()
	}
	sub, err := start(ctx, b, r, pattern, h, &w, opts)
	if err != nil {
		return Stats{}, err
	}
	select {
	case <-sub.Done():
	case <-ctx.Done():
		sub.Stop()
		return sub.Stats(), fmt.Errorf("replay %s: %w", r.Spec.Domain.Prefix(b.env)+"."+pattern, ctx.Err())
	}
	return sub.Stats(), sub.Err()
}

// start opens the consumer and runs the engine: live when w is nil, a
// bounded replay of w otherwise.
func start[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], pattern string, h Handler[S, P], w *ReplayWindow, opts []SubscribeOption) (*Subscription, error) {
	spec := r.Spec
	d := spec.Domain
	o := subOptions{concurrency: 1, maxInFlight: 1024, ackWait: 30 * time.Second, retry: d.Retry.orDefault()}
	for _, opt := range opts {
		opt(&o)
	}
	o.concurrency = max(o.concurrency, 1)
	if o.group != "" && w == nil {
		// A dead member's unsettled messages come back within the failover
		// bound; the engine renews the leases of everything it holds.
		o.ackWait = min(o.ackWait, cmp.Or(o.failover, transport.DefaultFailover))
	}
	if o.backoff == nil {
		o.backoff = o.retry.Delay
	}
	if o.dedupe == nil && o.dedupeTTL == 0 {
		o.dedupe, o.dedupeTTL = dedupe.NewMemory(65536), time.Hour
	}
	filter := d.Prefix(b.env) + "." + pattern
	what := "subscribe "
	if w != nil {
		what = "replay "
	}
	if err := validPattern(pattern); err != nil {
		return nil, fmt.Errorf("%s%s: %w", what, filter, err)
	}
	s, err := b.stream(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", what, filter, err)
	}
	ts := transport.Subscription{
		Stream: s, Filters: []string{filter}, Group: o.group, Start: o.start,
		MaxInFlight: o.maxInFlight, AckWait: o.ackWait, Failover: o.failover, OnAssign: o.syncShared(),
		// No broker-side delivery limit: at its limit JetStream drops a message
		// silently; the engine counts attempts and dead-letters itself.
	}
	if w != nil {
		// A replay is never a group member; the group only scopes dedupe.
		ts.Group, ts.Bounded, ts.Until, ts.Key = "", true, w.End, w.Key
		ts.Start = transport.StartPosition{Kind: transport.StartFirst}
		if !w.Start.IsZero() {
			ts.Start = transport.StartPosition{Kind: transport.StartAtTime, Time: w.Start}
		}
	}
	cons, err := b.t.Subscribe(ctx, ts)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", what, filter, err)
	}
	loopCtx, cancel := context.WithCancel(ctx)
	sub := &Subscription{cons: cons, cancel: cancel, done: make(chan struct{}), aborted: make(chan struct{})}
	e := &engine[S, P]{bus: b, route: r, prefix: d.Prefix(b.env) + ".", handler: h, opts: o, stats: &sub.stats, aborted: sub.aborted,
		newPayload: r.payloads(), inPlace: d.Ordering != OrderAccumulate && d.Ordering != OrderCounterGauge,
		order: newOrderTracker(65536)}
	if o.checkpoints != nil {
		e.order.store, e.order.scope, e.order.log = o.checkpoints, o.group+"|"+d.Name+"|", b.log
	}
	if w != nil {
		// A nak'd message would come back after the window is read: retry in place.
		e.inPlace, e.replay, e.replaySubject = true, w.RequestID, w.Subject
	}
	go e.run(loopCtx, sub)
	return sub, nil
}

// syncShared catches up the stores the group shares through a log (a
// dedupe.Syncer) when partitions move to this member; nil when none does.
func (o *subOptions) syncShared() func(context.Context) error {
	var syncers []dedupe.Syncer
	for _, s := range []any{o.dedupe, o.checkpoints} {
		if sy, ok := s.(dedupe.Syncer); ok {
			syncers = append(syncers, sy)
		}
	}
	if len(syncers) == 0 {
		return nil
	}
	return func(ctx context.Context) error {
		for _, sy := range syncers {
			if err := sy.Sync(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// validPattern rejects an empty pattern (a zero-value generated pattern) and
// malformed tokens; * and a final > are the wildcards.
func validPattern(p string) error {
	toks := strings.Split(p, ".")
	for i, t := range toks {
		if t == "*" || (t == ">" && i == len(toks)-1) {
			continue
		}
		if !ValidToken(t) {
			return fmt.Errorf("%w: subscription pattern %q: build patterns with the generated All…/By… functions", ErrContract, p)
		}
	}
	return nil
}

// newMessageFunc returns a constructor for P's concrete message type.
func newMessageFunc[P proto.Message]() func() P {
	var zero P
	mt := zero.ProtoReflect().Type()
	return func() P { return mt.New().Interface().(P) }
}

type engine[S Subtopic, P proto.Message] struct {
	bus        *Bus
	route      *Route[S, P]
	prefix     string
	handler    Handler[S, P]
	opts       subOptions
	newPayload func() P
	// inPlace retries a failing message while holding its key, so the key's
	// order holds across retries.
	inPlace bool
	stats   *counters
	aborted <-chan struct{}
	order   *orderTracker
	// replay is the request id a replay serves; empty for live consumption.
	replay string
	// replaySubject narrows a replay to topics it matches.
	replaySubject string
}

// run hands deliveries to per-key workers: one message per key at a time, up
// to Concurrency keys at once. It returns when the consumer stops and every
// delivery taken from it has been settled or handed back.
func (e *engine[S, P]) run(ctx context.Context, sub *Subscription) {
	defer close(sub.done)
	hctx := context.WithoutCancel(ctx) // handlers finish their message while the subscription stops
	sem := make(chan struct{}, e.opts.concurrency)
	leases := newLeases()
	stopLeases := leases.keep(e.opts.ackWait, e.aborted)
	defer stopLeases()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		queued = map[string][]transport.Delivery{} // keys being worked on → messages waiting behind
	)
	work := func(key string, d transport.Delivery) {
		defer wg.Done()
		for {
			sem <- struct{}{}
			abandoned := e.isAborted() || e.process(hctx, ctx.Done(), d)
			<-sem
			leases.release(d)
			mu.Lock()
			next := queued[key]
			if len(next) == 0 || abandoned {
				delete(queued, key)
				mu.Unlock()
				// Whatever waited behind an abandoned message goes back too, in
				// order (after an abort, by itself, when the leases lapse).
				for _, rest := range next {
					leases.release(rest)
					if !e.isAborted() {
						_ = rest.Nak(hctx, 0)
					}
				}
				return
			}
			d, queued[key] = next[0], next[1:]
			mu.Unlock()
		}
	}
	for {
		d, err := sub.cons.Next(ctx)
		if err == nil && ctx.Err() != nil {
			// Stopping: leave it unsettled for redelivery rather than start it
			// after messages of its key that are already being handed back.
			break
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, transport.ErrEndOfStream) {
				if errors.Is(err, transport.ErrClosed) {
					err = fmt.Errorf("%w: the consumer closed under the subscription (was the bus closed before Stop?)", err)
				}
				sub.mu.Lock()
				sub.err = err
				sub.mu.Unlock()
				e.bus.log.Error("subscription stopped", "topic", e.prefix+"…", "err", err)
			}
			break
		}
		// Every message the engine holds keeps its lease, queued ones too.
		leases.hold(d)
		key := d.Message().Headers.PartitionKey
		mu.Lock()
		if q, busy := queued[key]; busy {
			queued[key] = append(q, d)
			mu.Unlock()
			continue
		}
		queued[key] = nil
		mu.Unlock()
		wg.Add(1)
		go work(key, d)
	}
	wg.Wait()
	_ = sub.cons.Close()
}

func (e *engine[S, P]) isAborted() bool {
	select {
	case <-e.aborted:
		return true
	default:
		return false
	}
}

// wait sleeps d unless the subscription stops first; it reports whether it
// slept the whole time.
func (e *engine[S, P]) wait(stopping <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stopping:
		return false
	case <-e.aborted:
		return false
	}
}

// handBack returns a delivery unsettled because the subscription is stopping.
func (e *engine[S, P]) handBack(ctx context.Context, d transport.Delivery) bool {
	if !e.isAborted() {
		_ = d.Nak(ctx, 0)
	}
	return true
}

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
	if revoked(d) {
		return e.handBack(ctx, d) // its partition moved: the new holder has it
	}
	maxAttempts := e.opts.retry.MaxAttempts
	attempt := d.Attempt()
	msg, reason, fetchErr := e.decode(ctx, d)
	for fetchErr != nil {
		// The blob store may come back: retry within the attempt budget, in
		// place for ordered domains so the key's order holds.
		if attempt >= maxAttempts {
			return e.deadLetter(ctx, stopping, d, fmt.Sprintf("blob_error: %d attempts failed; last error: %v", attempt, fetchErr))
		}
		e.stats.retried.Add(1)
		delay := e.opts.backoff(attempt)
		e.bus.log.Warn("blob fetch failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID, "blob_ref", m.Headers.BlobRef, "retry_in", delay, "err", fetchErr)
		if !e.inPlace {
			_ = d.Nak(ctx, delay)
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, d)
		}
		attempt++
		msg, reason, fetchErr = e.decode(ctx, d)
	}
	if reason != "" {
		return e.deadLetter(ctx, stopping, d, reason)
	}
	dupKeys := e.dedupeKeys(m)
	seen, ok := e.seen(ctx, stopping, dupKeys)
	if !ok {
		return e.handBack(ctx, d)
	}
	if seen {
		e.stats.duplicates.Add(1)
		if !e.isAborted() {
			_ = d.Ack(ctx)
		}
		return false
	}
	if attempt > maxAttempts {
		// Earlier deliveries died with their consumer before settling.
		return e.deadLetter(ctx, stopping, d, fmt.Sprintf("max_attempts: delivered %d times, over the limit of %d, without being settled", attempt, maxAttempts))
	}
	var at time.Time
	if e.route.OrderTime != nil {
		at = e.route.OrderTime(msg.Payload)
	}
	if !at.IsZero() {
		if newest, behind := e.order.behind(m.Headers.PartitionKey, at); behind {
			dom := e.route.Spec.Domain
			switch dom.Ordering {
			case OrderLatestWins:
				e.stats.stale.Add(1)
				// Per message and expected under latest_wins: Debug, not Info,
				// so a busy consumer's log stays quiet (Stats.Stale counts them).
				e.bus.log.Debug("stale: a newer value was already handled for the key; skipped", "topic", m.Topic,
					"partition_key", m.Headers.PartitionKey, "message_id", m.Headers.MessageID, "at", dom.orderValue(at), "newest", dom.orderValue(newest))
				if !e.isAborted() {
					_ = d.Ack(ctx)
				}
				return false
			case OrderMonotonic, OrderSnapshot:
				e.stats.regressions.Add(1)
				msg.OutOfOrder = true
				e.bus.log.Warn("ordering regression: older than a message already handled for the key", "topic", m.Topic,
					"partition_key", m.Headers.PartitionKey, "message_id", m.Headers.MessageID, "ordered_by", dom.OrderBy, "at", dom.orderValue(at), "newest", dom.orderValue(newest))
			}
		}
	}
	hctx := envelope.ContextWithTrace(ctx, m.Headers.Trace)
	for {
		if revoked(d) {
			return e.handBack(ctx, d) // its partition moved while it waited
		}
		msg.Attempt = attempt
		msg.Headers.RetryCount = max(m.Headers.RetryCount, attempt-1)
		err := e.call(hctx, msg)
		select {
		case <-e.aborted:
			return true // a dead consumer settles nothing
		default:
		}
		switch {
		case err == nil:
			e.stats.handled.Add(1)
			e.mark(ctx, stopping, dupKeys)
			if !at.IsZero() {
				e.order.advance(m.Headers.PartitionKey, at)
			}
			if aerr := d.Ack(ctx); aerr != nil {
				e.bus.log.Warn("ack failed; the message will be redelivered", "topic", m.Topic, "message_id", m.Headers.MessageID, "err", aerr)
			}
			return false
		case errors.Is(err, ErrPermanent):
			return e.deadLetter(ctx, stopping, d, "handler: "+err.Error())
		case attempt >= maxAttempts:
			return e.deadLetter(ctx, stopping, d, fmt.Sprintf("max_attempts: %d attempts failed; last error: %v", attempt, err))
		}
		delay := e.opts.backoff(attempt)
		e.stats.retried.Add(1)
		e.bus.log.Warn("handler failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID,
			"trace_id", m.Headers.Trace.TraceIDHex(), "attempt", attempt, "retry_in", delay, "in_place", e.inPlace, "err", err)
		if !e.inPlace {
			if nerr := d.Nak(ctx, delay); nerr != nil {
				e.bus.log.Warn("nak failed; the broker redelivers after ack_wait", "message_id", m.Headers.MessageID, "err", nerr)
			}
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, d)
		}
		attempt++
	}
}

// dedupeKeys are the keys under which an applied message is remembered,
// scoped to the consumer group: another group must still see it.
func (e *engine[S, P]) dedupeKeys(m *transport.Message) []string {
	if e.opts.dedupe == nil {
		return nil
	}
	scope := e.opts.group + "|" + e.route.Spec.Domain.Name + "|"
	keys := []string{scope + "id|" + m.Headers.MessageID}
	if m.Headers.DedupeKey != "" {
		keys = append(keys, scope+"dk|"+m.Headers.DedupeKey)
	}
	return keys
}

// seen reports whether any key was applied before. A store that cannot be
// read is retried, holding the message (and its key), rather than risk
// applying it twice; ok is false when the subscription stopped first.
func (e *engine[S, P]) seen(ctx context.Context, stopping <-chan struct{}, keys []string) (seen, ok bool) {
	for _, k := range keys {
		for try := 1; ; try++ {
			found, err := e.opts.dedupe.Seen(ctx, k)
			if err == nil {
				if found {
					return true, true
				}
				break
			}
			delay := storeRetry(try)
			e.bus.log.Warn("dedupe store unreadable; retrying before handling the message", "key", k, "attempt", try, "retry_in", delay, "err", err)
			if !e.wait(stopping, delay) {
				return false, false
			}
		}
	}
	return false, true
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
func (e *engine[S, P]) mark(ctx context.Context, stopping <-chan struct{}, keys []string) {
	for _, k := range keys {
		for try := 1; ; try++ {
			err := e.opts.dedupe.Mark(ctx, k, e.opts.dedupeTTL)
			if err == nil {
				break
			}
			delay := storeRetry(try)
			e.bus.log.Warn("dedupe mark failed; retrying before the message is acknowledged", "key", k, "attempt", try, "retry_in", delay, "err", err)
			if !e.wait(stopping, delay) {
				e.bus.log.Error("dedupe mark not stored before stopping; if redelivered the message is applied again", "key", k, "err", err)
				return
			}
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

// verify checks a stored message against its route as every consumer does,
// and decodes it. It returns the message, or the reason it is a poison pill
// (the dlq_reason), or (only for a blob that could not be fetched) an error
// worth retrying. prefix is the domain's topic prefix with its final dot.
func verify[S Subtopic, P proto.Message](ctx context.Context, b *Bus, r *Route[S, P], newPayload func() P, prefix string, m *transport.Message, headerErr error) (*Message[S, P], string, error) {
	if headerErr != nil {
		return nil, "contract_violation: " + headerErr.Error(), nil
	}
	if err := m.Headers.Validate(); err != nil {
		return nil, "contract_violation: " + err.Error(), nil
	}
	if m.Headers.SchemaFQDN != r.Spec.Schema.FQDN {
		return nil, fmt.Sprintf("schema_mismatch: schema_fqdn %s, but %s carries %s", m.Headers.SchemaFQDN, r.Spec.Pattern, r.Spec.Schema.FQDN), nil
	}
	if reason := checkSchema(&m.Headers, r.Spec.Schema); reason != "" {
		return nil, reason, nil
	}
	if len(m.Topic) <= len(prefix) || m.Topic[:len(prefix)] != prefix {
		return nil, "contract_violation: topic " + m.Topic + " is outside " + prefix + ">", nil
	}
	st, err := r.Parse(m.Topic[len(prefix):])
	if err != nil {
		return nil, "contract_violation: " + err.Error(), nil
	}
	payload, reason, err := b.openPayload(ctx, &m.Headers, m.Payload, r.Spec.Domain.InflateLimit())
	if reason != "" || err != nil {
		return nil, reason, err
	}
	p := newPayload()
	if err := proto.Unmarshal(payload, p); err != nil {
		return nil, "decode_error: " + err.Error(), nil
	}
	keys, err := r.Keys(st, p)
	if err != nil {
		return nil, "contract_violation: " + err.Error(), nil
	}
	if keys.Partition != m.Headers.PartitionKey {
		return nil, fmt.Sprintf("contract_violation: partition_key %q, but the contract derives %q from the payload", m.Headers.PartitionKey, keys.Partition), nil
	}
	// The dedupe key decides whether a message reaches its handler, so it
	// is the contract's or nothing: a header must not switch dedupe off,
	// nor make an unrelated message look like a duplicate.
	switch got := m.Headers.DedupeKey; {
	case got == keys.Dedupe:
	case got == "":
		return nil, fmt.Sprintf("contract_violation: dedupe_key is missing, but the contract derives %q from the payload", keys.Dedupe), nil
	case keys.Dedupe == "":
		return nil, fmt.Sprintf("contract_violation: dedupe_key %q, but the contract derives none for %s", got, r.Spec.Pattern), nil
	default:
		return nil, fmt.Sprintf("contract_violation: dedupe_key %q, but the contract derives %q from the payload", got, keys.Dedupe), nil
	}
	return &Message[S, P]{Topic: m.Topic, Subtopic: st, Payload: p, Headers: m.Headers}, "", nil
}

// checkSchema holds the headers that describe the payload to what the
// contract says the topic carries. A producer on a newer minor or patch is
// compatible (additive evolution within a major), so schema_hash, optional
// in the seed, is compared only at the same schema_version: a difference
// there is a schema changed without a version bump.
func checkSchema(h *envelope.Headers, want Schema) string {
	if h.ContentType != envelope.ContentTypeProtobuf {
		return fmt.Sprintf("schema_mismatch: content_type %s, but the contract carries %s as %s", h.ContentType, want.FQDN, envelope.ContentTypeProtobuf)
	}
	got, ok := semverMajor(h.SchemaVersion)
	if !ok {
		return fmt.Sprintf("contract_violation: schema_version %q is not MAJOR.MINOR.PATCH", h.SchemaVersion)
	}
	if major, _ := semverMajor(want.Version); got != major {
		return fmt.Sprintf("schema_mismatch: schema_version %s is major %s, but this topic carries %s major %s (a new major travels on a new topic version)", h.SchemaVersion, got, want.FQDN, major)
	}
	if hash := h.SchemaHash; hash != "" && want.Hash != "" && hash != want.Hash && h.SchemaVersion == want.Version {
		return fmt.Sprintf("schema_hash_mismatch: produced against %s, this consumer has %s for %s %s: the schema changed without a version bump", hash, want.Hash, want.FQDN, want.Version)
	}
	return ""
}

// semverMajor returns the major of a MAJOR.MINOR.PATCH version.
func semverMajor(v string) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	for _, p := range parts {
		if p == "" || len(p) > 9 || strings.Trim(p, "0123456789") != "" || (len(p) > 1 && p[0] == '0') {
			return "", false
		}
	}
	return parts[0], true
}

// openPayload returns the protobuf bytes a message carries: fetched from the
// blob store for a pointer, inflated when gzipped. A reason is a poison pill;
// an error is a blob fetch worth retrying.
func (b *Bus) openPayload(ctx context.Context, h *envelope.Headers, payload []byte, maxInflated int64) ([]byte, string, error) {
	var err error
	if ref := h.BlobRef; ref != "" {
		if b.blobs == nil {
			return nil, "blob_error: the message points at " + ref + " but this bus has no blob store (ampybus.WithBlobStore)", nil
		}
		if h.BlobSize > maxInflated {
			return nil, fmt.Sprintf("blob_error: blob_size %d is over the domain's max_inflated of %d bytes", h.BlobSize, maxInflated), nil
		}
		if payload, err = b.blobs.Get(ctx, ref); errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidRef) {
			return nil, "blob_error: " + err.Error(), nil
		} else if err != nil {
			return nil, "", err
		}
		if got := blob.Hash(payload); got != h.BlobHash || int64(len(payload)) != h.BlobSize {
			return nil, fmt.Sprintf("blob_hash_mismatch: %s is %d bytes with %s; the message says %d bytes with %s", ref, len(payload), got, h.BlobSize, h.BlobHash), nil
		}
	}
	switch h.ContentEncoding {
	case "":
	case envelope.EncodingGzip:
		compressed := len(payload)
		if payload, err = GunzipLimit(payload, maxInflated); errors.Is(err, ErrDecompressionLimit) {
			return nil, fmt.Sprintf("decompression_limit: the gzip payload of %d bytes inflates past the domain's max_inflated of %d bytes", compressed, maxInflated), nil
		} else if err != nil {
			return nil, "decode_error: gzip: " + err.Error(), nil
		}
	default:
		return nil, "decode_error: unknown content_encoding " + h.ContentEncoding, nil
	}
	return payload, "", nil
}

// ErrDecompressionLimit: a compressed payload inflates past its limit (a
// gzip bomb, or a payload over the domain's max_inflated).
var ErrDecompressionLimit = errors.New("decompression limit exceeded")

// GunzipLimit inflates a gzip payload of at most limit bytes. Past limit it
// stops and returns ErrDecompressionLimit, so a bomb costs at most about
// limit bytes of memory. The trailer's declared size only sizes the first
// buffer: a truncated or lying stream must not pick the verdict.
func GunzipLimit(b []byte, limit int64) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// The trailer's ISIZE is the (last member's) size modulo 2^32. A buffer
	// of that size and a byte to see the end; a stream that outgrows it
	// doubles up to the limit, so memory stays within a few times the limit.
	declared := int64(binary.LittleEndian.Uint32(b[len(b)-4:]))
	out := make([]byte, 0, max(min(declared, limit)+1, 512))
	for {
		if len(out) == cap(out) {
			grown := make([]byte, len(out), min(limit+1, 2*int64(cap(out))))
			copy(grown, out)
			out = grown
		}
		n, err := r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrDecompressionLimit, limit)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

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
// delivery back because the subscription is stopping.
func (e *engine[S, P]) deadLetter(ctx context.Context, stopping <-chan struct{}, d transport.Delivery, reason string) (abandoned bool) {
	m := d.Message()
	for try := 1; ; try++ {
		if e.isAborted() {
			return true
		}
		err := e.bus.deadLetter(ctx, e.route.Spec.Domain, m, reason, e.opts.group)
		if err == nil {
			break
		}
		delay := e.opts.backoff(try)
		e.bus.log.Error("dead-letter write failed; retrying", "topic", m.Topic, "message_id", m.Headers.MessageID, "reason", reason, "retry_in", delay, "err", err)
		if !e.inPlace {
			if nerr := d.Nak(ctx, delay); nerr != nil {
				e.bus.log.Warn("nak failed; the broker redelivers after ack_wait", "message_id", m.Headers.MessageID, "err", nerr)
			}
			return false
		}
		if !e.wait(stopping, delay) {
			return e.handBack(ctx, d)
		}
	}
	e.stats.deadLettered.Add(1)
	e.bus.log.Warn("dead-lettered", "topic", m.Topic, "message_id", m.Headers.MessageID, "trace_id", m.Headers.Trace.TraceIDHex(),
		"consumer", e.opts.group, "result", "dlq", "reason", reason)
	if err := d.Term(ctx, reason); err != nil {
		e.bus.log.Warn("term failed after dead-lettering; the message will be delivered again and dead-lettered again", "message_id", m.Headers.MessageID, "err", err)
	}
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
	if _, err := b.send(ctx, dl, s, dm); err != nil {
		return fmt.Errorf("publish %s: %w", dm.Topic, err)
	}
	return nil
}
