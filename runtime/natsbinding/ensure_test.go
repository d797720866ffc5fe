package natsbinding_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// One stream per env and domain, with the contract's retention, size limit
// and duplicate window; ensuring again updates it.
func TestEnsureStreamFromContract(t *testing.T) {
	e, err := natsbinding.StartEmbedded(natsbinding.EmbeddedOptions{})
	require.NoError(t, err)
	defer e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := natsbinding.Open(ctx, natsbinding.Config{URL: e.URL()})
	require.NoError(t, err)
	defer tr.Close()

	s := transport.Stream{Prefix: "ampy.prod.orders.v1", Retention: 400 * 24 * time.Hour, MaxPayload: 1 << 20, DedupeWindow: 2 * time.Minute}
	require.NoError(t, tr.EnsureStream(ctx, s))
	js, err := jetstream.New(tr.Conn())
	require.NoError(t, err)
	st, err := js.Stream(ctx, "AMPY_PROD_ORDERS_V1")
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"ampy.prod.orders.v1.>"}, info.Config.Subjects)
	assert.Equal(t, 400*24*time.Hour, info.Config.MaxAge)
	assert.Equal(t, int32(1<<20+natsbinding.HeaderAllowance), info.Config.MaxMsgSize)
	assert.Equal(t, 2*time.Minute, info.Config.Duplicates)
	assert.Equal(t, jetstream.FileStorage, info.Config.Storage)

	s.Retention = 800 * 24 * time.Hour
	require.NoError(t, tr.EnsureStream(ctx, s))
	info, err = st.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, 800*24*time.Hour, info.Config.MaxAge, "an existing stream follows the contract")
}
