package natsbinding

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// A consumer group on NATS is one durable pull consumer per partition of the
// stream, each filtered to its partition's subjects and set to JetStream's
// pinned-client priority policy: the server delivers a partition to one
// member at a time, and moves it to another member only when the holder
// stops pulling for PinnedTTL (or lets go). A member newly pinned to a
// partition first rewinds its consumer to the ack floor, so messages the
// previous holder left unsettled come again before anything newer and every
// key keeps its order. Which member asks for which partition comes from a
// presence bucket (presence.go); exclusivity never depends on it.

// priorityGroup is the JetStream priority group every member pulls with.
const priorityGroup = "ampy-bus"

// pinHeader carries the pin id on a message delivered to the pinned member.
const pinHeader = "Nats-Pin-Id"

// timing derives a group's timers from its failover budget F: a silent
// member is dropped from presence and loses its pins after 0.4·F, so the
// partitions it pulled start on a live member then; what it held unsettled
// is rewound to at once, or redelivered by the server after the ack wait,
// which the bus caps at F for groups. A live member pulls every expiry,
// well within the pin's TTL, so it keeps its pins.
type timing struct {
	pinTTL, expiry, beat, dead time.Duration
}

// grace is how long a takeover waits for a previous holder that makes no
// progress before it rewinds what that holder left unsettled.
func (t timing) grace() time.Duration { return t.expiry / 2 }

func timingFor(failover time.Duration) timing {
	if failover <= 0 {
		failover = transport.DefaultFailover
	}
	expiry := max(time.Second, failover/5) // nats.go's shortest pull expiry is 1s
	beat := max(100*time.Millisecond, failover/5)
	return timing{
		pinTTL: max(2*expiry, 2*failover/5),
		expiry: expiry,
		beat:   beat,
		dead:   max(2*beat, 2*failover/5),
	}
}

// groupConsumer implements transport.Consumer for a group subscription.
type groupConsumer struct {
	t        *Transport
	st       jetstream.Stream
	sub      transport.Subscription
	timing   timing
	batch    int
	out      chan *delivery
	closed   chan struct{}
	once     sync.Once
	presence *presence
	balanced chan struct{} // closed when the balance loop has ended

	mu    sync.Mutex
	parts []*partition
}

// partition is one partition's consumer as this member sees it.
type partition struct {
	idx  int
	name string
	cons jetstream.Consumer
	// stop ends the pull loop; nil while this member does not pull.
	stop chan struct{}
	done chan struct{}
	// pin is the pin id this member holds, empty when it holds none, and
	// tenure the deliveries received under it.
	pin    string
	tenure *tenure
	// held counts deliveries handed out and not yet settled.
	held int
	// releasing: the partition was given up; unpin once held reaches 0.
	releasing bool
}

// tenure is one holding of a partition under one pin. When the pin is lost
// (it expired, the consumer's leader changed, another member took over),
// the deliveries received under it are revoked: the engine hands back those
// it has not started, so two members never work on one key.
type tenure struct{ lost atomic.Bool }

// groupName is the durable consumer of one partition of a group.
func groupName(group string, p int) string { return DurableName(group) + "-p" + strconv.Itoa(p) }

func (t *Transport) subscribeGroup(ctx context.Context, st jetstream.Stream, sub transport.Subscription, base jetstream.ConsumerConfig) (transport.Consumer, error) {
	n := t.Partitions(sub.Stream.Prefix)
	// MaxInFlight bounds what a member holds over all its partitions, and a
	// member may hold them all: each partition's consumer gets its share.
	// (Bounding the member instead, by not pulling when it is full, would
	// let the server unpin its partitions: a pin lives on pull requests.)
	perPartition := max(1, (sub.MaxInFlight+n-1)/n)
	g := &groupConsumer{
		t: t, st: st, sub: sub, timing: timingFor(sub.Failover),
		batch:  min(512, perPartition),
		out:    make(chan *delivery),
		closed: make(chan struct{}), balanced: make(chan struct{}),
	}
	if first, err := st.Consumer(ctx, groupName(sub.Group, 0)); err == nil {
		if err := sameFilters(sub, first.CachedInfo().Config, partitionFilters(sub.Filters, 0)); err != nil {
			return nil, err
		}
	}
	for p := range n {
		cfg := base
		cfg.Durable = groupName(sub.Group, p)
		cfg.MaxAckPending = perPartition
		cfg.FilterSubject, cfg.FilterSubjects = "", partitionFilters(sub.Filters, p)
		cfg.PriorityGroups = []string{priorityGroup}
		cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
		cfg.PinnedTTL = g.timing.pinTTL
		cons, err := st.CreateOrUpdateConsumer(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("consumer %q on %s: %w", cfg.Durable, StreamName(sub.Stream.Prefix), mapErr(err))
		}
		g.parts = append(g.parts, &partition{idx: p, name: cfg.Durable, cons: cons})
	}
	pr, err := joinPresence(ctx, t, st, sub, g.timing)
	if err != nil {
		return nil, err
	}
	g.presence = pr
	go g.balance()
	return g, nil
}

// balance pulls the partitions presence assigns to this member and gives up
// the others, until the consumer closes.
func (g *groupConsumer) balance() {
	defer close(g.balanced)
	tick := time.NewTicker(g.timing.beat / 2)
	defer tick.Stop()
	// Pins are checked twice as often as a takeover waits for the previous
	// holder to settle, so a member that lost one stops in time.
	watch := time.NewTicker(g.timing.grace() / 2)
	defer watch.Stop()
	for {
		g.rebalance(g.presence.assigned(len(g.parts)))
		select {
		case <-g.closed:
			return
		case <-g.presence.changed:
		case <-tick.C:
		case <-watch.C:
			g.watchPins()
		}
	}
}

// watchPins revokes the deliveries of partitions whose pin this member no
// longer holds.
func (g *groupConsumer) watchPins() {
	g.mu.Lock()
	held := map[*partition]string{}
	for _, p := range g.parts {
		if p.pin != "" {
			held[p] = p.pin
		}
	}
	g.mu.Unlock()
	for p, pin := range held {
		ctx, cancel := context.WithTimeout(context.Background(), g.timing.expiry)
		info, err := p.cons.Info(ctx)
		cancel()
		if err != nil {
			continue // cannot tell: the takeover side waits for settling anyway
		}
		pinned := ""
		for _, pg := range info.PriorityGroups {
			if pg.Group == priorityGroup {
				pinned = pg.PinnedClientID
			}
		}
		g.mu.Lock()
		if p.pin == pin && pinned != pin { // a pin taken meanwhile is not judged by older news
			g.t.log.Warn("nats: lost the pin of a partition; handing back what is not started", "consumer", p.name)
			p.tenure.lost.Store(true)
			p.pin = ""
		}
		g.mu.Unlock()
	}
}

func (g *groupConsumer) rebalance(mine map[int]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.parts {
		switch {
		case mine[p.idx] && p.stop == nil:
			g.t.log.Debug("nats: pulling partition", "consumer", p.name)
			p.releasing = false
			if err := g.startPull(p); err != nil {
				g.t.log.Warn("nats: cannot pull partition; retrying", "consumer", p.name, "err", err)
			}
		case !mine[p.idx] && p.stop != nil:
			g.t.log.Debug("nats: giving up partition", "consumer", p.name, "held", p.held)
			g.stopPull(p)
			p.releasing = true
			g.maybeUnpin(p)
		}
	}
}

// startPull starts pulling p (it waits for the server to pin it here).
// Callers hold g.mu.
func (g *groupConsumer) startPull(p *partition) error {
	it, err := g.messages(p)
	if err != nil {
		return err
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go g.pull(p, it, p.stop, p.done)
	return nil
}

func (g *groupConsumer) messages(p *partition) (jetstream.MessagesContext, error) {
	return p.cons.Messages(jetstream.PullMaxMessages(g.batch), jetstream.PullExpiry(g.timing.expiry),
		jetstream.PullPriorityGroup(priorityGroup))
}

// stopPull ends p's pull loop; buffered, undelivered messages stay pending on
// the server for whoever holds the partition next. Callers hold g.mu.
func (g *groupConsumer) stopPull(p *partition) {
	close(p.stop)
	p.stop = nil
}

// maybeUnpin lets go of a released partition once nothing from it is
// unsettled here, so the next member is pinned at once rather than after
// PinnedTTL. Callers hold g.mu.
func (g *groupConsumer) maybeUnpin(p *partition) {
	if !p.releasing || p.held > 0 || p.pin == "" {
		return
	}
	p.pin, p.releasing = "", false
	name := p.name
	g.t.log.Debug("nats: unpinning partition", "consumer", name)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.st.UnpinConsumer(ctx, name, priorityGroup); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			g.t.log.Warn("nats: unpin failed; the partition moves when the pin expires", "consumer", name, "err", err)
		}
	}()
}

// pull hands p's messages to Next. The first message under a new pin means
// this member just took the partition over; if the previous holder left
// deliveries unsettled, the consumer is rewound to its ack floor, so they
// come again before anything newer and every key keeps its order.
func (g *groupConsumer) pull(p *partition, it jetstream.MessagesContext, stop, done chan struct{}) {
	defer close(done)
	defer func() {
		// A pin taken while the partition was being given up is let go.
		g.mu.Lock()
		g.maybeUnpin(p)
		g.mu.Unlock()
	}()
	go func() {
		select {
		case <-stop:
		case <-g.closed:
		}
		it.Stop()
	}()
	// rewound: the consumer was reset; what the iterator still holds from
	// before is passed over until redelivery starts again at delivery 1.
	rewound := false
	// last is the consumer sequence of the last delivery under this pin:
	// they come one after another, and a gap means a delivery was lost in
	// transit (a connection cut mid-batch, a consumer leader change), which
	// the server would only redeliver after the ack wait — after newer
	// messages of its key. The consumer is rewound instead.
	var last uint64
	for {
		m, err := it.Next()
		if err != nil {
			switch {
			case errors.Is(err, jetstream.ErrMsgIteratorClosed):
				return
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				g.t.log.Warn("nats: missed consumer heartbeats; pulling again", "consumer", p.name)
				continue
			}
			g.t.log.Warn("nats: pull failed; pulling again", "consumer", p.name, "err", err)
			if !g.sleep(stop, g.timing.expiry) {
				return
			}
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			continue // not a JetStream delivery
		}
		if rewound {
			if md.Sequence.Consumer != 1 {
				continue // delivered before the reset: it comes again
			}
			rewound = false
		}
		pin := m.Headers().Get(pinHeader)
		g.mu.Lock()
		fresh := pin != p.pin
		if fresh {
			// The pin is ours from now: if the partition is given up during
			// the takeover, it is unpinned for the next holder at once.
			if p.tenure != nil {
				p.tenure.lost.Store(true) // anything left from an earlier pin comes again
			}
			p.pin, p.tenure = pin, &tenure{}
		}
		g.mu.Unlock()
		if fresh {
			g.t.log.Debug("nats: pinned to partition", "consumer", p.name, "delivery", md.Sequence.Consumer)
			reset, err := g.takeOver(p, md, stop)
			if err != nil {
				return
			}
			g.syncShared(p)
			if reset {
				rewound, last = true, 0
				continue
			}
		} else if last != 0 && md.Sequence.Consumer != last+1 {
			if err := g.rewind(p, stop, fmt.Sprintf("delivery %d came after %d: one was lost in transit", md.Sequence.Consumer, last), 0); err != nil {
				return
			}
			rewound, last = true, 0
			continue
		}
		last = md.Sequence.Consumer
		d := newDelivery(m, md)
		d.settled = func() { g.settled(p) }
		g.mu.Lock()
		p.held++
		d.tenure = p.tenure
		g.mu.Unlock()
		select {
		case g.out <- d:
		case <-stop:
			g.settled(p) // never handed out: pending on the server for the next holder
			return
		case <-g.closed:
			return
		}
	}
}

// takeOver is called on the first message under a new pin. When every
// delivery before it was acknowledged there is nothing to redo. Otherwise
// the previous holder may still be alive — a pin is also lost when the
// consumer's leader changes — so its deliveries are given time to settle:
// while the ack floor moves, the wait goes on. Only what stays unsettled
// for a grace period (the holder is dead or stuck) is rewound: the consumer
// is reset to its ack floor, and takeOver reports true.
func (g *groupConsumer) takeOver(p *partition, first *jetstream.MsgMetadata, stop chan struct{}) (bool, error) {
	grace := g.timing.grace()
	quiet := time.Now().Add(grace)
	var floor uint64
	var pending int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), g.timing.pinTTL)
		info, err := p.cons.Info(ctx)
		cancel()
		if err == nil {
			if info.AckFloor.Consumer+1 >= first.Sequence.Consumer {
				return false, nil
			}
			if info.AckFloor.Consumer > floor || (pending > 0 && info.NumAckPending < pending) {
				quiet = time.Now().Add(grace) // the previous holder is settling
			}
			floor, pending = info.AckFloor.Consumer, info.NumAckPending
			if time.Now().After(quiet) {
				break
			}
		} else {
			g.t.log.Warn("nats: reading a taken-over partition failed; retrying", "consumer", p.name, "err", err)
		}
		if !g.sleep(stop, 50*time.Millisecond) {
			return false, errors.New("stopped")
		}
	}
	return true, g.rewind(p, stop, "partition taken over with deliveries unsettled", pending)
}

// rewind resets p's consumer to its ack floor, retrying until it succeeds
// or the pull stops: everything not acknowledged is delivered again, in
// stream order.
func (g *groupConsumer) rewind(p *partition, stop chan struct{}, why string, unsettled int) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), g.timing.pinTTL)
		r, err := g.st.ResetConsumer(ctx, p.name)
		cancel()
		if err == nil {
			g.t.log.Info("nats: "+why+"; resuming from the ack floor", "consumer", p.name, "from_seq", r.ResetSeq, "unsettled", unsettled)
			return nil
		}
		g.t.log.Warn("nats: rewinding a partition failed; retrying", "consumer", p.name, "err", err)
		if !g.sleep(stop, g.timing.expiry/2) {
			return err
		}
	}
}

// syncShared runs the subscription's OnAssign on a takeover, so a store the
// group shares holds what the previous holder wrote.
func (g *groupConsumer) syncShared(p *partition) {
	if g.sub.OnAssign == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.sub.OnAssign(ctx); err != nil {
		g.t.log.Error("nats: the group's shared store did not catch up; handling the partition anyway (at-least-once)", "consumer", p.name, "err", err)
	}
}

func (g *groupConsumer) sleep(stop chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
	case <-g.closed:
	}
	return false
}

// settled accounts for one delivery of p settled (or never handed out).
func (g *groupConsumer) settled(p *partition) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p.held--
	g.maybeUnpin(p)
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

// Close implements transport.Consumer: it stops pulling, lets go of its
// partitions and leaves the group, so the others take them over at once.
// Deliveries still unsettled are redelivered to the next holder.
func (g *groupConsumer) Close() error {
	g.shutdown(true)
	return nil
}

// Abort implements transport.Consumer as a crash: pins and presence lapse
// by themselves, and the next holders rewind to what was settled.
func (g *groupConsumer) Abort() error {
	g.shutdown(false)
	return nil
}

func (g *groupConsumer) shutdown(graceful bool) {
	g.once.Do(func() {
		close(g.closed)
		<-g.balanced
		g.mu.Lock()
		var dones []chan struct{}
		for _, p := range g.parts {
			if p.done != nil {
				dones = append(dones, p.done)
			}
			p.stop = nil
		}
		g.mu.Unlock()
		for _, d := range dones {
			<-d
		}
		if !graceful {
			g.presence.abandon()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.mu.Lock()
		var pinned []string
		for _, p := range g.parts {
			if p.pin != "" {
				pinned = append(pinned, p.name)
				p.pin = ""
			}
		}
		g.mu.Unlock()
		for _, name := range pinned {
			if err := g.st.UnpinConsumer(ctx, name, priorityGroup); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				g.t.log.Debug("nats: unpin on close failed; the pin expires", "consumer", name, "err", err)
			}
		}
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
