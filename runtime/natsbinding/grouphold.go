package natsbinding

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errStopped ends a holding whose partition was given up or whose consumer
// closed.
var errStopped = errors.New("stopped")

// holding is one member's claim on a partition, from its first try to take
// it until it lets go. Its fields are guarded by the group's mu.
type holding struct {
	ctx    context.Context // ends when the partition is given up or the consumer closes
	giveUp context.CancelFunc
	done   chan struct{}
	// inbox is the deliver subject while this member holds the partition,
	// empty otherwise; tenure and lose belong to that inbox.
	inbox  string
	tenure *tenure
	lose   context.CancelFunc
	// confirmed is when the server last said the inbox holds the partition.
	confirmed time.Time
}

// tenure is one holding of a partition through one inbox. When it ends (the
// deliver subject moved elsewhere, a delivery was lost in transit, the
// partition was given up) the deliveries received under it are revoked: the
// engine hands back those it has not started, so two members never work on
// one key.
type tenure struct{ lost atomic.Bool }

// endTenure revokes what h received through its current inbox and stops
// reading it. Callers hold g.mu.
func (g *groupConsumer) endTenure(h *holding) {
	if h.tenure != nil {
		h.tenure.lost.Store(true)
	}
	if h.lose != nil {
		h.lose()
	}
	h.inbox, h.tenure, h.lose = "", nil, nil
}

// holdPartition takes p and hands out its deliveries until the partition is
// given up or the consumer closes, taking it again whenever its tenure ends.
func (g *groupConsumer) holdPartition(p *partition, h *holding) {
	defer func() {
		g.mu.Lock()
		g.endTenure(h)
		if p.hold == h {
			p.hold = nil
		}
		g.mu.Unlock()
		h.giveUp()
		close(h.done)
	}()
	// fromOther: the partition comes from another holder, whose deliveries
	// may still be in progress; not when this member takes it again itself.
	fromOther := true
	for {
		in, info, err := g.take(p, h)
		if err != nil {
			return
		}
		if fromOther && info.AckFloor.Consumer < info.Delivered.Consumer {
			// The previous holder left deliveries unsettled. The server
			// already sends them here, but the holder may still be at
			// work on them: wait while it settles, then take the partition
			// again, so only what is still unsettled comes, in order.
			// (Each take counts as a delivery of what it redelivers.)
			err := g.awaitSettled(p, h, info)
			in.close()
			if err != nil {
				return
			}
			g.syncShared(p)
			fromOther = false
			continue
		}
		if fromOther {
			g.syncShared(p)
		}
		why := g.receive(p, h, in)
		if h.ctx.Err() != nil {
			g.release(p, h, in)
			return
		}
		in.close()
		// A delivery lost in transit comes again on the next take; a
		// partition taken by another member comes back once it lets go.
		fromOther = !errors.Is(why, errGap)
		if fromOther && !g.sleep(h, g.timing.retry()) {
			return
		}
	}
}

// errNotMoved is an update answered with the deliver subject unchanged.
var errNotMoved = errors.New("deliver subject not moved")

// take subscribes a fresh inbox and moves p's deliver subject to it,
// retrying while another member listens on the current one.
func (g *groupConsumer) take(p *partition, h *holding) (*inbox, *jetstream.ConsumerInfo, error) {
	var refused, warned time.Time
	for {
		// The server keeps at most MaxAckPending deliveries unsettled, so
		// a channel a little deeper fills only when it redelivers (after
		// the ack wait) into an inbox nobody reads, a given-up one; a
		// dropped delivery shows as a gap, or comes again after the ack
		// wait, and nothing is lost.
		in := &inbox{ch: make(chan *nats.Msg, p.cfg.MaxAckPending+64)}
		var err error
		in.sub, err = g.t.nc.ChanSubscribe(g.t.nc.NewInbox(), in.ch)
		if err == nil {
			cfg := p.cfg
			cfg.DeliverSubject = in.sub.Subject
			ctx, cancel := context.WithTimeout(h.ctx, g.timing.call)
			var cons jetstream.PushConsumer
			cons, err = g.st.UpdatePushConsumer(ctx, cfg)
			cancel()
			if err == nil && cons.CachedInfo().Config.DeliverSubject != in.sub.Subject {
				// A replica that refused the move may answer with its
				// config unchanged: not taken.
				err = errNotMoved
			}
			if err == nil {
				info := cons.CachedInfo()
				g.mu.Lock()
				if h.ctx.Err() == nil {
					g.endTenure(h)
					h.inbox, h.tenure, h.confirmed = in.sub.Subject, &tenure{}, time.Now()
				}
				g.mu.Unlock()
				g.t.log.Debug("nats: took partition", "consumer", p.name, "delivered", info.Delivered.Consumer, "ack_floor", info.AckFloor.Consumer)
				return in, info, nil
			}
			in.close()
		}
		switch {
		case h.ctx.Err() != nil:
			return nil, nil, errStopped
		case heldElsewhere(err), errors.Is(err, errNotMoved):
			if refused.IsZero() {
				refused = time.Now()
			} else if time.Since(refused) > 2*g.timing.release {
				// Said once per wait, then again after as long.
				refused = time.Now()
				g.t.log.Warn("nats: a partition assigned here is still held elsewhere; it moves once the listener on its deliver subject leaves (a live member, or a subscriber to a wildcard such as '>' that covers it)",
					"consumer", p.name)
			}
		case errors.Is(err, nats.ErrConnectionClosed):
			return nil, nil, errStopped
		case time.Since(warned) > g.timing.release: // a connection down fails every try
			warned = time.Now()
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				g.t.log.Error("nats: a partition consumer was deleted; subscribe again to recreate it", "consumer", p.name)
			} else {
				g.t.log.Warn("nats: cannot take partition; retrying", "consumer", p.name, "err", err)
			}
		}
		if !g.sleep(h, g.timing.retry()) {
			return nil, nil, errStopped
		}
	}
}

// awaitSettled waits, after a takeover, while the previous holder settles
// what it left: until everything delivered before the takeover is settled,
// or the ack floor stops moving for a grace period (the holder is dead or
// stuck, and its deliveries come to this member).
func (g *groupConsumer) awaitSettled(p *partition, h *holding, at *jetstream.ConsumerInfo) error {
	grace := g.timing.grace()
	quiet := time.Now().Add(grace)
	floor, pending := at.AckFloor.Consumer, at.NumAckPending
	var warned time.Time
	for {
		if !g.sleep(h, 50*time.Millisecond) {
			return errStopped
		}
		ctx, cancel := context.WithTimeout(h.ctx, g.timing.call)
		info, err := p.cons.Info(ctx)
		cancel()
		switch {
		case errors.Is(err, nats.ErrConnectionClosed):
			return errStopped
		case err != nil && time.Now().After(quiet):
			return nil // no news for a grace period: what is unsettled comes here
		case err != nil:
			if time.Since(warned) > grace {
				warned = time.Now()
				g.t.log.Warn("nats: reading a taken-over partition failed; retrying", "consumer", p.name, "err", err)
			}
			continue
		}
		if info.AckFloor.Consumer >= at.Delivered.Consumer {
			return nil
		}
		if info.AckFloor.Consumer > floor || info.NumAckPending < pending {
			quiet = time.Now().Add(grace) // the previous holder is settling
		}
		floor, pending = info.AckFloor.Consumer, info.NumAckPending
		if time.Now().After(quiet) {
			g.t.log.Info("nats: partition taken over with deliveries unsettled; they come again here", "consumer", p.name, "unsettled", info.NumAckPending)
			return nil
		}
	}
}

// inbox is where a holding's deliveries arrive.
type inbox struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// close stops listening, so the server may move the deliver subject; what
// arrived and was not read stays unsettled for the next holder.
func (in *inbox) close() { _ = in.sub.Unsubscribe() }

// errGap ends a tenure in which a delivery was lost in transit.
var errGap = errors.New("a delivery was lost in transit")

// receive hands out what arrives on sub until the tenure ends. Deliveries
// of one tenure carry consecutive consumer sequences; a gap means one was
// lost in transit (a connection cut, a consumer leader change), which the
// server would only redeliver after the ack wait, after newer messages of
// its key, so the partition is taken again instead: that redelivers
// everything unsettled at once, in order.
func (g *groupConsumer) receive(p *partition, h *holding, in *inbox) error {
	g.mu.Lock()
	if h.inbox != in.sub.Subject {
		g.mu.Unlock()
		return errStopped
	}
	ctx, lose := context.WithCancel(h.ctx)
	h.lose = lose
	tn := h.tenure
	g.mu.Unlock()
	defer lose()
	var last uint64
	for {
		var m *nats.Msg
		select {
		case m = <-in.ch:
		case <-ctx.Done():
			return errStopped
		}
		if m.Reply == "" {
			continue // a status message
		}
		md, err := m.Metadata()
		if err != nil {
			continue // not a JetStream delivery
		}
		if last != 0 && md.Sequence.Consumer != last+1 {
			g.t.log.Info("nats: a delivery was lost in transit; taking the partition again", "consumer", p.name,
				"delivery", md.Sequence.Consumer, "after", last)
			g.mu.Lock()
			g.endTenure(h)
			g.mu.Unlock()
			return errGap
		}
		last = md.Sequence.Consumer
		d := pushedDelivery(g.t.nc, m, md)
		d.settled = p.settle
		d.tenure = tn
		g.mu.Lock()
		p.held++
		g.mu.Unlock()
		select {
		case g.out <- d:
		case <-ctx.Done():
			g.settled(p) // never handed out: the next take redelivers it
			return errStopped
		}
	}
}

// release lets go of a given-up partition. It hands out nothing more but
// keeps listening while what it handed out is settled, so the next holder
// starts from a clean ack floor: after the release bound it hands back what
// its handlers have not started, then waits up to the failover budget for
// those they have (the engine renews their leases), and unsubscribes.
func (g *groupConsumer) release(p *partition, h *holding, in *inbox) {
	defer in.close()
	t := time.NewTimer(g.timing.release)
	defer t.Stop()
	revoked := false
	for {
		g.mu.Lock()
		held := p.held
		g.mu.Unlock()
		if held <= 0 {
			return
		}
		select {
		case <-p.drained:
		case <-t.C:
			if revoked {
				g.t.log.Warn("nats: letting go of a partition while handlers still run; the next holder may handle their messages again", "consumer", p.name, "held", held)
				return
			}
			g.t.log.Debug("nats: handing back what is not started of a partition given up", "consumer", p.name, "held", held)
			g.mu.Lock()
			g.endTenure(h)
			g.mu.Unlock()
			revoked = true
			t.Reset(g.timing.failover)
		case <-g.closed:
			return
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

// sleep waits d unless h ends first; it reports whether h goes on.
func (g *groupConsumer) sleep(h *holding, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-h.ctx.Done():
		return false
	}
}

// settled accounts for one delivery of p settled (or never handed out).
func (g *groupConsumer) settled(p *partition) {
	g.mu.Lock()
	p.held--
	empty := p.held <= 0
	g.mu.Unlock()
	if empty {
		select {
		case p.drained <- struct{}{}:
		default:
		}
	}
}
