package kafkabinding

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Subscribe implements transport.Transport. A group subscription joins a
// consumer group and commits offsets only up to the first message not yet
// settled in each partition; a failed message is retried in place, so later
// messages of its partition wait behind it and key order holds.
func (t *Transport) Subscribe(ctx context.Context, sub transport.Subscription) (transport.Consumer, error) {
	maxInFlight := sub.MaxInFlight
	if maxInFlight <= 0 {
		maxInFlight = 1024
	}
	c := &consumer{
		t: t, sub: sub, prefix: sub.Stream.Prefix + ".",
		out:     make(chan *delivery, maxInFlight),
		limit:   int64(maxInFlight),
		room:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
		stopped: make(chan struct{}),
		parts:   map[int32]*partition{},
	}
	start, err := t.startOffsets(ctx, sub)
	if err != nil {
		return nil, err
	}
	if sub.Bounded {
		if sub.Group != "" {
			return nil, fmt.Errorf("replay of %s: a bounded subscription is never a group member, so it cannot move a live consumer", sub.Stream.Prefix)
		}
		if err := c.bound(ctx, start); err != nil {
			return nil, err
		}
	}
	opts := append(t.baseOpts(), kgo.FetchMaxWait(250*time.Millisecond))
	if sub.Group == "" {
		opts = append(opts, kgo.ConsumePartitions(start.KOffsets()))
	} else {
		if err := t.seedGroup(ctx, sub, start); err != nil {
			return nil, err
		}
		session := t.sessionTimeout(ctx, sub.Failover)
		opts = append(opts,
			kgo.ConsumeTopics(sub.Stream.Prefix),
			// Partitions added after the group was seeded start at their beginning.
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.ConsumerGroup(sub.Group),
			kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(c.assigned),
			kgo.OnPartitionsRevoked(c.revoked),
			kgo.OnPartitionsLost(c.lost),
			kgo.SessionTimeout(session),
			kgo.HeartbeatInterval(max(100*time.Millisecond, session/3)),
		)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer for %s: %w", sub.Stream.Prefix, err)
	}
	c.cl = cl
	go c.poll()
	go c.commitLoop()
	return c, nil
}

// sessionTimeout is the group session timeout for a failover budget: a
// member silent that long is dropped and its partitions reassigned, which
// takes the rest of the budget. Brokers refuse sessions below
// group.min.session.timeout.ms (6s by default), so a shorter session is
// raised to it, with a warning saying how to lower it.
func (t *Transport) sessionTimeout(ctx context.Context, failover time.Duration) time.Duration {
	session := cmp.Or(failover, transport.DefaultFailover) * 3 / 5
	cfgs, err := t.adm.DescribeBrokerConfigs(ctx)
	if err != nil {
		t.log.Debug("kafka: cannot read the brokers' group.min.session.timeout.ms", "err", err)
		return session
	}
	for _, rc := range cfgs {
		for _, c := range rc.Configs {
			if c.Key != "group.min.session.timeout.ms" || c.Value == nil {
				continue
			}
			if ms, err := strconv.Atoi(*c.Value); err == nil && time.Duration(ms)*time.Millisecond > session {
				floor := time.Duration(ms) * time.Millisecond
				t.log.Warn("kafka: failover is below the brokers' group.min.session.timeout.ms; a dead member's partitions move after the broker minimum (lower it on the brokers for faster failover)",
					"failover", session, "broker_minimum", floor)
				session = floor
			}
		}
	}
	return session
}

type consumer struct {
	t      *Transport
	sub    transport.Subscription
	prefix string
	cl     *kgo.Client
	out    chan *delivery
	// inflight counts records handed out and not settled, up to limit. The
	// poller refills only once half of them are settled (room is signalled
	// then): one fetch for many records, not a wakeup per settled record.
	inflight  atomic.Int64
	limit     int64
	room      chan struct{}
	closed    chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once

	// commitMu serialises commits with rebalance callbacks, so no commit for a
	// partition runs after its revocation.
	commitMu sync.Mutex
	// noCommit is set by Abort: a crashed consumer commits nothing more.
	noCommit atomic.Bool

	// For a bounded subscription: each partition's end offset when it began,
	// the partitions read to their end, and eof, closed when all are.
	ends     map[int32]int64
	finished map[int32]bool
	eof      chan struct{}
	mu       sync.Mutex
	parts    map[int32]*partition
}

// partition tracks the records handed out from one partition, in offset order.
type partition struct {
	// pending holds the handed-out deliveries in offset order, down to the
	// oldest unsettled one; records the filter passed over are not kept.
	pending []*delivery
	// latest is the newest record seen, handed out or passed over: once
	// nothing is pending, everything up to it may be committed. Positions,
	// not records, are kept: a record holds on to its whole fetch buffer.
	latest position
	commit position // the last record whose offset+1 may be committed
	dirty  bool
	// revoking: the partition is being taken away; deliveries not yet
	// started are revoked.
	revoking bool
}

// position is where a record sits in its partition; a zero position (no
// record yet) is marked by seen false.
type position struct {
	seen   bool
	epoch  int32
	offset int64
}

func positionOf(r *kgo.Record) position {
	return position{seen: true, epoch: r.LeaderEpoch, offset: r.Offset}
}

func (c *consumer) poll() {
	defer close(c.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.closed
		cancel()
	}()
	for {
		// Wait until half the in-flight limit is free before asking for records.
		for c.inflight.Load() > c.limit/2 {
			select {
			case <-c.room:
			case <-c.closed:
				return
			}
		}
		free := int(c.limit - c.inflight.Load())
		fetches := c.cl.PollRecords(ctx, free)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			c.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.t.log.Warn("kafka fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(c.accept)
		c.cl.AllowRebalance()
	}
}

// accept tracks a polled record and hands it out if its subtopic matches,
// or if it has no subtopic the contract allows.
func (c *consumer) accept(r *kgo.Record) {
	last := false
	if c.sub.Bounded {
		c.mu.Lock()
		done, end := c.finished[r.Partition], c.ends[r.Partition]
		c.mu.Unlock()
		// Kafka keeps record times in milliseconds, so the window's end is
		// compared at that resolution.
		if done || r.Offset >= end || (!c.sub.Until.IsZero() && r.Timestamp.UnixMilli() >= c.sub.Until.UnixMilli()) {
			c.finish(r.Partition) // past the window: left for a later replay
			return
		}
		last = r.Offset == end-1
	}
	if last {
		defer c.finish(r.Partition)
	}
	d := &delivery{c: c, rec: r, attempt: 1}
	d.msg.Payload = r.Value
	var sub string
	d.msg.Headers, sub, d.herr = parseHeaders(r.Key, r.Headers)
	d.msg.Topic = r.Topic
	if sub != "" {
		d.msg.Topic = r.Topic + "." + sub
	}
	ours := c.matches(d.msg.Topic) && (c.sub.Key == "" || d.msg.Headers.PartitionKey == c.sub.Key)
	if !ours && c.sub.Key == "" {
		// A record no filter can route (a missing or off-contract subtopic)
		// is every consumer's to dead-letter: passed over, it would vanish.
		ours = !c.sub.Stream.Holds(d.msg.Topic)
	}
	c.mu.Lock()
	p := c.parts[r.Partition]
	if p == nil {
		p = &partition{}
		c.parts[r.Partition] = p
	}
	p.latest = positionOf(r)
	if !ours {
		// Passed over: the offset may move past it once nothing before it is pending.
		if len(p.pending) == 0 {
			p.commit, p.dirty = p.latest, true
		}
		c.mu.Unlock()
		return
	}
	d.part = p
	p.pending = append(p.pending, d)
	c.mu.Unlock()
	// Polls ask for at most the free room, and only this goroutine takes
	// it: the limit holds without waiting here.
	c.inflight.Add(1)
	select {
	case c.out <- d:
	case <-c.closed:
	}
}

func (c *consumer) matches(topic string) bool {
	for _, f := range c.sub.Filters {
		if transport.Match(f, topic) {
			return true
		}
	}
	return false
}

// Lag implements transport.Consumer for groups: the group's committed
// offsets against the end offsets, over every partition of the topic.
func (c *consumer) Lag(ctx context.Context) (uint64, error) {
	if c.sub.Group == "" {
		return 0, fmt.Errorf("lag of %s: %w: lag is reported for consumer groups (ampybus.Durable)", c.sub.Stream.Prefix, transport.ErrNotFound)
	}
	lags, err := c.t.adm.Lag(ctx, c.sub.Group)
	if err == nil {
		err = lags.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("lag of group %s: %w", c.sub.Group, mapErr(err))
	}
	var total int64
	for _, ml := range lags[c.sub.Group].Lag[c.sub.Stream.Prefix] {
		total += max(ml.Lag, 0)
	}
	return uint64(total), nil
}

// Watermark implements transport.Consumer: the end offsets captured when a
// bounded subscription began.
func (c *consumer) Watermark() transport.Position {
	if c.ends == nil {
		return transport.Position{}
	}
	offs := make(map[int32]int64, len(c.ends))
	for p, o := range c.ends {
		offs[p] = o
	}
	return transport.Position{Offsets: offs}
}

// Next implements transport.Consumer.
func (c *consumer) Next(ctx context.Context) (transport.Delivery, error) {
	for {
		d, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		if c.owned(d) {
			return d, nil
		}
		// Its partition was revoked: the new owner handles it; settle nothing here.
		c.release()
	}
}

func (c *consumer) next(ctx context.Context) (*delivery, error) {
	select {
	case d := <-c.out:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, transport.ErrClosed
	case <-c.eof: // nil, so never ready, unless bounded
		// The whole window was handed out. A record being retried comes back
		// through out, so the replay ends only when nothing is unsettled.
		for {
			select {
			case d := <-c.out:
				return d, nil
			default:
			}
			if c.inflight.Load() == 0 {
				return nil, transport.ErrEndOfStream
			}
			select {
			case d := <-c.out:
				return d, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.closed:
				return nil, transport.ErrClosed
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// Close implements transport.Consumer: it stops polling, commits what is
// settled and leaves the group. Unsettled records are redelivered to the
// group later.
func (c *consumer) Close() error {
	c.shutdown(true)
	return nil
}

// Abort implements transport.Consumer: the client goes without a last
// commit, so the group resumes from the last periodic commit.
func (c *consumer) Abort() error {
	c.shutdown(false)
	return nil
}

func (c *consumer) shutdown(commit bool) {
	if !commit {
		c.noCommit.Store(true) // before anything else: not even a periodic commit may follow
	}
	c.closeOnce.Do(func() {
		close(c.closed)
		<-c.stopped
		if commit && c.sub.Group != "" {
			c.commitSettled(context.Background(), nil)
		} else {
			c.noCommit.Store(true)
		}
		// Closing leaves the group, which runs revoked: no lock may be held here.
		c.cl.Close()
	})
}

// release gives back a record's room; reaching half the limit wakes the poller.
func (c *consumer) release() {
	if c.inflight.Add(-1) == c.limit/2 {
		select {
		case c.room <- struct{}{}:
		default:
		}
	}
}
