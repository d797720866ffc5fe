package kafkabinding_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/generated/orders"
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
