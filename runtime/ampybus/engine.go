package ampybus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

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
	// dedupeScope starts every dedupe key: the group and the domain, so
	// another group still sees the message.
	dedupeScope string
	// replay is the request id a replay serves; empty for live consumption
	// (and for a replay that names no request).
	replay string
	// replaying is set for a replay of a window, which re-lives the stream.
	replaying bool
	// replaySubject narrows a replay to topics it matches.
	replaySubject string
	// subEvent is the subscription as SubscriptionHooks saw it start; nil
	// when none is attached.
	subEvent *SubscriptionEvent
}

// run hands deliveries to a pool of Concurrency workers through a key
// scheduler: one message per key at a time, keys in turn. It returns when
// the consumer stops and every delivery taken from it has been settled or
// handed back.
func (e *engine[S, P]) run(ctx context.Context, sub *Subscription) {
	defer close(sub.done)
	if e.subEvent != nil {
		defer func() {
			for _, h := range e.bus.hooks.subs {
				h.OnStop(e.subEvent, sub.Stats(), sub.Err())
			}
		}()
	}
	hctx := context.WithoutCancel(ctx) // handlers finish their message while the subscription stops
	sched := newKeyScheduler()
	stopLeases := sched.keepLeases(e.opts.ackWait, e.aborted)
	defer stopLeases()
	var wg sync.WaitGroup
	for range e.opts.concurrency {
		wg.Go(func() {
			for {
				l, d, ok := sched.take()
				if !ok {
					return
				}
				abandoned := e.isAborted() || e.process(hctx, ctx.Done(), d)
				// Whatever waited behind an abandoned message goes back too, in
				// order (after an abort, by itself, when the leases lapse).
				for _, rest := range sched.done(l, abandoned) {
					if !e.isAborted() {
						_ = rest.Nak(hctx, 0)
					}
				}
			}
		})
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
		sched.add(d)
	}
	sched.close()
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

// handBack returns a delivery unsettled because the subscription is
// stopping or its partition moved.
func (e *engine[S, P]) handBack(ctx context.Context, ev *DeliveryEvent, d transport.Delivery, attempt int) bool {
	if !e.isAborted() {
		_ = d.Nak(ctx, 0)
	}
	e.report(ctx, ev, Result{Outcome: OutcomeHandedBack, Attempt: attempt})
	return true
}
