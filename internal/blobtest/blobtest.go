// Package blobtest holds the end-to-end check every blob.Store passes:
// the pointer pattern through a real bus, live and in a replay.
package blobtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ampyfin/ampy-bus/generated/bars"
	barsv1 "github.com/ampyfin/ampy-bus/proto/ampy/bars/v1"
	commonv1 "github.com/ampyfin/ampy-bus/proto/ampy/common/v1"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/blob"
)

// CarriesOversizedPayloads publishes a bars payload over max_payload on the
// bus at url with store as its blob store: the message carries a reference
// starting with refPrefix, a live subscriber gets the payload itself, and
// so does a replay of the window afterwards, from the same reference.
func CarriesOversizedPayloads(t *testing.T, url string, store blob.Store, refPrefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := ampybus.Open(ctx, url, ampybus.WithProvisioning(), ampybus.WithProducer("blob@test", "blob-test"), ampybus.WithBlobStore(store))
	require.NoError(t, err)
	defer b.Close()
	noise := make([]byte, 3<<19)
	_, _ = rand.Read(noise)
	huge := &barsv1.BarBatch{Bars: []*barsv1.Bar{{
		Security: &commonv1.SecurityId{Symbol: "AAPL", Mic: "XNAS"}, Volume: 7,
		EventTime: timestamppb.New(time.Unix(1_757_100_000, 0)), AdjustmentPolicyId: base64.StdEncoding.EncodeToString(noise),
	}}}
	got := make(chan *bars.Message, 1)
	sub, err := bars.Subscribe(ctx, b, bars.All(), func(_ context.Context, m *bars.Message) error {
		got <- m
		return nil
	}, ampybus.DeliverAll())
	require.NoError(t, err)
	defer sub.Stop()
	_, err = bars.NewPublisher(b).Publish(ctx, bars.MustSubtopic("XNAS", "AAPL"), huge)
	require.NoError(t, err)
	select {
	case m := <-got:
		assert.True(t, strings.HasPrefix(m.Headers.BlobRef, refPrefix), m.Headers.BlobRef)
		assert.True(t, proto.Equal(huge, m.Payload), "the handler gets the payload itself")
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
	var replayed []*barsv1.BarBatch
	st, err := bars.Replay(ctx, b, bars.All(), ampybus.ReplayWindow{}, func(_ context.Context, m *bars.Message) error {
		replayed = append(replayed, m.Payload)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, replayed, 1, "stats %+v", st)
	assert.True(t, proto.Equal(huge, replayed[0]), "a replay reads the blob again")
}
