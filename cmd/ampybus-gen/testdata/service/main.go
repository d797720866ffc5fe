// Command cx publishes one trade through its generated API and reads it back.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/cx/gen/cx/market/v1"
	"example.com/cx/gen/cx/market/v2"
	"example.com/cx/internal/bus/tradesv1"
	"example.com/cx/internal/bus/tradesv2"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	// The test runs the service on embedded brokers; a deployed service
	// imports runtime/natsbinding or runtime/kafkabinding instead.
	_ "github.com/ampyfin/ampy-bus/runtime/embedded"
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, url, ampybus.WithProducer("cx@scratch", "cx"), ampybus.WithEnv("staging"))
	if err != nil {
		return err
	}
	defer b.Close()
	got := make(chan *tradesv1.Message, 2)
	sub, err := tradesv1.Subscribe(ctx, b, tradesv1.All(), func(_ context.Context, m *tradesv1.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("cx-readers"))
	if err != nil {
		return err
	}
	defer sub.Stop()
	pub := tradesv1.NewPublisher(b)
	// Sequence 2, then 1: the second arrives out of the venue's order.
	for _, seq := range []int64{2, 1} {
		trade := &marketv1.Trade{Venue: "XCX", Symbol: "ABC", PriceE4: 1234500, Size: 10, At: timestamppb.Now(), TradeId: fmt.Sprintf("t-%d", seq), Seq: seq}
		if _, err := pub.Publish(ctx, tradesv1.MustSubtopic("XCX", "ABC"), trade); err != nil {
			return err
		}
	}
	for range 2 {
		select {
		case m := <-got:
			fmt.Printf("received %s %s %d seq=%d out_of_order=%t dedupe_key=%s schema_version=%s\n", m.Topic, m.Payload.GetTradeId(),
				m.Payload.GetPriceE4(), m.Payload.GetSeq(), m.OutOfOrder, m.Headers.DedupeKey, m.Headers.SchemaVersion)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return roundTripV2(ctx, b)
}

// roundTripV2 publishes on the domain's second major version, beside v1.
func roundTripV2(ctx context.Context, b *ampybus.Bus) error {
	got := make(chan *tradesv2.Message, 1)
	// One durable group serves one pattern: v2's readers are their own group.
	sub, err := tradesv2.Subscribe(ctx, b, tradesv2.All(), func(_ context.Context, m *tradesv2.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("cx-readers-v2"))
	if err != nil {
		return err
	}
	defer sub.Stop()
	trade := &marketv2.Trade{Venue: "XCX", Symbol: "ABC", Price: "123.45", Size: 10, At: timestamppb.Now(), TradeId: "t-9", Seq: 9}
	if _, err := tradesv2.NewPublisher(b).Publish(ctx, tradesv2.MustSubtopic("XCX", "ABC"), trade); err != nil {
		return err
	}
	select {
	case m := <-got:
		fmt.Printf("received %s %s price=%s schema_version=%s\n", m.Topic, m.Payload.GetTradeId(), m.Payload.GetPrice(), m.Headers.SchemaVersion)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
