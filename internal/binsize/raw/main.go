// Command raw publishes the same bar batch as typed/ with nats.go and
// JetStream directly, carrying the envelope headers by hand: the baseline
// the binsize test measures the typed program against.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(os.Getenv("AMPYBUS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	now := timestamppb.Now()
	payload, err := proto.Marshal(&barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Start: now, End: now, EventTime: now,
	}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	id := uuid.Must(uuid.NewV7()).String()
	// The binding stores a topic under its key's partition; the test passes it.
	m := nats.NewMsg(os.Args[1])
	m.Data = payload
	for k, v := range map[string]string{
		"message_id": id, "schema_fqdn": "ampy.bars.v1.BarBatch", "schema_version": "1.0.0",
		"content_type": "application/x-protobuf", "produced_at": time.Now().UTC().Format(time.RFC3339Nano),
		"producer": "size@raw", "source": "size", "run_id": "run", "partition_key": "XNAS.AAPL",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", nats.MsgIdHdr: id,
	} {
		m.Header.Set(k, v)
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ack.Stream, ack.Sequence)
}
