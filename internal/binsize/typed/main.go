// Command typed publishes one bar batch through the generated API on NATS:
// the smallest service ampy-bus serves, measured against raw/ by the
// binsize test.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	_ "github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, os.Getenv("AMPYBUS_URL"), ampybus.WithProducer("size@typed", "size"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer b.Close()
	now := timestamppb.Now()
	batch := &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: now, End: now, EventTime: now,
	}}}
	res, err := bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), batch)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res.Stream, res.Sequence)
}
