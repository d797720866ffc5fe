// Command cx publishes one trade through its generated API and reads it back.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"example.com/cx/gen/cx/market/v1"
	"example.com/cx/internal/bus/trades"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
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
	got := make(chan *trades.Message, 2)
	sub, err := trades.Subscribe(ctx, b, trades.All(), func(_ context.Context, m *trades.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("cx-readers"))
	if err != nil {
		return err
	}
	defer sub.Stop()
	pub := trades.NewPublisher(b)
	// Sequence 2, then 1: the second arrives out of the venue's order.
	for _, seq := range []int64{2, 1} {
		trade := &marketv1.Trade{Venue: "XCX", Symbol: "ABC", PriceE4: 1234500, Size: 10, At: timestamppb.Now(), TradeId: fmt.Sprintf("t-%d", seq), Seq: seq}
		if _, err := pub.Publish(ctx, trades.MustSubtopic("XCX", "ABC"), trade); err != nil {
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
	return nil
}
