package natsbinding_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/orders"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	ordersv1 "github.com/ampyfin/ampy-bus/proto/ampy/orders/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
)

// On a 3-node cluster the contract's replicas: 3 holds: the orders stream
// leader is killed mid-stream and no acknowledged order is lost, none is
// stored twice, and publishing resumes within seconds.
func TestClusterLeaderKilledMidStream(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) { leaderKilled(t, async) })
	}
}

func leaderKilled(t *testing.T, async bool) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	c, err := embedded.StartNATSCluster(embedded.NATSClusterOptions{Nodes: 3})
	require.NoError(t, err)
	defer c.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, c.URL(), ampybus.WithEnv("dev"), ampybus.WithProducer("oms@test", "oms"), ampybus.WithProvisioning())
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Ensure(ctx, orders.Domain))
	const stream = "AMPY_DEV_ORDERS_V1"
	leader := -1
	require.Eventually(t, func() bool { leader = c.StreamLeader(stream); return leader >= 0 }, 10*time.Second, 20*time.Millisecond)

	pub := orders.NewRequestsPublisher(b)
	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		lastAck = time.Now()
		stall   time.Duration
		failed  int
	)
	killed := make(chan struct{})
	go func() {
		for {
			mu.Lock()
			k := len(acked)
			mu.Unlock()
			if k >= n/3 {
				c.Stop(leader)
				close(killed)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	record := func(i int, res ampybus.PublishResult, err error) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			t.Logf("order %d not acknowledged: %v", i, err)
			return
		}
		acked[res.MessageID] = true
		stall = max(stall, now.Sub(lastAck))
		lastAck = now
	}
	var futures []*ampybus.PublishFuture
	for i := range n {
		o := &ordersv1.OrderRequest{
			AccountId: "ACC-1", ClientOrderId: "co_" + strconv.Itoa(i), Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"},
			Side: commonv1.Side_SIDE_BUY, Quantity: &commonv1.Decimal{Scaled: int64(i + 1)}, CreatedAt: timestamppb.Now(),
		}
		if !async {
			res, err := pub.Publish(ctx, orders.NewRequestsSubtopic(), o)
			record(i, res, err)
			continue
		}
		f, err := pub.PublishAsync(ctx, orders.NewRequestsSubtopic(), o)
		require.NoError(t, err)
		futures = append(futures, f)
		if len(futures) == 100 { // a window's worth in flight, then collect
			for j, f := range futures {
				res, err := f.Wait(ctx)
				record(i-len(futures)+1+j, res, err)
			}
			futures = futures[:0]
		}
	}
	for _, f := range futures {
		res, err := f.Wait(ctx)
		record(-1, res, err)
	}
	<-killed
	newLeader := c.StreamLeader(stream)

	// Read back every stored message from a surviving node.
	nc, err := nats.Connect(c.URL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// Read until the stream's own count: a fetch right after an election
	// may come back short, and stopping at the first empty one would count
	// stored messages as lost.
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	stored, read := map[string]int{}, uint64(0)
	for deadline := time.Now().Add(30 * time.Second); read < info.State.Msgs && time.Now().Before(deadline); {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			stored[m.Headers().Get("message_id")]++
			read++
		}
	}
	require.Equal(t, info.State.Msgs, read, "every message the stream holds was read back")
	missing, duplicated := 0, 0
	for id := range acked {
		if stored[id] == 0 {
			missing++
		}
	}
	for _, k := range stored {
		if k > 1 {
			duplicated++
		}
	}
	t.Logf("async %v: leader n%d killed after %d of %d orders; new leader n%d; acked %d, failed %d, stored %d, missing %d, duplicated %d; longest publish stall %v",
		async, leader+1, n/3, n, newLeader+1, len(acked), failed, len(stored), missing, duplicated, stall.Round(time.Millisecond))
	assert.Zero(t, failed, "every order acknowledged (the bus retries within the critical class's 30s)")
	assert.Zero(t, missing, "acknowledged orders lost")
	assert.Zero(t, duplicated, "orders stored twice")
	assert.Len(t, stored, len(acked))
	assert.NotEqual(t, leader, newLeader, "a new leader was elected")
	assert.LessOrEqual(t, stall, 5*time.Second, "publishing stalled")
}
