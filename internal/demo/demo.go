// Package demo plays the seed's end-to-end narrative (§19) over the bus with
// generated, typed publishers and consumers: bars for AAPL@XNAS → a signal →
// an order keyed by client_order_id → fills → position snapshots, metrics from
// every service, a poison order dead-lettered and redriven after a fix, and a
// replay request reprocessed idempotently. The same code runs on every
// transport; only the URL changes.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ampyfin/ampy-bus/plugin/ampyprom"
	_ "github.com/ampyfin/ampy-bus/runtime/embedded" // the demo runs on embedded:// by default

	"google.golang.org/protobuf/proto"
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
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	metricsv1 "github.com/ampyfin/ampy-bus/proto/ampy/metrics/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	positionsv1 "github.com/ampyfin/ampy-bus/proto/ampy/positions/v1"
	signalsv1 "github.com/ampyfin/ampy-bus/proto/ampy/signals/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
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

// services starts each service's consumers; their handlers publish the next step.
func (d *demo) services(ctx context.Context, buses map[string]*ampybus.Bus, pnlDedupe dedupe.Store) error {
	model, oms, broker, pnl, ops := buses["model"], buses["oms"], buses["broker"], buses["pnl"], buses["ops"]

	// 2. ampy-model-server turns bars into an ALPHA signal.
	err := d.keep("bars")(bars.Subscribe(ctx, model, bars.All(), func(ctx context.Context, m *bars.Message) error {
		d.mu.Lock()
		d.barsCount++
		n := d.barsCount
		d.mu.Unlock()
		d.say("model   ← %-38s key %-24s bar %d/3", m.Topic, m.Headers.PartitionKey, n)
		if n < 3 {
			return nil
		}
		d.closeOnce("bars", d.barsSeen)
		sig := &signalsv1.Signal{Security: m.Payload.GetBars()[0].GetSecurity(), Type: commonv1.SignalType_SIGNAL_TYPE_ALPHA, ModelId: modelID,
			Horizon: "5m", GeneratedAt: timestamppb.Now(), ExpiresAt: timestamppb.New(time.Now().Add(5 * time.Minute)),
			Value: &signalsv1.Signal_Score{Score: dec(7300, 4)}}
		res, err := signals.NewPublisher(model).Publish(ctx, signals.MustSubtopic(modelID), sig)
		if err != nil {
			return err
		}
		d.sent("signals")
		d.say("model   → %-38s key %-24s ALPHA score 0.7300", res.Topic, modelID+"|AAPL.XNAS")
		d.metric(ctx, model, "ampy-model-server", "model.signals_emitted", 1)
		return nil
	}, ampybus.Durable("ampy-model-server"), ampybus.DeliverAll()))
	if err != nil {
		return err
	}

	// 3. ampy-oms turns the signal into orders keyed by client_order_id; the
	// second is for an account the broker adapter does not know yet.
	err = d.keep("signals")(signals.Subscribe(ctx, oms, signals.All(), func(ctx context.Context, m *signals.Message) error {
		d.say("oms     ← %-38s key %-24s score %s", m.Topic, m.Headers.PartitionKey, decimal(m.Payload.GetScore()))
		d.closeOnce("signal", d.signalSeen)
		pub := orders.NewRequestsPublisher(oms)
		for _, o := range []struct{ id, acct string }{{goodOrder, liveAcct}, {poisonOrd, newAcct}} {
			req := &ordersv1.OrderRequest{AccountId: o.acct, ClientOrderId: o.id, Security: m.Payload.GetSecurity(),
				Side: commonv1.Side_SIDE_BUY, OrderType: commonv1.OrderType_ORDER_TYPE_LIMIT, Tif: commonv1.TimeInForce_TIME_IN_FORCE_DAY,
				Quantity: dec(100, 0), LimitPrice: dec(1921000, 4), StrategyTag: modelID, CreatedAt: timestamppb.Now()}
			res, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), req)
			if err != nil {
				return err
			}
			d.sent("orders")
			d.say("oms     → %-38s key %-24s BUY 100 AAPL @ 192.1000 for %s", res.Topic, o.id, o.acct)
		}
		d.metric(ctx, oms, "ampy-oms", "oms.orders_submitted", 2)
		return nil
	}, ampybus.Durable("ampy-oms"), ampybus.DeliverAll()))
	if err != nil {
		return err
	}

	// 4. broker-alpaca executes orders for accounts it knows, in two fills.
	err = d.keep("orders")(orders.SubscribeRequests(ctx, broker, orders.AllRequests(), func(ctx context.Context, m *orders.RequestsMessage) error {
		o := m.Payload
		d.mu.Lock()
		known := d.brokerAccounts[o.GetAccountId()]
		d.mu.Unlock()
		if !known {
			d.say("broker  ✗ %-38s key %-24s unknown account %s", m.Topic, m.Headers.PartitionKey, o.GetAccountId())
			return ampybus.Permanent(fmt.Errorf("unknown account %s", o.GetAccountId()))
		}
		d.say("broker  ← %-38s key %-24s %s", m.Topic, m.Headers.PartitionKey, redriven(m.Headers))
		pub := fills.NewEventsPublisher(broker)
		for i, qty := range []int64{40, 60} {
			f := &fillsv1.FillEvent{AccountId: o.GetAccountId(), ClientOrderId: o.GetClientOrderId(), BrokerOrderId: "alp-" + o.GetClientOrderId(),
				Security: o.GetSecurity(), Quantity: dec(qty, 0), Price: dec(1920800+int64(i)*100, 4), Venue: "ALPACA", EventTime: timestamppb.Now()}
			res, err := pub.Publish(ctx, fills.NewEventsSubtopic(), f)
			if err != nil {
				return err
			}
			d.sent("fills")
			d.say("broker  → %-38s key %-24s filled %d @ %s", res.Topic, m.Headers.PartitionKey, qty, decimal(f.Price))
		}
		d.metric(ctx, broker, "broker-alpaca", "broker.fills_published", 2)
		return nil
	}, ampybus.Durable("broker-alpaca"), ampybus.DeliverAll()))
	if err != nil {
		return err
	}

	// The OMS watches its dead letters.
	go d.watchDLQ(ctx, ops)

	// 5. ampy-position-pnl applies fills once each and publishes snapshots.
	// Its first attempt at the first fill fails (a busy store) and is retried.
	failedOnce := false
	pnlHandler := func(ctx context.Context, m *fills.EventsMessage) error {
		f := m.Payload
		if m.ReplayRequestID == "" {
		}
		d.mu.Lock()
		if !failedOnce {
			failedOnce = true
			d.mu.Unlock()
			d.say("pnl     ✗ %-38s key %-24s pnl store busy; retry %d", m.Topic, m.Headers.PartitionKey, m.Attempt)
			return errors.New("pnl store busy")
		}
		key := f.GetAccountId() + "|" + f.GetSecurity().GetSymbol() + "." + f.GetSecurity().GetMic()
		p := d.pos[key]
		if p == nil {
			p = &position{}
			d.pos[key] = p
		}
		p.qty += f.GetQuantity().GetScaled()
		p.notional += f.GetQuantity().GetScaled() * f.GetPrice().GetScaled()
		snap := &positionsv1.PositionSnapshot{AccountId: f.GetAccountId(), Security: f.GetSecurity(), Quantity: dec(p.qty, 0),
			AvgPrice: dec(p.notional/p.qty, 4), AsOf: timestamppb.Now()}
		d.fillsByOrder[f.GetClientOrderId()]++
		done := d.fillsByOrder[f.GetClientOrderId()] == 2
		qty := p.qty
		d.mu.Unlock()
		d.say("pnl     ← %-38s key %-24s attempt %d", m.Topic, m.Headers.PartitionKey, m.Attempt)
		res, err := positions.NewSnapshotsPublisher(pnl).Publish(ctx, positions.NewSnapshotsSubtopic(), snap)
		if err != nil {
			return err
		}
		d.sent("positions")
		d.say("pnl     → %-38s key %-24s %d AAPL avg %s", res.Topic, key, qty, decimal(snap.AvgPrice))
		if done {
			d.metric(ctx, pnl, "ampy-position-pnl", "pnl.positions_updated", 1)
		}
		return nil
	}
	pnlOpts := []ampybus.SubscribeOption{ampybus.Durable("ampy-position-pnl"), ampybus.DeliverAll(), ampybus.Dedupe(pnlDedupe, time.Hour),
		ampybus.RetryBackoff(func(int) time.Duration { return 50 * time.Millisecond })}
	if err := d.keep("fills")(fills.SubscribeEvents(ctx, pnl, fills.AllEvents(), pnlHandler, pnlOpts...)); err != nil {
		return err
	}
	// 6. ...and serves replay requests through the same group and dedupe store.
	err = d.keep("control")(control.SubscribeReplayRequests(ctx, pnl, control.AllReplayRequests(), func(ctx context.Context, m *control.ReplayRequestsMessage) error {
		w, ok := ampybus.ReplayFor(pnl, fills.EventsSpec, m.Payload)
		if !ok {
			return nil
		}
		d.say("pnl     ← %-38s replay %s: %s", m.Topic, w.RequestID, m.Payload.GetReason())
		st, err := fills.ReplayEventsWindow(ctx, pnl, fills.AllEvents(), w, pnlHandler, pnlOpts...)
		if err != nil {
			return err
		}
		d.say("pnl     ↻ replayed %d fills: %d applied again, %d skipped as already applied", st.Handled+st.Duplicates, st.Handled, st.Duplicates)
		d.replayed <- st
		return nil
	}, ampybus.Durable("ampy-position-pnl.replays"), ampybus.DeliverAll()))
	if err != nil {
		return err
	}

	// Every service's metrics reach a dashboard.
	err = d.keep("metrics")(metrics.Subscribe(ctx, ops, metrics.All(), func(_ context.Context, m *metrics.Message) error {
		d.mu.Lock()
		d.metricsCount++
		d.mu.Unlock()
		d.say("dash    ← %-38s %s = %g", m.Topic, m.Payload.GetName(), m.Payload.GetValue())
		return nil
	}, ampybus.Durable("dashboard"), ampybus.DeliverAll()))
	if err != nil {
		return err
	}
	// Positions reach risk, which marks each order done when its account is flat-filled.
	return d.keep("positions")(positions.SubscribeSnapshots(ctx, ops, positions.AllSnapshots(), func(_ context.Context, m *positions.SnapshotsMessage) error {
		if m.Payload.GetQuantity().GetScaled() == 100 {
			d.mu.Lock()
			var order string
			for id, n := range d.fillsByOrder {
				if n == 2 && ((id == goodOrder && m.Payload.GetAccountId() == liveAcct) || (id == poisonOrd && m.Payload.GetAccountId() == newAcct)) {
					order = id
				}
			}
			d.mu.Unlock()
			if order != "" {
				d.closeOnce("filled "+order, d.filled[order])
			}
		}
		return nil
	}, ampybus.Durable("risk"), ampybus.DeliverAll()))
}

// watchDLQ reports the first dead letter on the orders DLQ.
func (d *demo) watchDLQ(ctx context.Context, ops *ampybus.Bus) {
	tap, err := ampybus.OpenTap(ctx, ops, generated.Catalog, "ampy."+ops.Env()+".dlq.v1.orders", ampybus.TapOptions{Start: transport.StartPosition{Kind: transport.StartAtTime, Time: d.start}})
	if err != nil {
		return
	}
	defer tap.Close()
	in, err := tap.Next(ctx)
	if err != nil {
		return
	}
	_ = in.Ack(ctx)
	d.say("oms     ! %-38s dead letter from %s", in.Topic, in.Message().Headers.Extra[ampybus.HeaderDLQConsumer])
	d.metric(ctx, ops, "ampy-ops", "ops.dlq_messages", 1)
	d.closeOnce("dlq", d.deadLettered)
}

func (d *demo) metric(ctx context.Context, b *ampybus.Bus, service, name string, v float64) {
	m := &metricsv1.Metric{Name: name, Labels: map[string]string{"env": b.Env(), "service": service}, Value: v, At: timestamppb.Now()}
	if _, err := metrics.NewPublisher(b).Publish(ctx, metrics.MustSubtopic(service), m); err == nil {
		d.sent("metrics")
	}
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

func redriven(h envelope.Headers) string {
	if of := h.Extra[ampybus.HeaderRedriveOf]; of != "" {
		return "redriven from " + of
	}
	return "new order"
}

// summary prints what each domain saw: the table the seed's dashboards show.
func (d *demo) summary(replay ampybus.Stats) error {
	t, err := readTally(d.metrics.Registry)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(d.w)
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "domain\tpublished\tconsumed\tretried\tdead-lettered\tdecode-fail\treplayed\tp50 ms\tp99 ms")
	var total [6]uint64
	for _, dom := range []string{"bars", "signals", "orders", "fills", "positions", "metrics", "control", "dlq"} {
		c := t[dom]
		var replayed uint64
		if dom == "fills" {
			replayed = replay.Handled + replay.Duplicates
		}
		p50, p99 := "-", "-"
		if h := d.latency.get(dom); h.Count() > 0 {
			p50, p99 = ms(h.Percentile(50)), ms(h.Percentile(99))
		}
		row := []uint64{c.produced, c.consumed, c.retried, c.dlq, c.decodeFail, replayed}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", dom, row[0], row[1], row[2], row[3], row[4], row[5], p50, p99)
		for i, v := range row {
			total[i] += v
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\n", total[0], total[1], total[2], total[3], total[4], total[5])
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "(counts from the bus_* metrics: consumed counts settled deliveries, replays and duplicates included; latency is produced_at to first delivery, from an HDR histogram)\n")
	fmt.Fprintf(d.w, "\ndemo complete in %s: position %s|AAPL.XNAS 100 shares; the replay applied nothing twice\n", time.Since(d.start).Round(time.Millisecond), liveAcct)
	return nil
}

// ms renders a latency in milliseconds, to the microsecond.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func dec(scaled int64, scale int32) *commonv1.Decimal {
	return &commonv1.Decimal{Scaled: scaled, Scale: scale}
}

// decimal renders a Decimal for people: 1920500 at scale 4 → 192.0500.
func decimal(d *commonv1.Decimal) string {
	s := fmt.Sprintf("%d", d.GetScaled())
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	scale := int(d.GetScale())
	if scale > 0 {
		for len(s) <= scale {
			s = "0" + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// corruptBar plays a misconfigured feed handler: a BarBatch cut short on
// the wire. The model's consumer never sees it; it is dead-lettered as a
// decode_error, and counted in bus_decode_fail_total.
func (d *demo) corruptBar(ctx context.Context, ingest *ampybus.Bus) error {
	now := timestamppb.Now()
	whole, err := proto.Marshal(&barsv1.BarBatch{Bars: []*barsv1.Bar{{Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
		Start: now, End: now, Close: dec(1921400, 4), Volume: 1, EventTime: now}}})
	if err != nil {
		return err
	}
	producer, source, runID := ingest.Identity()
	h := envelope.Headers{
		MessageID: envelope.NewMessageID(), SchemaFQDN: bars.Spec.Schema.FQDN, SchemaVersion: bars.Spec.Schema.Version,
		SchemaHash: bars.Spec.Schema.Hash, ContentType: envelope.ContentTypeProtobuf, ProducedAt: time.Now().UTC(),
		Producer: producer, Source: source, RunID: runID, Trace: envelope.NewTrace(), PartitionKey: "XNAS.AAPL",
	}
	topic := bars.MustSubtopic("XNAS", "AAPL").Topic(ingest.Env())
	if _, err := ampybus.PublishEnvelope(ctx, ingest, generated.Catalog, &transport.Message{Topic: topic, Headers: h, Payload: whole[:len(whole)-5]}); err != nil {
		return err
	}
	d.say("ingest  → %-38s key %-24s a batch cut short on the wire", topic, "XNAS.AAPL")
	if err := d.waitFor(ctx, "the corrupt bar to be dead-lettered", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, s := range d.subs["bars"] {
			if s.Stats().DeadLettered > 0 {
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	d.say("model   ✗ %-38s dead-lettered: decode_error, the handler never saw it", topic)
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
