package natsbinding_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

const (
	groupPrefix = "ampy.dev.orders.v1"
	groupStream = "AMPY_DEV_ORDERS_V1"
	groupTopic  = groupPrefix + ".requests"
)

// groupStreamWith ensures a two-partition stream and stores perPartition
// messages in each partition, returning their stream sequences by partition.
func groupStreamWith(ctx context.Context, t *testing.T, tr *natsbinding.Transport, js jetstream.JetStream, perPartition int) (transport.Stream, map[int][]uint64) {
	t.Helper()
	s := transport.Stream{Prefix: groupPrefix, Partitions: 2, DedupeWindow: time.Minute}
	require.NoError(t, tr.EnsureStream(ctx, s))
	seqs := map[int][]uint64{}
	for i := 0; len(seqs[0]) < perPartition || len(seqs[1]) < perPartition; i++ {
		require.Less(t, i, 100*perPartition, "keys never filled both partitions")
		key := "co_" + strconv.Itoa(i)
		p := int(transport.Partition(key, 2))
		if len(seqs[p]) == perPartition {
			continue
		}
		ack, err := js.Publish(ctx, natsbinding.Subject(groupTopic, key, 2), []byte(key))
		require.NoError(t, err)
		seqs[p] = append(seqs[p], ack.Sequence)
	}
	return s, seqs
}

func groupSub(s transport.Stream, group string) transport.Subscription {
	return transport.Subscription{
		Stream: s, Filters: []string{groupTopic}, Group: group,
		Start:       transport.StartPosition{Kind: transport.StartFirst},
		MaxInFlight: 64, AckWait: 30 * time.Second, Failover: 2 * time.Second,
	}
}

// drain acknowledges what c delivers until want sequences arrived, and
// fails on any other or on one delivered twice.
func drain(ctx context.Context, t *testing.T, c transport.Consumer, want []uint64) {
	t.Helper()
	left := map[uint64]bool{}
	for _, s := range want {
		left[s] = true
	}
	for len(left) > 0 {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := c.Next(nctx)
		cancel()
		require.NoError(t, err, "still missing %d of %d", len(left), len(want))
		require.True(t, left[d.Sequence()], "delivery of stream sequence %d was not expected (or came twice)", d.Sequence())
		delete(left, d.Sequence())
		require.NoError(t, d.Ack(ctx))
	}
}

// The server is the fence of a partition: while a member listens on the
// consumer's deliver subject, nobody can move it elsewhere, and once the
// member closes, the partition can be taken.
func TestGroupPartitionIsFencedByItsDeliverSubject(t *testing.T) {
	ctx, tr, js := openEmbedded(t)
	s, seqs := groupStreamWith(ctx, t, tr, js, 5)
	c, err := tr.Subscribe(ctx, groupSub(s, "fence"))
	require.NoError(t, err)
	drain(ctx, t, c, append(seqs[0], seqs[1]...))

	for p := range 2 {
		name := "fence-part" + strconv.Itoa(p)
		var held *jetstream.ConsumerInfo
		require.Eventually(t, func() bool {
			pc, err := js.PushConsumer(ctx, groupStream, name)
			if err != nil {
				return false
			}
			held = pc.CachedInfo()
			return held.PushBound
		}, 10*time.Second, 20*time.Millisecond, "%s is held by the member", name)
		cfg := held.Config
		cfg.DeliverSubject = "_INBOX.thief"
		_, err := js.UpdatePushConsumer(ctx, groupStream, cfg)
		var apiErr *jetstream.APIError
		require.True(t, errors.As(err, &apiErr), "moving a held partition must be refused, got %v", err)
		assert.Equal(t, jetstream.JSErrCodeConsumerNameExists, apiErr.ErrorCode, "refused because someone listens: %v", err)
	}

	require.NoError(t, c.Close())
	cfg := func() jetstream.ConsumerConfig {
		pc, err := js.PushConsumer(ctx, groupStream, "fence-part0")
		require.NoError(t, err)
		return pc.CachedInfo().Config
	}()
	cfg.DeliverSubject = "_INBOX.next"
	_, err = js.UpdatePushConsumer(ctx, groupStream, cfg)
	assert.NoError(t, err, "a partition nobody listens to can be taken")
}

// A group consumed before push delivery has a pull consumer per partition;
// subscribing replaces each with a push consumer that resumes after its ack
// floor: nothing acknowledged comes again, nothing unacknowledged is lost.
// Two members subscribing at once both get there.
func TestGroupOfPullConsumersMovesToPush(t *testing.T) {
	ctx, tr, js := openEmbedded(t)
	s, seqs := groupStreamWith(ctx, t, tr, js, 6)
	var unacked []uint64
	for p := range 2 {
		cons, err := js.CreateConsumer(ctx, groupStream, jetstream.ConsumerConfig{
			Durable: "legacy-p" + strconv.Itoa(p), FilterSubjects: []string{strconv.Itoa(p) + "." + groupTopic},
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		require.NoError(t, err)
		batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		n := 0
		for m := range batch.Messages() {
			require.NoError(t, m.DoubleAck(ctx))
			n++
		}
		require.Equal(t, 4, n, "partition %d: fetched the first four", p)
		unacked = append(unacked, seqs[p][4:]...)
	}

	// A second member starts at the same moment.
	tr2, err := natsbinding.Open(ctx, natsbinding.Config{URL: tr.Conn().ConnectedUrl()})
	require.NoError(t, err)
	defer tr2.Close()
	second := make(chan error, 1)
	go func() {
		c2, err := tr2.Subscribe(ctx, groupSub(s, "legacy"))
		if err == nil {
			err = c2.Close() // what it received unsettled goes to the first
		}
		second <- err
	}()
	c, err := tr.Subscribe(ctx, groupSub(s, "legacy"))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, <-second)
	drain(ctx, t, c, unacked)
	for p := range 2 {
		pc, err := js.PushConsumer(ctx, groupStream, "legacy-part"+strconv.Itoa(p))
		require.NoError(t, err, "partition %d is a push consumer now", p)
		assert.NotEmpty(t, pc.CachedInfo().Config.DeliverSubject)
		_, err = js.Consumer(ctx, groupStream, "legacy-p"+strconv.Itoa(p))
		assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "partition %d's pull consumer is gone", p)
	}
	nctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	d, err := c.Next(nctx)
	if err == nil {
		t.Fatalf("stream sequence %d came again after the move", d.Sequence())
	}
	assert.ErrorIs(t, err, context.DeadlineExceeded, fmt.Sprint(err))
}
