package natsbinding

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// A consumer group on NATS is one durable push consumer per partition of the
// stream, each filtered to its partition's subjects. A member holds a
// partition when the consumer's deliver subject is its inbox, and the server
// is the fence: it sends only there, and it refuses to move the deliver
// subject while anyone listens on it. A member takes a partition by
// subscribing a fresh inbox and moving the deliver subject to it, which
// succeeds once the previous holder has let go or its connection is gone;
// the server then redelivers what the previous holder left unsettled, oldest
// first and before anything newer, so every key keeps its order. Which
// member asks for which partition comes from a presence bucket
// (presence.go); exclusivity never depends on it.
//
// Push rather than pull: a pull consumer fenced by JetStream's pinned
// priority policy costs the server a rewrite of every message (the pin
// header) and about a quarter of its CPU; see docs/ARCHITECTURE.md.

// timing derives a group's timers from its failover budget F: a silent
// member is dropped from presence after 0.4·F, so the partitions it held
// are asked for by live members then, and a dead member's connection (and
// with it its hold) is gone as soon as the server notices.
type timing struct {
	// step paces retries and bounds the wait for a previous holder.
	step time.Duration
	// beat and dead: presence heartbeat and the silence that drops a member.
	beat, dead time.Duration
	// release bounds how long a partition given up waits for its
	// deliveries to settle before handing back those not started; call
	// bounds a request.
	release, call time.Duration
	// failover is the group's budget: how long a partition given up still
	// waits for the deliveries its handlers started.
	failover time.Duration
}

// grace is how long a takeover waits for a previous holder that makes no
// progress before it takes what that holder left unsettled: 0.4 × failover,
// as long as a member may be cut off (a reconnect, a pause) and keep work
// it already started, as the pin's TTL allowed before.
func (t timing) grace() time.Duration { return t.release }

// retry is the pause between tries to take a partition held elsewhere.
func (t timing) retry() time.Duration { return max(100*time.Millisecond, t.step/10) }

func timingFor(failover time.Duration) timing {
	if failover <= 0 {
		failover = transport.DefaultFailover
	}
	step := max(time.Second, failover/5)
	beat := max(100*time.Millisecond, failover/5)
	release := max(2*step, 2*failover/5)
	return timing{step: step, beat: beat, dead: max(2*beat, 2*failover/5), release: release, call: release, failover: failover}
}

// groupConsumer implements transport.Consumer for a group subscription.
type groupConsumer struct {
	t        *Transport
	st       jetstream.Stream
	sub      transport.Subscription
	timing   timing
	out      chan *delivery
	closed   chan struct{}
	once     sync.Once
	presence *presence
	balanced chan struct{} // closed when the balance loop has ended
	// ctx ends every holding when the consumer closes.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	parts []*partition
}

// partition is one partition's consumer as this member sees it.
type partition struct {
	idx  int
	name string
	cons jetstream.PushConsumer
	// cfg is the config each move writes, with the mover's deliver subject.
	cfg jetstream.ConsumerConfig
	// hold is this member's holding of the partition, nil when it neither
	// holds nor asks for it.
	hold *holding
	// held counts deliveries handed out and not yet settled; drained is
	// signalled when it drops to zero.
	held    int
	drained chan struct{}
	// settle is every delivery's settled callback, made once per partition
	// rather than once per message.
	settle func()
}

// groupName is the durable consumer of one partition of a group.
func groupName(group string, p int) string { return DurableName(group) + "-part" + strconv.Itoa(p) }

// unheldSubject is a new partition consumer's deliver subject before any
// member takes it: nobody listens there, so the server sends nothing.
func unheldSubject(stream, durable string) string { return "ampybus.unheld." + stream + "." + durable }

func (t *Transport) subscribeGroup(ctx context.Context, st jetstream.Stream, sub transport.Subscription, base jetstream.ConsumerConfig) (transport.Consumer, error) {
	n := t.Partitions(sub.Stream.Prefix)
	// MaxInFlight bounds what a member holds over all its partitions, and a
	// member may hold them all: each partition's consumer gets its share.
	perPartition := max(1, (sub.MaxInFlight+n-1)/n)
	gctx, cancel := context.WithCancel(context.Background())
	g := &groupConsumer{
		t: t, st: st, sub: sub, timing: timingFor(sub.Failover),
		out:    make(chan *delivery),
		closed: make(chan struct{}), balanced: make(chan struct{}),
		ctx: gctx, cancel: cancel,
	}
	for p := range n {
		cfg := base
		cfg.Durable = groupName(sub.Group, p)
		cfg.MaxAckPending = perPartition
		cfg.FilterSubject, cfg.FilterSubjects = "", partitionFilters(sub.Filters, p)
		cons, cfg, err := g.ensurePartition(ctx, cfg, p)
		if err != nil {
			cancel()
			return nil, err
		}
		part := &partition{idx: p, name: cfg.Durable, cons: cons, cfg: cfg, drained: make(chan struct{}, 1)}
		part.settle = func() { g.settled(part) }
		g.parts = append(g.parts, part)
	}
	pr, err := joinPresence(ctx, t, st, sub, g.timing)
	if err != nil {
		cancel()
		return nil, err
	}
	g.presence = pr
	go g.balance()
	return g, nil
}

// balance holds the partitions presence assigns to this member and gives up
// the others, until the consumer closes.
func (g *groupConsumer) balance() {
	defer close(g.balanced)
	tick := time.NewTicker(g.timing.beat / 2)
	defer tick.Stop()
	// Holds are checked four times per grace period, so a member that lost
	// one stops before the next holder stops waiting for it.
	watch := time.NewTicker(g.timing.grace() / 4)
	defer watch.Stop()
	// While the connection is down the server may move any deliver
	// subject: what was received through it is revoked at once (not after
	// a round of watchHolds), and every partition is taken again once the
	// connection is back.
	status := g.t.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING)
	go func() {
		for {
			select {
			case <-status:
				g.dropTenures()
			case <-g.closed:
				g.t.nc.RemoveStatusListener(status)
				return
			}
		}
	}()
	for {
		g.rebalance(g.presence.assigned(len(g.parts)))
		select {
		case <-g.closed:
			return
		case <-g.presence.changed:
		case <-tick.C:
		case <-watch.C:
			g.watchHolds()
		}
	}
}

// dropTenures ends every tenure after the connection was lost.
func (g *groupConsumer) dropTenures() {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, p := range g.parts {
		if p.hold != nil && p.hold.inbox != "" {
			g.endTenure(p.hold)
			n++
		}
	}
	if n > 0 {
		g.t.log.Warn("nats: connection lost; handing back what is not started and taking the partitions again", "stream", StreamName(g.sub.Stream.Prefix), "group", g.sub.Group, "partitions", n)
	}
}

func (g *groupConsumer) rebalance(mine map[int]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.parts {
		switch {
		case mine[p.idx] && p.hold == nil:
			g.t.log.Debug("nats: asking for partition", "consumer", p.name)
			ctx, giveUp := context.WithCancel(g.ctx)
			h := &holding{ctx: ctx, giveUp: giveUp, done: make(chan struct{})}
			p.hold = h
			go g.holdPartition(p, h)
		case !mine[p.idx] && p.hold != nil && p.hold.ctx.Err() == nil:
			g.t.log.Debug("nats: giving up partition", "consumer", p.name, "held", p.held)
			p.hold.giveUp()
		}
	}
}

// watchHolds ends the tenure of partitions whose deliver subject is no
// longer this member's inbox: its interest lapsed (a reconnect, a route
// down) and another member took the partition. A hold that cannot be
// confirmed for a grace period (the server does not answer) ends too: the
// next holder stops waiting for this member after as long.
func (g *groupConsumer) watchHolds() {
	g.mu.Lock()
	var held []*partition
	for _, p := range g.parts {
		if p.hold != nil && p.hold.inbox != "" {
			held = append(held, p)
		}
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range held {
		wg.Go(func() { g.confirmHold(p) })
	}
	wg.Wait()
}

// confirmHold checks one partition for watchHolds.
func (g *groupConsumer) confirmHold(p *partition) {
	g.mu.Lock()
	h := p.hold
	if h == nil || h.inbox == "" {
		g.mu.Unlock()
		return
	}
	inbox := h.inbox
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(g.ctx, g.timing.grace()/4)
	info, err := p.cons.Info(ctx)
	cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	if h != p.hold || h.inbox != inbox {
		return // a newer tenure is not judged by older news
	}
	switch {
	case err == nil && info.Config.DeliverSubject == inbox:
		h.confirmed = time.Now()
	case err == nil:
		g.t.log.Warn("nats: another member took a partition; handing back what is not started", "consumer", p.name)
		g.endTenure(h)
	case time.Since(h.confirmed) > g.timing.grace():
		g.t.log.Warn("nats: cannot confirm a partition is still held here; handing back what is not started", "consumer", p.name, "err", err)
		g.endTenure(h)
	}
}

// Next implements transport.Consumer.
func (g *groupConsumer) Next(ctx context.Context) (transport.Delivery, error) {
	select {
	case d := <-g.out:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.closed:
		return nil, transport.ErrClosed
	}
}

// Close implements transport.Consumer: it stops listening on its
// partitions and leaves the group, so the others take them over at once.
// Deliveries still unsettled are redelivered to the next holders.
func (g *groupConsumer) Close() error {
	g.shutdown(true)
	return nil
}

// Abort implements transport.Consumer as a crash: the partitions are let go
// unsettled and presence lapses by itself; the next holders get what was
// not settled.
func (g *groupConsumer) Abort() error {
	g.shutdown(false)
	return nil
}

func (g *groupConsumer) shutdown(graceful bool) {
	g.once.Do(func() {
		close(g.closed)
		g.cancel()
		<-g.balanced
		g.mu.Lock()
		var holds []*holding
		for _, p := range g.parts {
			if p.hold != nil {
				holds = append(holds, p.hold)
			}
		}
		g.mu.Unlock()
		for _, h := range holds {
			<-h.done
		}
		if !graceful {
			g.presence.abandon()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.presence.leave(ctx)
	})
}

// Lag implements transport.Consumer: pending plus unacknowledged over every
// partition of the group.
func (g *groupConsumer) Lag(ctx context.Context) (uint64, error) {
	var total uint64
	for _, p := range g.parts {
		info, err := p.cons.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("consumer %s info: %w", p.name, mapErr(err))
		}
		total += info.NumPending + uint64(info.NumAckPending)
	}
	return total, nil
}

// Watermark implements transport.Consumer; a group is never bounded.
func (g *groupConsumer) Watermark() transport.Position { return transport.Position{} }
