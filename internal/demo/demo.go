// Package demo plays a small trading flow over the bus with generated,
// typed publishers and consumers: bars for AAPL@XNAS, an order, its fills.
package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/fills"
	"github.com/ampyfin/ampy-bus/generated/orders"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	fillsv1 "github.com/ampyfin/ampy-bus/proto/ampy/fills/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
)

// Run opens the bus at url, plays the flow and prints each step to w.
func Run(ctx context.Context, url string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, url, ampybus.WithProducer("ampy-demo@local-1", "ampy-demo"), ampybus.WithRunID("demo"))
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(w, "ampy-bus demo on %s (env %s)\n\n", b.URL(), b.Env())

	r := &recorder{w: w, start: time.Now(), want: 6, done: make(chan struct{})}
	subs := []func() (*ampybus.Subscription, error){
		func() (*ampybus.Subscription, error) {
			return bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
				bar := m.Payload.GetBars()[0]
				r.got(m.Topic, m.Headers, fmt.Sprintf("close %s volume %d", decimal(bar.GetClose()), bar.GetVolume()))
				return nil
			}, ampybus.Durable("demo-features"))
		},
		func() (*ampybus.Subscription, error) {
			return orders.SubscribeRequests(ctx, b, orders.AllRequests(), func(_ context.Context, m *orders.RequestsMessage) error {
				o := m.Payload
				r.got(m.Topic, m.Headers, fmt.Sprintf("%s %s %s @ %s", o.GetSide(), decimal(o.GetQuantity()), o.GetSecurity().GetSymbol(), decimal(o.GetLimitPrice())))
				return nil
			}, ampybus.Durable("demo-oms"))
		},
		func() (*ampybus.Subscription, error) {
			return fills.SubscribeEvents(ctx, b, fills.AllEvents(), func(_ context.Context, m *fills.EventsMessage) error {
				f := m.Payload
				r.got(m.Topic, m.Headers, fmt.Sprintf("filled %s @ %s", decimal(f.GetQuantity()), decimal(f.GetPrice())))
				return nil
			}, ampybus.Durable("demo-pnl"))
		},
	}
	for _, subscribe := range subs {
		s, err := subscribe()
		if err != nil {
			return err
		}
		defer s.Stop()
	}

	sec := &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}
	barPub := bars.NewPublisher(b)
	t0 := time.Now().UTC().Truncate(time.Minute)
	for i := range 3 {
		start := t0.Add(time.Duration(i-3) * time.Minute)
		batch := &barsv1.BarBatch{Bars: []*barsv1.Bar{{
			Security: sec, Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Minute)),
			Open: dec(1919900+int64(i)*300, 4), Close: dec(1920500+int64(i)*300, 4), Volume: 120000 + int64(i)*1500,
			EventTime: timestamppb.New(start.Add(time.Minute)), Adjusted: true,
		}}}
		res, err := barPub.Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), batch)
		if err != nil {
			return err
		}
		r.sent(res)
	}
	order := &ordersv1.OrderRequest{
		AccountId: "ALPACA-PAPER-01", ClientOrderId: "co_demo_001", Security: sec,
		Side: commonv1.Side_SIDE_BUY, OrderType: commonv1.OrderType_ORDER_TYPE_LIMIT, Tif: commonv1.TimeInForce_TIME_IN_FORCE_DAY,
		Quantity: dec(100, 0), LimitPrice: dec(1921000, 4), CreatedAt: timestamppb.Now(),
	}
	res, err := orders.NewRequestsPublisher(b).Publish(ctx, orders.NewRequestsSubtopic(), order)
	if err != nil {
		return err
	}
	r.sent(res)
	fillPub := fills.NewEventsPublisher(b)
	for i, qty := range []int64{40, 60} {
		f := &fillsv1.FillEvent{
			AccountId: order.AccountId, ClientOrderId: order.ClientOrderId, BrokerOrderId: "alp-demo-1",
			Security: sec, Quantity: dec(qty, 0), Price: dec(1920800+int64(i)*100, 4), Venue: "ALPACA", EventTime: timestamppb.Now(),
		}
		// Fills go out async and are flushed together, as a busy broker adapter would.
		if _, err := fillPub.PublishAsync(ctx, fills.NewEventsSubtopic(), f); err != nil {
			return err
		}
	}
	if err := b.Flush(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.published += 2
	r.mu.Unlock()

	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("demo: only %d of %d messages arrived: %w", r.consumed, r.want, ctx.Err())
	}
	r.summary()
	return nil
}

type recorder struct {
	w         io.Writer
	start     time.Time
	mu        sync.Mutex
	published int
	consumed  int
	want      int
	latencies []time.Duration
	done      chan struct{}
}

func (r *recorder) sent(res ampybus.PublishResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published++
	fmt.Fprintf(r.w, "→ published %-34s seq %-3d %s\n", res.Topic, res.Sequence, res.MessageID)
}

func (r *recorder) got(topic string, h envelope.Headers, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := time.Since(h.ProducedAt)
	r.latencies = append(r.latencies, lat)
	r.consumed++
	fmt.Fprintf(r.w, "← consumed  %-34s key %-32s %s (%s, %.2fms)\n", topic, h.PartitionKey, what, h.SchemaFQDN, float64(lat.Microseconds())/1000)
	if r.consumed == r.want {
		close(r.done)
	}
}

func (r *recorder) summary() {
	r.mu.Lock()
	defer r.mu.Unlock()
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	p50 := r.latencies[len(r.latencies)/2]
	fmt.Fprintf(r.w, "\nsummary: published %d, consumed %d, publish→handler latency p50 %.2fms max %.2fms, %s in all\n",
		r.published, r.consumed, ms(p50), ms(r.latencies[len(r.latencies)-1]), time.Since(r.start).Round(time.Millisecond))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

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
