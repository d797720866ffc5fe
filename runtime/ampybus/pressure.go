package ampybus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Producer backpressure (seed §8: consumers signal lag, producers reduce
// batch size or pause low-priority topics). For each domain it publishes
// whose QoS class sets max_lag, the bus polls the lag of the consumer groups
// the contract names; while one is more than max_lag behind (until it is
// back to half), producers back off by the class's priority:
//
//	critical  never held back; the lag is only reported
//	high      never delayed; Publisher.BatchSize shrinks
//	normal    each publish is paced to WithSlowRate, and batches shrink
//	low       each publish waits until the group catches up, bounded by its ctx
const (
	// DefaultLagPoll is how often a bus reads the watched groups' lag.
	DefaultLagPoll = time.Second
	// DefaultSlowRate is the publishes per second of a slowed domain.
	DefaultSlowRate = 100
)

// WithLagPoll sets how often the bus reads the lag of the consumer groups
// its domains' producers watch (DefaultLagPoll).
func WithLagPoll(d time.Duration) Option { return func(o *options) { o.lagPoll = d } }

// WithSlowRate sets the publishes per second a normal-priority domain is
// paced to while a consumer group lags (DefaultSlowRate).
func WithSlowRate(perSecond int) Option { return func(o *options) { o.slowRate = perSecond } }

// WithoutLagWatch turns producer backpressure off for this bus: it never
// reads consumer lag and never holds a publish back. For tools whose writes
// must go through whatever the consumers do (a backfill an operator
// watches, a load generator).
func WithoutLagWatch() Option { return func(o *options) { o.noLagWatch = true } }

// maxLagFailures is how many polls in a row may fail to read the lag before
// a lagging domain is let go: producers must not stay held back on a
// reading nobody can refresh.
const maxLagFailures = 5

// PressureHook sees a domain's producers start and stop backing off.
type PressureHook interface {
	OnPressure(e PressureStats)
}

// PressureStats is one domain's producer backpressure as the bus sees it.
type PressureStats struct {
	// Domain is the topic prefix: ampy.prod.metrics.v1.
	Domain   string
	Priority Priority
	MaxLag   uint64
	// Lag is the largest lag among the watched groups at the last check,
	// Group the group it belongs to, Checked when it was read.
	Lag     uint64
	Group   string
	Checked time.Time
	// Lagging: producers are backing off (from Lag over MaxLag until it is
	// back to half).
	Lagging bool
	// Paused and Slowed count publishes that were held back; Episodes
	// counts the times lagging began.
	Paused, Slowed, Episodes uint64
}

// Pressure reports the backpressure of every domain this bus has published
// to whose QoS class sets max_lag, by topic prefix.
func (b *Bus) Pressure() []PressureStats {
	var out []PressureStats
	b.pressures.Range(func(_, v any) bool {
		out = append(out, v.(*pressure).stats())
		return true
	})
	slices.SortFunc(out, func(x, y PressureStats) int { return strings.Compare(x.Domain, y.Domain) })
	return out
}

// pressure is one domain's backpressure state; a watcher goroutine updates
// it and publishes consult it.
type pressure struct {
	b   *Bus
	d   *DomainSpec
	lr  transport.LagReader
	lag atomic.Uint64
	// group is the group most behind at the last check.
	group                    atomic.Pointer[string]
	checked                  atomic.Int64
	paused, slowed, episodes atomic.Uint64
	// limiter paces a slowed domain's publishes.
	limiter *rate.Limiter
	// failures counts polls in a row that could not read the lag; only
	// the watcher touches it.
	failures int

	mu      sync.Mutex
	lagging atomic.Bool // written under mu, with clear
	clear   chan struct{}
}

// watched reports whether producers of d back off: its QoS class sets
// max_lag and the contract names groups that consume it.
func watched(d *DomainSpec) bool { return d.MaxLag > 0 && len(d.ConsumerGroups) > 0 }

// admit holds a publish back as the domain's priority says while a watched
// consumer group lags; it returns at once otherwise. watching is false
// until the bus has published to the domain once: then the caller starts
// the watch (startWatch), so an identity that may not publish there never
// reads its groups' lag either.
func (b *Bus) admit(ctx context.Context, d *DomainSpec) (watching bool, err error) {
	if !watched(d) || b.noLagWatch {
		return true, nil
	}
	v, ok := b.pressures.Load(d)
	if !ok {
		return false, nil
	}
	p := v.(*pressure)
	if !p.lagging.Load() {
		return true, nil
	}
	switch d.Priority {
	case PriorityLow:
		return true, p.pause(ctx)
	case PriorityNormal, "":
		return true, p.slow(ctx)
	}
	return true, nil
}

// batchSize is limit, or a quarter of it while a watched group lags and
// the domain's priority lets producers shrink their batches.
func (b *Bus) batchSize(d *DomainSpec, limit int) int {
	if !watched(d) || d.Priority == PriorityCritical {
		return limit
	}
	if v, ok := b.pressures.Load(d); ok && v.(*pressure).lagging.Load() {
		return (limit + 3) / 4
	}
	return limit
}

// startWatch starts watching the domain's consumer groups, once; nothing
// when the binding cannot read a group's lag.
func (b *Bus) startWatch(d *DomainSpec) {
	if _, ok := b.pressures.Load(d); ok {
		return
	}
	lr, ok := b.t.(transport.LagReader)
	if !ok {
		return
	}
	p := &pressure{b: b, d: d, lr: lr, clear: make(chan struct{}), limiter: rate.NewLimiter(rate.Limit(b.slowRate), 1)}
	if _, loaded := b.pressures.LoadOrStore(d, p); loaded {
		return
	}
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.watchers.Add(1)
	}
	b.mu.Unlock()
	if !closed {
		go p.watch()
	}
}

func (p *pressure) watch() {
	defer p.b.watchers.Done()
	// A bus that closes, or a watch that ends, holds nothing back: waiting
	// publishes wake, and hooks see the episode end.
	defer p.set(false)
	t := time.NewTicker(p.b.lagPoll)
	defer t.Stop()
	for {
		if !p.poll() {
			return
		}
		select {
		case <-p.b.watchCtx.Done():
			return
		case <-t.C:
		}
	}
}

// poll reads every watched group's lag once and moves the state: lagging
// past MaxLag, clear again at half of it. A group that has not consumed the
// domain yet is not behind; a lag that cannot be read leaves the state. It
// reports false when the identity may not read the lag: the watch ends.
func (p *pressure) poll() bool {
	ctx, cancel := context.WithTimeout(p.b.watchCtx, max(p.b.lagPoll, time.Second))
	defer cancel()
	s, err := p.b.stream(ctx, p.d)
	if err != nil {
		return true
	}
	var most uint64
	who := ""
	for _, g := range p.d.ConsumerGroups {
		n, err := p.lr.GroupLag(ctx, s, g)
		switch {
		case errors.Is(err, transport.ErrNotFound):
			continue
		case errors.Is(err, transport.ErrForbidden):
			p.b.log.Warn("backpressure off: this identity may not read the lag of the groups that consume the domain; grant it from the contract (ampybus-gen -security)",
				"topic", s.Prefix, "group", g, "err", err)
			return false
		case err != nil:
			if ctx.Err() != nil {
				return true // closing
			}
			if p.failures++; p.failures == maxLagFailures && p.lagging.Load() {
				p.b.log.Warn("backpressure: group lag unreadable; no longer holding producers back on the last reading", "topic", s.Prefix, "group", g, "polls", p.failures, "err", err)
				p.set(false)
			} else {
				p.b.log.Debug("backpressure: group lag unreadable; keeping the last state", "topic", s.Prefix, "group", g, "err", err)
			}
			return true
		}
		if n > most || who == "" {
			most, who = n, g
		}
	}
	p.failures = 0
	p.lag.Store(most)
	p.group.Store(&who)
	p.checked.Store(time.Now().UnixNano())
	switch lagging := p.lagging.Load(); {
	case !lagging && most > p.d.MaxLag:
		p.set(true)
	case lagging && most <= p.d.MaxLag/2:
		p.set(false)
	}
	return true
}

func (p *pressure) set(lagging bool) {
	p.mu.Lock()
	if p.lagging.Load() == lagging {
		p.mu.Unlock()
		return
	}
	p.lagging.Store(lagging)
	if !lagging {
		close(p.clear)
		p.clear = make(chan struct{})
	}
	p.mu.Unlock()
	st := p.stats()
	if lagging {
		p.episodes.Add(1)
		st.Episodes++
		p.b.log.Warn("backpressure: a consumer group is behind; producers back off", "topic", st.Domain, "group", st.Group,
			"lag", st.Lag, "max_lag", st.MaxLag, "priority", string(st.Priority), "action", action(st.Priority))
	} else if p.b.watchCtx.Err() == nil {
		p.b.log.Info("backpressure: the consumer groups caught up; producers resume", "topic", st.Domain, "lag", st.Lag, "max_lag", st.MaxLag)
	}
	for _, h := range p.b.hooks.pressure {
		h.OnPressure(st)
	}
}

func action(pr Priority) string {
	switch pr {
	case PriorityCritical:
		return "none (critical)"
	case PriorityHigh:
		return "batches shrink"
	case PriorityLow:
		return "paused"
	}
	return "slowed"
}

// pause waits until the watched groups catch up, ctx ends or the bus closes.
func (p *pressure) pause(ctx context.Context) error {
	p.paused.Add(1)
	for {
		p.mu.Lock()
		lagging, clear := p.lagging.Load(), p.clear
		p.mu.Unlock()
		if !lagging {
			return nil
		}
		select {
		case <-clear:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is paused (priority low) while consumer group %s is %d messages behind (max_lag %d): %w",
				ErrBackpressure, p.d.Prefix(p.b.env), p.groupName(), p.lag.Load(), p.d.MaxLag, context.Cause(ctx))
		case <-p.b.watchCtx.Done():
			return ErrClosed
		}
	}
}

// slow paces the domain's publishes to the bus's slow rate. A publish whose
// slot lies past its ctx's deadline is refused at once and gives the slot
// back; one waiting goes ahead when the groups catch up, and ends when the
// bus closes.
func (p *pressure) slow(ctx context.Context) error {
	p.slowed.Add(1)
	p.mu.Lock()
	lagging, clear := p.lagging.Load(), p.clear
	p.mu.Unlock()
	if !lagging {
		return nil
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-clear:
			cancel(errCaughtUp)
		case <-p.b.watchCtx.Done():
			cancel(ErrClosed)
		case <-wctx.Done():
		}
	}()
	err := p.limiter.Wait(wctx)
	switch cause := context.Cause(wctx); {
	case err == nil, errors.Is(cause, errCaughtUp):
		return nil
	case errors.Is(cause, ErrClosed):
		return ErrClosed
	}
	why := context.Cause(ctx)
	if why == nil {
		why = err // the slot lies past ctx's deadline
	}
	return fmt.Errorf("%w: %s is slowed (priority normal) while consumer group %s is %d messages behind (max_lag %d): %w",
		ErrBackpressure, p.d.Prefix(p.b.env), p.groupName(), p.lag.Load(), p.d.MaxLag, why)
}

// errCaughtUp ends a slowed publish's wait when the groups catch up.
var errCaughtUp = errors.New("the consumer groups caught up")

func (p *pressure) groupName() string {
	if g := p.group.Load(); g != nil {
		return *g
	}
	return ""
}

func (p *pressure) stats() PressureStats {
	st := PressureStats{
		Domain: p.d.Prefix(p.b.env), Priority: p.d.Priority, MaxLag: p.d.MaxLag,
		Lag: p.lag.Load(), Group: p.groupName(), Lagging: p.lagging.Load(),
		Paused: p.paused.Load(), Slowed: p.slowed.Load(), Episodes: p.episodes.Load(),
	}
	if ns := p.checked.Load(); ns != 0 {
		st.Checked = time.Unix(0, ns)
	}
	return st
}
