package kafkabinding_test

import (
	"cmp"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/embedded"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Topics follow the contract: partitions, retention and max message size;
// ensuring again after the contract changes brings an existing topic along.
func TestEnsureTopicFromContract(t *testing.T) {
	e, b, ctx := cluster(t)
	require.NoError(t, b.Ensure(ctx, bars.Domain, orders.Domain))

	check := func(topic string, partitions int, retention time.Duration, maxBytes int64) {
		t.Helper()
		// A fresh client each time: kgo caches metadata for a few seconds.
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers()...))
		require.NoError(t, err)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		details, err := adm.ListTopics(ctx, topic)
		require.NoError(t, err)
		assert.Len(t, details[topic].Partitions, partitions, "%s partitions", topic)
		cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
		require.NoError(t, err)
		rc, err := cfgs.On(topic, nil)
		require.NoError(t, err)
		got := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				got[c.Key] = *c.Value
			}
		}
		assert.Equal(t, strconv.FormatInt(retention.Milliseconds(), 10), got["retention.ms"], "%s retention", topic)
		assert.Equal(t, strconv.FormatInt(maxBytes, 10), got["max.message.bytes"], "%s max message size", topic)
	}
	check("ampy.dev.bars.v1", 12, 7*24*time.Hour, 1<<20+kafkabinding.HeaderAllowance)
	check("ampy.dev.orders.v1", 6, 400*24*time.Hour, 1<<20+kafkabinding.HeaderAllowance)

	// The contract grows the domain: more partitions, longer retention.
	tr := b.Transport()
	require.NoError(t, tr.EnsureStream(ctx, transport.Stream{Prefix: "ampy.dev.bars.v1", Retention: 30 * 24 * time.Hour, MaxPayload: 2 << 20, Partitions: 16}))
	check("ampy.dev.bars.v1", 16, 30*24*time.Hour, 2<<20+kafkabinding.HeaderAllowance)
}

// Replication follows the contract where the cluster has the brokers, holds
// one copy per broker where it has fewer, and is never lowered.
func TestEnsureTopicReplicas(t *testing.T) {
	for _, tc := range []struct {
		brokers           int
		orders, bars      int
		preBars, wantBars int
	}{
		{brokers: 3, orders: 3, bars: 1},
		{brokers: 1, orders: 1, bars: 1},
		{brokers: 3, orders: 3, preBars: 3, wantBars: 3},
	} {
		t.Run(strconv.Itoa(tc.brokers)+"brokers/pre"+strconv.Itoa(tc.preBars), func(t *testing.T) {
			e, err := embedded.StartKafka(embedded.KafkaOptions{Brokers: tc.brokers})
			require.NoError(t, err)
			defer e.Shutdown()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers()...))
			require.NoError(t, err)
			defer cl.Close()
			adm := kadm.NewClient(cl)
			if tc.preBars > 0 {
				_, err := adm.CreateTopic(ctx, 12, int16(tc.preBars), nil, "ampy.dev.bars.v1")
				require.NoError(t, err)
			}
			tr, err := kafkabinding.Open(ctx, kafkabinding.Config{Brokers: e.Brokers()})
			require.NoError(t, err)
			defer tr.Close()
			for _, d := range []*ampybus.DomainSpec{orders.Domain, bars.Domain} {
				require.NoError(t, tr.EnsureStream(ctx, transport.Stream{Prefix: d.Prefix("dev"), Partitions: d.Partitions, Replicas: d.Replicas}))
			}
			details, err := adm.ListTopics(ctx, "ampy.dev.orders.v1", "ampy.dev.bars.v1")
			require.NoError(t, err)
			assert.Equal(t, tc.orders, details["ampy.dev.orders.v1"].Partitions.NumReplicas(), "orders")
			wantBars := cmp.Or(tc.wantBars, tc.bars)
			assert.Equal(t, wantBars, details["ampy.dev.bars.v1"].Partitions.NumReplicas(), "bars")
		})
	}
}
