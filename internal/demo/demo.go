// Package demo plays the seed's end-to-end narrative (§19) over the bus with
// generated, typed publishers and consumers: bars for AAPL@XNAS → a signal →
// an order keyed by client_order_id → fills → position snapshots, metrics from
// every service, a poison order dead-lettered and redriven after a fix, and a
// replay request reprocessed idempotently. The same code runs on every
// transport; only the URL changes.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ampyfin/ampy-bus/plugin/ampyprom"
	_ "github.com/ampyfin/ampy-bus/runtime/embedded" // the demo runs on embedded:// by default

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated"
	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/control"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/metrics"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/generated/positions"
	"github.com/ampyfin/ampy-bus/generated/signals"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	controlv1 "github.com/ampyfin/ampy-bus/proto/ampy/control/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

const (
	modelID   = "hyper@2025-09-05"
	liveAcct  = "ALPACA-LIVE-01"
	newAcct   = "ALPACA-LIVE-02" // not configured at the broker adapter until the fix
	goodOrder = "co_demo_001"
	poisonOrd = "co_demo_002"
)

// Option configures Run.
type Option func(*demo)

// WithMetrics records the run's metrics in exp (served on /metrics by the
// caller); without it the run keeps its own. The summary table is read from
// them either way.
func WithMetrics(exp *ampyprom.Exporter) Option { return func(d *demo) { d.metrics = exp } }

// WithBusOptions adds options to every bus the demo opens: the credentials
// and TLS of a broker that requires them (ampybus.WithDialOptions).
func WithBusOptions(opts ...ampybus.Option) Option {
	return func(d *demo) { d.busOpts = append(d.busOpts, opts...) }
}

// Run opens the bus at url, plays the flow, prints each step to w as it
// happens and a summary table, read from the bus's metrics, at the end.
// Without a deadline in ctx it gives up after a minute. Against a shared
// broker it can run again: it reads only what it published itself.
func Run(ctx context.Context, url string, w io.Writer, opts ...Option) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	d := &demo{w: w, start: time.Now(), published: map[string]int{},
		barsSeen: make(chan struct{}), signalSeen: make(chan struct{}), filled: map[string]chan struct{}{goodOrder: make(chan struct{}), poisonOrd: make(chan struct{})},
		deadLettered: make(chan struct{}), replayed: make(chan ampybus.Stats, 1), brokerAccounts: map[string]bool{liveAcct: true},
		subs: map[string][]*ampybus.Subscription{}, fillsByOrder: map[string]int{}, pos: map[string]*position{}}
	for _, o := range opts {
		o(d)
	}
	if d.metrics == nil {
		exp, err := ampyprom.New(nil)
		if err != nil {
			return err
		}
		defer exp.Shutdown(context.Background())
		d.metrics = exp
	}
	return d.run(ctx, url)
}

type demo struct {
	w       io.Writer
	start   time.Time
	metrics *ampyprom.Exporter
	latency latencies
	busOpts []ampybus.Option

	mu             sync.Mutex
	published      map[string]int
	subs           map[string][]*ampybus.Subscription
	barsCount      int
	fillsByOrder   map[string]int
	brokerAccounts map[string]bool
	metricsCount   int
	pos            map[string]*position

	barsSeen, signalSeen, deadLettered chan struct{}
	filled                             map[string]chan struct{}
	replayed                           chan ampybus.Stats
	once                               sync.Map
}

type position struct{ qty, notional int64 } // notional at price scale 4

func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.w, "%7.1fms  "+format+"\n", append([]any{float64(time.Since(d.start).Microseconds()) / 1000}, args...)...)
}

// closeOnce closes ch the first time name is reached.
func (d *demo) closeOnce(name string, ch chan struct{}) {
	if _, loaded := d.once.LoadOrStore(name, true); !loaded {
		close(ch)
	}
}

func (d *demo) sent(domain string) {
	d.mu.Lock()
	d.published[domain]++
	d.mu.Unlock()
}

// keep returns a function keeping a domain's subscription for the summary:
// d.keep("bars")(bars.Subscribe(…)).
func (d *demo) keep(domain string) func(*ampybus.Subscription, error) error {
	return func(s *ampybus.Subscription, err error) error {
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.subs[domain] = append(d.subs[domain], s)
		d.mu.Unlock()
		return nil
	}
}

// service opens a bus with one service's identity on the broker at url,
// recording into the run's metrics.
func (d *demo) service(ctx context.Context, url, producer string) (*ampybus.Bus, error) {
	// The demo narrates each step itself; the runtime logs only errors.
	quiet := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return ampybus.Open(ctx, url, append([]ampybus.Option{ampybus.WithProducer(producer, strings.Split(producer, "@")[0]), ampybus.WithRunID("live_demo"),
		ampybus.WithLogger(quiet), ampybus.WithHooks(d.metrics.Hook, &d.latency)}, d.busOpts...)...)
}

func (d *demo) run(ctx context.Context, url string) error {
	ingest, err := d.service(ctx, url, "yfinance-go@ingest-1")
	if err != nil {
		return err
	}
	defer ingest.Close()
	url = ingest.URL() // an embedded broker started once; every service joins it
	fmt.Fprintf(d.w, "ampy-bus demo (seed §19) on %s via %s, env %s\n\n", url, ingest.Transport().Name(), ingest.Env())
	buses := map[string]*ampybus.Bus{"ingest": ingest}
	// ops holds the admin right: it provisions the streams the session uses
	// before any service starts, as a deployment would.
	if err := provision(ctx, url, d.busOpts); err != nil {
		return err
	}
	for name, producer := range map[string]string{"model": "ampy-model-server@mdl-1", "oms": "ampy-oms@oms-1", "broker": "broker-alpaca@alp-1", "pnl": "ampy-position-pnl@pnl-1", "ops": "ampy-ops@ops-1"} {
		b, err := d.service(ctx, url, producer)
		if err != nil {
			return err
		}
		defer b.Close()
		buses[name] = b
	}
	pnlDedupe := dedupe.NewMemory(1024)
	if err := d.services(ctx, buses, pnlDedupe); err != nil {
		return err
	}
	defer func() {
		for _, ss := range d.subs {
			for _, s := range ss {
				_ = s.Stop()
			}
		}
	}()

	// 1. yfinance-go publishes three one-minute bars for AAPL@XNAS.
	sec := &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}
	t0 := time.Now().UTC().Truncate(time.Minute)
	for i := range 3 {
		start := t0.Add(time.Duration(i-3) * time.Minute)
		batch := &barsv1.BarBatch{Bars: []*barsv1.Bar{{
			Security: sec, Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Minute)),
			Open: dec(1919900+int64(i)*300, 4), High: dec(1921200+int64(i)*300, 4), Low: dec(1919500+int64(i)*300, 4),
			Close: dec(1920500+int64(i)*300, 4), Volume: 120000 + int64(i)*1500, EventTime: timestamppb.New(start.Add(time.Minute)), Adjusted: true,
		}}}
		res, err := bars.NewPublisher(ingest).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), batch)
		if err != nil {
			return err
		}
		d.sent("bars")
		d.say("ingest  → %-38s key %-24s close %s", res.Topic, "XNAS.AAPL", decimal(batch.Bars[0].Close))
	}
	d.metric(ctx, buses["ingest"], "yfinance-go", "ingest.bars_published", 3)
	if err := d.corruptBar(ctx, ingest); err != nil {
		return err
	}
	if err := d.wait(ctx, "the model to see the bars", d.barsSeen); err != nil {
		return err
	}
	if err := d.wait(ctx, "the OMS to act on the signal", d.signalSeen); err != nil {
		return err
	}
	if err := d.wait(ctx, "fills and a position for "+goodOrder, d.filled[goodOrder]); err != nil {
		return err
	}
	if err := d.wait(ctx, "the poison order to reach the DLQ", d.deadLettered); err != nil {
		return err
	}

	// 5. An operator inspects the DLQ, fixes the broker adapter, redrives.
	ops := buses["ops"]
	dlqSubject := "ampy." + ops.Env() + ".dlq.v1.orders"
	tap, err := ampybus.OpenTap(ctx, ops, generated.Catalog, dlqSubject, ampybus.TapOptions{Group: "ops-redrive", Start: transport.StartPosition{Kind: transport.StartFirst}, Bounded: true})
	if err != nil {
		return err
	}
	in, err := tap.Next(ctx)
	if err != nil {
		tap.Close()
		return fmt.Errorf("read the DLQ: %w", err)
	}
	d.say("ops     ! %-38s %s (original %s)", in.Topic, in.Message().Headers.DLQReason, in.Original)
	d.mu.Lock()
	d.brokerAccounts[newAcct] = true
	d.mu.Unlock()
	d.say("ops     ✓ fix: account %s configured at the broker adapter", newAcct)
	res, err := ampybus.Redrive(ctx, ops, generated.Catalog, in)
	if err == nil {
		err = in.Ack(ctx)
	}
	tap.Close()
	if err != nil {
		return err
	}
	d.say("ops     ↻ redriven to %s seq %d (retry_count %d)", res.Topic, res.Sequence, in.Message().Headers.RetryCount+1)
	if err := d.wait(ctx, "fills for the redriven "+poisonOrd, d.filled[poisonOrd]); err != nil {
		return err
	}

	// 6. A gap is suspected in fills: the operator posts a replay request;
	// position-pnl reprocesses the window, and its dedupe store makes that a no-op.
	req := &controlv1.ReplayRequest{RequestId: "rr_demo_fills", Env: ops.Env(), Domain: "fills", Version: fills.Version,
		Start: timestamppb.New(d.start), End: timestamppb.New(time.Now().Add(time.Second)),
		Reason: "suspected gap in fills", RequestedBy: "ampy-ops@ops-1", RequestedAt: timestamppb.Now()}
	if _, err := control.NewReplayRequestsPublisher(ops).Publish(ctx, control.NewReplayRequestsSubtopic(), req); err != nil {
		return err
	}
	d.sent("control")
	d.say("ops     → replay request %s for fills [%s, %s)", req.RequestId, req.Start.AsTime().Format(time.TimeOnly), req.End.AsTime().Format(time.TimeOnly))
	var replay ampybus.Stats
	select {
	case replay = <-d.replayed:
	case <-ctx.Done():
		return fmt.Errorf("demo: waiting for the replay: %w", ctx.Err())
	}
	d.metric(ctx, ops, "ampy-ops", "ops.replays_served", 1)
	if err := d.waitFor(ctx, "every service's metrics", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.metricsCount >= d.published["metrics"]
	}); err != nil {
		return err
	}
	d.mu.Lock()
	qty := d.pos[liveAcct+"|AAPL.XNAS"].qty
	d.mu.Unlock()
	if replay.Handled != 0 || qty != 100 {
		return fmt.Errorf("demo: the replay applied %d fills again; position is %d shares, want 100", replay.Handled, qty)
	}
	return d.summary(replay)
}

func (d *demo) wait(ctx context.Context, what string, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("demo: waiting for %s: %w", what, ctx.Err())
	}
}

func (d *demo) waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("demo: waiting for %s: %w", what, ctx.Err())
		}
	}
	return nil
}

// provision creates the streams of every domain the session uses, as ops.
func provision(ctx context.Context, url string, opts []ampybus.Option) error {
	quiet := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := ampybus.Open(ctx, url, append([]ampybus.Option{ampybus.WithProducer("ops@provision", "ops"), ampybus.WithProvisioning(), ampybus.WithLogger(quiet)}, opts...)...)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.Ensure(ctx, bars.Domain, signals.Domain, orders.Domain, fills.Domain, positions.Domain, metrics.Domain, control.Domain, ampybus.DeadLetterDomain(bars.Domain))
}
