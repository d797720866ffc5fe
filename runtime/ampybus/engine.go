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
	// replay is the request id a replay serves; empty for live consumption.
	replay string
	// replaySubject narrows a replay to topics it matches.
	replaySubject string
	// subEvent is the subscription as SubscriptionHooks saw it start; nil
	// when none is attached.
	subEvent *SubscriptionEvent
}

// run hands deliveries to per-key workers: one message per key at a time, up
// to Concurrency keys at once. It returns when the consumer stops and every
// delivery taken from it has been settled or handed back.
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

// handBack returns a delivery unsettled because the subscription is
// stopping or its partition moved.
func (e *engine[S, P]) handBack(ctx context.Context, ev *DeliveryEvent, d transport.Delivery, attempt int) bool {
	if !e.isAborted() {
		_ = d.Nak(ctx, 0)
	}
	e.report(ctx, ev, Result{Outcome: OutcomeHandedBack, Attempt: attempt})
	return true
}
