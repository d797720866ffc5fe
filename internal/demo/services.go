package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// The demo's services, each its own bus: a model server, an OMS, a broker
// adapter and position PnL, and the operator watching dead letters.

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
