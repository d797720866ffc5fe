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
	got := make(chan *trades.Message, 1)
	sub, err := trades.Subscribe(ctx, b, trades.All(), func(_ context.Context, m *trades.Message) error {
		got <- m
		return nil
	}, ampybus.Durable("cx-readers"))
	if err != nil {
		return err
	}
	defer sub.Stop()
	trade := &marketv1.Trade{Venue: "XCX", Symbol: "ABC", PriceE4: 1234500, Size: 10, At: timestamppb.Now(), TradeId: "t-1"}
	if _, err := trades.NewPublisher(b).Publish(ctx, trades.MustSubtopic("XCX", "ABC"), trade); err != nil {
		return err
	}
	select {
	case m := <-got:
		fmt.Printf("received %s %s %d dedupe_key=%s\n", m.Topic, m.Payload.GetTradeId(), m.Payload.GetPriceE4(), m.Headers.DedupeKey)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
