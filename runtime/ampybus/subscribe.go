package ampybus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

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
	// Expired reports a payload past the contract's expiry (ordering
	// expires:), handed over because the contract says expired: flag; it is
	// not current. Under expired: skip it never reaches a handler.
	Expired bool
	// Restatement reports a snapshot newer than one already handled for its
	// key, in a domain whose contract says restatements: true (fundamentals:
	// a period's figures revised). Counted in Stats.Restatements.
	Restatement bool
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

// MaxInFlight bounds the messages a subscription holds delivered but not yet
// settled, over all the partitions it consumes (default 1024): its memory,
// and how far it reads ahead of a key that is being retried.
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
// for ttl: a message whose dedupe_key (or message_id, for a domain without
// one) is there is acknowledged without calling the handler, and counted in
// Stats.Duplicates. The default is the bus's in-memory store of
// DefaultDedupeCapacity marks kept for an hour, shared by its subscriptions;
// a natsbinding.KVStore survives restarts.
func Dedupe(store dedupe.Store, ttl time.Duration) SubscribeOption {
	if ttl <= 0 {
		ttl = defaultDedupeTTL
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
	// Expired messages were past the contract's expiry when delivered: acknowledged
	// without the handler (expired: skip) or handed over with Expired set
	// (expired: flag). Like Regressions and Restatements, a flagged message
	// redelivered (after a crash) is counted again: these count deliveries.
	Expired uint64
	// Restatements reached the handler with Restatement set.
	Restatements uint64
}

type counters struct {
	handled, retried, deadLettered, duplicates, stale, regressions, expired, restatements atomic.Uint64
}

// Stats returns the subscription's counters so far.
func (s *Subscription) Stats() Stats {
	return Stats{
		Handled: s.stats.handled.Load(), Retried: s.stats.retried.Load(),
		DeadLettered: s.stats.deadLettered.Load(), Duplicates: s.stats.duplicates.Load(),
		Stale: s.stats.stale.Load(), Regressions: s.stats.regressions.Load(),
		Expired: s.stats.expired.Load(), Restatements: s.stats.restatements.Load(),
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
	dedupeScope := o.group + "|" + d.Name + "|"
	if o.dedupe == nil && o.dedupeTTL == 0 {
		o.dedupe, o.dedupeTTL = b.dedupe, defaultDedupeTTL
		if o.group == "" {
			// Each subscription without a group sees every message: its
			// marks in the shared store are its own.
			dedupeScope = "\x00" + strconv.FormatUint(b.subs.Add(1), 10) + "|" + dedupeScope
		}
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
		order: newOrderTracker(65536), dedupeScope: dedupeScope}
	if o.checkpoints != nil {
		e.order.store, e.order.scope, e.order.log = o.checkpoints, o.group+"|"+d.Name+"|", b.log
	}
	if w != nil {
		// A nak'd message would come back after the window is read: retry in place.
		e.inPlace, e.replay, e.replaySubject, e.replaying = true, w.RequestID, w.Subject, true
	}
	if len(b.hooks.subs) > 0 {
		e.subEvent = &SubscriptionEvent{Domain: d, Spec: spec, Transport: b.t.Name(), Env: b.env, Filter: filter, Consumer: o.group, Replay: e.replay, sub: sub}
		for _, h := range b.hooks.subs {
			h.OnSubscribe(ctx, e.subEvent)
		}
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
