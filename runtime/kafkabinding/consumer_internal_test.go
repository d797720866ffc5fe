package kafkabinding

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Records the filter passes over are not kept while an earlier matched record
// is held (by a slow handler or an in-place retry), and the commit moves past
// all of them once it settles.
func TestPassedOverRecordsAreNotKept(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(t, err)
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := Open(ctx, Config{Brokers: kc.ListenAddrs()})
	require.NoError(t, err)
	defer tr.Close()
	s := transport.Stream{Prefix: "ampy.dev.rv.v1", Partitions: 1}
	require.NoError(t, tr.EnsureStream(ctx, s))
	h := envelope.Headers{PartitionKey: "k"}
	_, err = tr.Publish(ctx, s, &transport.Message{Topic: s.Prefix + ".A.X", Headers: h, Payload: []byte("x")})
	require.NoError(t, err)
	const others = 5000
	for range others {
		require.NoError(t, tr.PublishAsync(ctx, s, &transport.Message{Topic: s.Prefix + ".B.Y", Headers: h, Payload: make([]byte, 256)},
			func(transport.PublishAck, error) {}))
	}
	require.NoError(t, tr.Flush(ctx))
	cons, err := tr.Subscribe(ctx, transport.Subscription{Stream: s, Filters: []string{s.Prefix + ".A.*"}, Group: "g",
		Start: transport.StartPosition{Kind: transport.StartFirst}, MaxInFlight: 16})
	require.NoError(t, err)
	defer cons.Close()
	d, err := cons.Next(ctx) // held
	require.NoError(t, err)
	c := cons.(*consumer)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		p := c.parts[0]
		return p != nil && p.latest.seen && p.latest.offset == others
	}, 20*time.Second, 20*time.Millisecond, "the consumer read past the held record")
	c.mu.Lock()
	assert.Len(t, c.parts[0].pending, 1, "only the held delivery is kept")
	c.mu.Unlock()

	require.NoError(t, d.Ack(ctx))
	c.commitSettled(ctx, nil)
	offs, err := kadm.NewClient(tr.Client()).FetchOffsets(ctx, "g")
	require.NoError(t, err)
	o, ok := offs.Lookup(s.Prefix, 0)
	require.True(t, ok)
	assert.Equal(t, int64(others+1), o.At, "the commit moves past every passed-over record once the held one settles")
}
