package loadbench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
)

// typedSide is the generated API: bars.NewPublisher and bars.Subscribe, each
// client its own bus as each service instance has.
type typedSide struct{}

// asyncWindow is the async publishes one client keeps unacknowledged: the
// bus's default window, and the raw clients' bound.
const asyncWindow = 4096

func (typedSide) publisher(ctx context.Context, r *run, i int) (publisher, error) {
	b, err := ampybus.Open(ctx, r.b.cfg.URL, r.b.busOptions("publisher-"+strconv.Itoa(i), ampybus.WithRunID(r.id))...)
	if err != nil {
		return nil, err
	}
	return &typedPub{bus: b, pub: bars.NewPublisher(b), keys: r.b.keys, sync: r.b.cfg.Sync, ring: make([]*ampybus.PublishFuture, asyncWindow)}, nil
}

// typedPub publishes through the generated publisher. Async outcomes are
// checked as a careful caller would without a goroutine per message: a
// ring as deep as the bus's window holds the futures, and a slot's old
// future (long since acknowledged, almost always) is checked before reuse.
type typedPub struct {
	bus  *ampybus.Bus
	pub  *bars.Publisher
	keys *keyspace
	sync bool
	ring []*ampybus.PublishFuture
	next int
}

func (p *typedPub) send(ctx context.Context, k int, b *batch) error {
	if p.sync {
		_, err := p.pub.Publish(ctx, p.keys.subtopics[k], b.msg)
		return err
	}
	if old := p.ring[p.next]; old != nil {
		if _, err := old.Wait(ctx); err != nil {
			return err
		}
	}
	f, err := p.pub.PublishAsync(ctx, p.keys.subtopics[k], b.msg)
	if err != nil {
		return err
	}
	p.ring[p.next] = f
	p.next = (p.next + 1) % len(p.ring)
	return nil
}

func (p *typedPub) flush(ctx context.Context) error {
	if err := p.bus.Flush(ctx); err != nil {
		return err
	}
	for i, f := range p.ring {
		if f == nil {
			continue
		}
		if _, err := f.Wait(ctx); err != nil {
			return err
		}
		p.ring[i] = nil
	}
	return nil
}

func (p *typedPub) close() error { return p.bus.Close() }

func (typedSide) consumer(ctx context.Context, r *run, i int, lat *latencies) (consumer, error) {
	cfg := r.b.cfg
	b, err := ampybus.Open(ctx, cfg.URL, r.b.busOptions("consumer-"+strconv.Itoa(i))...)
	if err != nil {
		return nil, err
	}
	c := &typedCons{bus: b}
	for way, group := range r.groups {
		opts := []ampybus.SubscribeOption{ampybus.Concurrency(cfg.Concurrency)}
		if !cfg.NoGroup {
			opts = append(opts, ampybus.Durable(group))
		}
		if r.fromStart {
			opts = append(opts, ampybus.StartAtTime(r.start))
		}
		sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
			seq, ok := seqOf(m.Payload)
			r.handled(lat, way, m.Headers.RunID, seq, ok, m.Headers.MessageID, m.Headers.ProducedAt)
			return nil
		}, opts...)
		if err != nil {
			_ = c.stop()
			return nil, err
		}
		go func() {
			<-sub.Done()
			if err := sub.Err(); err != nil {
				r.fail(fmt.Errorf("typed consumer %d, group %s stopped: %w", i, group, err))
			}
		}()
		c.subs = append(c.subs, sub)
	}
	return c, nil
}

// typedCons is one consumer's bus and its subscriptions, one per fan-out
// group, as one service holds them.
type typedCons struct {
	bus  *ampybus.Bus
	subs []*ampybus.Subscription
}

func (c *typedCons) stop() error {
	var err error
	for _, sub := range c.subs {
		if serr := sub.Stop(); err == nil {
			err = serr
		}
	}
	if cerr := c.bus.Close(); err == nil {
		err = cerr
	}
	return err
}
