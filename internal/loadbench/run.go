package loadbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Result is one run's figures. Rates are messages per second, latencies
// microseconds; CPU, allocations, goroutines and heap are this process's,
// over the measured part of the run.
type Result struct {
	Client       Client `json:"client"`
	Round        int    `json:"round,omitempty"`
	Mode         Mode   `json:"mode"`
	Transport    string `json:"transport"`
	RunID        string `json:"run_id"`
	Group        string `json:"group,omitempty"`
	Messages     int    `json:"messages"`
	PayloadBytes int    `json:"payload_bytes"`
	// Fanout is the subscriptions per consumer, each its own group.
	Fanout int `json:"fanout,omitempty"`
	// Published counts messages the broker acknowledged.
	Published int64 `json:"published"`
	// Consumed counts this run's messages handled, each once per fan-out
	// group; Duplicates are repeat deliveries of them and Foreign anything
	// else the groups saw. Consume rates and per-message CPU count every
	// group's handling.
	Consumed   int64 `json:"consumed"`
	Duplicates int64 `json:"duplicates"`
	Foreign    int64 `json:"foreign"`
	Missing    int64 `json:"missing"`
	// Profiles are the CPU profiles of the measured window (Config.ProfileDir).
	Profiles []string `json:"profiles,omitempty"`

	PublishSeconds float64 `json:"publish_seconds,omitempty"`
	PublishRate    float64 `json:"publish_msgs_per_sec,omitempty"`
	// ConsumeSeconds runs from the first message handled to the last.
	ConsumeSeconds float64 `json:"consume_seconds,omitempty"`
	ConsumeRate    float64 `json:"consume_msgs_per_sec,omitempty"`
	// StartupSeconds, in consume mode, runs from starting the consumers to
	// their first message (connecting, joining the group).
	StartupSeconds float64  `json:"consumer_startup_seconds,omitempty"`
	Latency        *Latency `json:"latency_us,omitempty"`
	// BacklogAtPublishEnd is what the consumers had still to handle when the
	// last publish was acknowledged, and DrainSeconds how long that took;
	// KeptUp is a drain within 250 ms or a tenth of the publishing time.
	BacklogAtPublishEnd int64   `json:"backlog_at_publish_end"`
	DrainSeconds        float64 `json:"drain_seconds"`
	KeptUp              *bool   `json:"kept_up,omitempty"`

	// MeasuredSeconds is the window CPU and allocations are counted over.
	MeasuredSeconds float64 `json:"measured_seconds"`
	CPUPerMsg       float64 `json:"cpu_us_per_msg"`
	// BrokerCPUPerMsg is the broker's CPU over the same window, when
	// Config.BrokerCPU reads it (to 10 ms over the window).
	BrokerCPUPerMsg float64 `json:"broker_cpu_us_per_msg,omitempty"`
	AllocsPerMsg    float64 `json:"allocs_per_msg"`
	PeakGoroutines  int     `json:"peak_goroutines"`
	PeakHeapBytes   uint64  `json:"peak_heap_inuse_bytes"`
	HeapAfterBytes  uint64  `json:"heap_inuse_after_bytes"`
}

// Latency is the publish→handler latency distribution, from the envelope's
// produced_at to the handler call, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// side is one client under test; typed.go, raw_nats.go and raw_kafka.go
// implement it.
type side interface {
	publisher(ctx context.Context, r *run, i int) (publisher, error)
	consumer(ctx context.Context, r *run, i int, lat *latencies) (consumer, error)
}

// publisher sends the batch as message g on key k.
type publisher interface {
	send(ctx context.Context, k int, b *batch) error
	// flush waits for every send's ack and fails if any publish failed.
	flush(ctx context.Context) error
	close() error
}

// consumer is one running group member.
type consumer interface {
	stop() error
}

// fanout is one consumer's members of its fan-out groups, stopped together.
type fanout []consumer

func (f fanout) stop() error {
	var errs []error
	for _, c := range f {
		errs = append(errs, c.stop())
	}
	return errors.Join(errs...)
}

// run is one run's identity and accounting, shared by its clients.
type run struct {
	b      *Bench
	client Client
	id     string // the run_id header every message of the run carries
	// groups are the run's consumer groups, one per fan-out subscription.
	groups []string
	// start is when the run began: consume mode's group starts at the
	// first message stored at or after it.
	start     time.Time
	fromStart bool
	tally     *tally
	sent      atomic.Int64
	// fail ends the run with a consumer's fatal error.
	fail context.CancelCauseFunc
}

// handled counts one delivery to fan-out group way and records its latency
// when it is the group's first of one of this run's messages.
func (r *run) handled(lat *latencies, way int, runID string, seq uint64, ok bool, messageID string, producedAt time.Time) {
	if r.tally.take(way, runID, seq, ok, messageID) && lat != nil {
		lat.Record(time.Since(producedAt))
	}
}

func (b *Bench) side(c Client) side {
	switch {
	case c == Typed:
		return typedSide{}
	case b.transport == "nats":
		return rawNATS{}
	default:
		return rawKafka{}
	}
}

// Run runs the configured load once through client c.
func (b *Bench) Run(ctx context.Context, c Client) (res *Result, err error) {
	if c != Typed && c != Raw {
		return nil, fmt.Errorf("client %q: use typed or raw", c)
	}
	cfg := b.cfg
	b.runs++
	tctx, cancelTimeout := context.WithTimeout(ctx, cfg.Timeout)
	defer cancelTimeout()
	rctx, fail := context.WithCancelCause(tctx)
	defer fail(nil)
	if cfg.OwnBroker {
		if err := b.adm.purge(rctx); err != nil {
			return nil, err
		}
	}
	id := envelope.NewMessageID()
	r := &run{b: b, client: c, id: id, start: time.Now(), fromStart: cfg.Mode == Consume || cfg.NoGroup, fail: fail}
	group := fmt.Sprintf("ampybusctl-bench-%s-%d-%s", id[len(id)-8:], b.runs, c)
	r.groups = []string{group}
	for j := 1; j < cfg.Fanout; j++ {
		r.groups = append(r.groups, group+"-f"+strconv.Itoa(j))
	}
	var observe func(string)
	if cfg.Observe != nil {
		observe = func(mid string) { cfg.Observe(c, mid) }
	}
	r.tally = newTally(id, cfg.Messages, cfg.Fanout, observe)
	res = &Result{Client: c, Mode: cfg.Mode, Transport: b.transport, RunID: id, Messages: cfg.Messages, PayloadBytes: b.PayloadBytes()}
	if cfg.Mode != Publish {
		res.Group, res.Fanout = group, cfg.Fanout
	}
	stopProgress := b.progress(r, c)
	defer stopProgress()
	s := b.side(c)

	var (
		pubs []publisher
		cons []consumer
		lats []*latencies
	)
	defer func() {
		for _, cn := range cons {
			if serr := cn.stop(); serr != nil && err == nil {
				err = fmt.Errorf("stop consumer: %w", serr)
			}
		}
		for _, p := range pubs {
			_ = p.close()
		}
		if len(cons) > 0 && !cfg.NoGroup {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			for _, g := range r.groups {
				if derr := b.adm.dropGroup(dctx, g); derr != nil {
					cfg.Logger.Warn("bench: could not remove the run's consumer group", "group", g, "err", derr)
				}
			}
			cancel()
		}
		if err != nil && tctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (the run's timeout is %s)", err, cfg.Timeout)
		}
	}()
	openConsumers := func() error {
		for i := range cfg.Consumers {
			lat := newLatencies()
			cn, err := s.consumer(rctx, r, i, lat)
			if err != nil {
				return fmt.Errorf("consumer %d: %w", i, err)
			}
			cons, lats = append(cons, cn), append(lats, lat)
		}
		return nil
	}
	openPublishers := func() error {
		for i := range cfg.Publishers {
			p, err := s.publisher(rctx, r, i)
			if err != nil {
				return fmt.Errorf("publisher %d: %w", i, err)
			}
			pubs = append(pubs, p)
		}
		return nil
	}
	wait := func() error {
		r.tally.expect(r.sent.Load() * int64(cfg.Fanout))
		select {
		case <-r.tally.done:
			return nil
		case <-rctx.Done():
			return fmt.Errorf("consumers handled %d of %d messages: %w", r.tally.consumed.Load(), r.sent.Load()*int64(cfg.Fanout), context.Cause(rctx))
		}
	}

	var u0 usage
	var broker0 time.Duration
	brokerOK := cfg.BrokerCPU != nil
	readBroker := func() time.Duration {
		if !brokerOK {
			return 0
		}
		d, err := cfg.BrokerCPU()
		if err != nil {
			cfg.Logger.Warn("bench: broker CPU not read; left out", "err", err)
			brokerOK = false
		}
		return d
	}
	var smp *sampler
	// Memory the setup (the preload, connecting) freed goes back to the OS
	// before the window: the scavenger must not bill it to the run.
	var endProfile func(context.Context) ([]string, error)
	begin := func() {
		settleHeap()
		if cfg.ProfileDir != "" {
			p := &profiler{dir: cfg.ProfileDir, broker: cfg.BrokerProfile}
			name := fmt.Sprintf("%s-%s-%s-r%d", b.transport, cfg.Mode, c, b.runs)
			var perr error
			if endProfile, perr = p.start(name); perr != nil {
				cfg.Logger.Warn("bench: no profile of this run", "err", perr)
			}
		}
		u0, broker0 = readUsage(), readBroker()
		smp = startSampler()
	}
	switch cfg.Mode {
	case Publish:
		if err := openPublishers(); err != nil {
			return nil, err
		}
		begin()
		elapsed, err := b.drive(rctx, r, pubs)
		if err != nil {
			return nil, err
		}
		res.PublishSeconds = elapsed.Seconds()
	case E2E:
		if err := openConsumers(); err != nil {
			return nil, err
		}
		// Latency is the steady state's: publishing starts once every
		// partition has a member pulling it.
		for _, g := range r.groups {
			if cfg.NoGroup {
				break // consumers without a group read from the run's start
			}
			if err := b.adm.ready(rctx, g, cfg.Consumers); err != nil {
				cfg.Logger.Warn("bench: the group did not settle; publishing anyway", "group", g, "err", err)
			}
		}
		if err := openPublishers(); err != nil {
			return nil, err
		}
		begin()
		elapsed, err := b.drive(rctx, r, pubs)
		if err != nil {
			return nil, err
		}
		pubEnd := time.Now()
		res.PublishSeconds = elapsed.Seconds()
		res.BacklogAtPublishEnd = max(0, r.sent.Load()*int64(cfg.Fanout)-r.tally.consumed.Load())
		if err := wait(); err != nil {
			return nil, err
		}
		drain := max(0, unixTime(r.tally.last.Load()).Sub(pubEnd))
		res.DrainSeconds = drain.Seconds()
		kept := drain <= 250*time.Millisecond || drain <= elapsed/10
		res.KeptUp = &kept
	case Consume:
		if err := openPublishers(); err != nil {
			return nil, err
		}
		if _, err := b.drive(rctx, r, pubs); err != nil {
			return nil, fmt.Errorf("preload: %w", err)
		}
		for _, p := range pubs {
			_ = p.close()
		}
		pubs = nil // closed before the consumers are measured
		begin()
		t0 := time.Now()
		if err := openConsumers(); err != nil {
			return nil, err
		}
		if err := wait(); err != nil {
			return nil, err
		}
		res.StartupSeconds = unixTime(r.tally.first.Load()).Sub(t0).Seconds()
	}
	u1, broker1 := readUsage(), readBroker()
	if endProfile != nil {
		if res.Profiles, err = endProfile(ctx); err != nil {
			return nil, err
		}
	}
	res.PeakGoroutines, res.PeakHeapBytes = smp.finish()
	settleHeap()
	res.HeapAfterBytes = heapInUse()

	res.Published = r.sent.Load()
	res.MeasuredSeconds = u1.at.Sub(u0.at).Seconds()
	perMsg := float64(res.Published)
	if cfg.Mode != Publish {
		res.Consumed, res.Duplicates, res.Foreign = r.tally.consumed.Load(), r.tally.dups.Load(), r.tally.foreign.Load()
		res.Missing = res.Published*int64(cfg.Fanout) - res.Consumed
		first, last := unixTime(r.tally.first.Load()), unixTime(r.tally.last.Load())
		res.ConsumeSeconds = last.Sub(first).Seconds()
		if res.ConsumeSeconds > 0 && res.Consumed > 1 {
			res.ConsumeRate = float64(res.Consumed-1) / res.ConsumeSeconds
		}
		res.Latency = mergeLatencies(lats)
		if cfg.Mode == Consume {
			perMsg = float64(res.Consumed)
			res.Latency = nil // produced_at is from the untimed preload
		}
	}
	if res.PublishSeconds > 0 {
		res.PublishRate = float64(res.Published) / res.PublishSeconds
	}
	if perMsg > 0 {
		res.CPUPerMsg = float64((u1.cpu - u0.cpu).Microseconds()) / perMsg
		res.AllocsPerMsg = float64(u1.allocs-u0.allocs) / perMsg
		if brokerOK {
			res.BrokerCPUPerMsg = float64((broker1 - broker0).Microseconds()) / perMsg
		}
	}
	return res, nil
}

// drive runs the publishers over their share of the messages and returns
// how long it took until every one was acknowledged.
func (b *Bench) drive(ctx context.Context, r *run, pubs []publisher) (time.Duration, error) {
	cfg := b.cfg
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(pubs))
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.publishShare(ctx, r, i, p)
			if errs[i] == nil {
				errs[i] = p.flush(ctx)
			}
			if errs[i] != nil {
				r.fail(errs[i]) // the others stop too
			}
		}()
	}
	wg.Wait()
	// The first failure, not the cancellations it caused in the others.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return 0, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("%w: %w", err, context.Cause(ctx))
	}
	if n := r.sent.Load(); n != int64(cfg.Messages) {
		return 0, fmt.Errorf("published %d of %d messages", n, cfg.Messages)
	}
	return time.Since(start), nil
}

// publishShare sends publisher i's messages, in order, paced to its share
// of the rate: a ticker every 10 ms releases the messages due by then.
func (b *Bench) publishShare(ctx context.Context, r *run, i int, p publisher) error {
	cfg := b.cfg
	n := cfg.Messages
	mine := 0
	for g := range n {
		if owner(g, cfg.Keys, cfg.Publishers) == i {
			mine++
		}
	}
	bt := newBatch(cfg.Size, b.keys.symbols[len(b.keys.symbols)-1])
	g := 0
	next := func() error {
		for owner(g, cfg.Keys, cfg.Publishers) != i {
			g++
		}
		k := g % cfg.Keys
		bt.set(b.keys.symbols[k], g)
		g++
		if err := p.send(ctx, k, bt); err != nil {
			return err
		}
		r.sent.Add(1)
		return nil
	}
	if cfg.Rate == 0 {
		for range mine {
			if err := next(); err != nil {
				return err
			}
		}
		return nil
	}
	rate := cfg.Rate * float64(mine) / float64(n)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	began := time.Now()
	for sent := 0; sent < mine; {
		due := min(mine, int(time.Since(began).Seconds()*rate)+1)
		for ; sent < due; sent++ {
			if err := next(); err != nil {
				return err
			}
		}
		if sent == mine {
			break
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// progress reports the run's counts until the returned func is called.
func (b *Bench) progress(r *run, c Client) func() {
	if b.cfg.Progress == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				b.cfg.Progress(Progress{Client: c, Phase: string(b.cfg.Mode), Published: r.sent.Load(), Consumed: r.tally.consumed.Load(), Total: b.cfg.Messages})
			}
		}
	}()
	return func() { close(stop); <-done }
}
