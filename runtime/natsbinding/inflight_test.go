package natsbinding

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// A publish unanswered past its deadline fails as maybe stored (the bus
// retries it with the same message id); younger ones wait, an answer after
// the failure changes nothing, and the window gets every slot back.
func TestUnansweredAsyncPublishesTimeOut(t *testing.T) {
	w := transport.NewWindow(4, false)
	f := newInflight(w, "_INBOX.acks.")
	outcomes := map[uint64]error{}
	add := func(sentAt int64) uint64 {
		require.NoError(t, w.Acquire(context.Background(), nil))
		var seq uint64
		seq = f.add(&nats.Msg{Subject: "0.ampy.dev.bars.v1.X"}, sentAt, func(_ transport.PublishAck, err error) { outcomes[seq] = err })
		return seq
	}
	old, mid, young := add(int64(time.Second)), add(int64(2*time.Second)), add(int64(5*time.Second))

	f.sweep(int64(2 * time.Second))
	require.Contains(t, outcomes, old)
	require.Contains(t, outcomes, mid)
	assert.NotContains(t, outcomes, young, "a publish within its deadline waits")
	for _, seq := range []uint64{old, mid} {
		assert.ErrorIs(t, outcomes[seq], transport.ErrUnavailable)
		assert.ErrorIs(t, outcomes[seq], transport.ErrMaybeStored)
	}

	f.reply(&nats.Msg{Subject: "_INBOX.acks." + "1", Data: []byte(`{"stream":"S","seq":9}`)})
	assert.ErrorIs(t, outcomes[old], transport.ErrMaybeStored, "an answer after the timeout does not complete it again")
	f.reply(&nats.Msg{Subject: "_INBOX.acks.3", Data: []byte(`{"stream":"S","seq":10}`)})
	assert.NoError(t, outcomes[young])
	assert.Zero(t, w.InFlight(), "every slot is back")
}
