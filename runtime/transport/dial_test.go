package transport_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

type optA string

func (optA) Binding() string { return "a" }

type optB int

func (optB) Binding() string { return "b" }

// This test binary imports no binding: a URL of a known binding says which
// package to import, an unknown one lists what the program has, and a
// registered dialer gets its own options and only those.
func TestDialFindsTheRegisteredBinding(t *testing.T) {
	ctx := context.Background()
	_, err := transport.Dial(ctx, "nats", transport.DialConfig{URL: "nats://127.0.0.1:4222"})
	require.ErrorIs(t, err, transport.ErrNoBinding)
	assert.ErrorContains(t, err, `import _ "github.com/ampyfin/ampy-bus/runtime/natsbinding"`)
	_, err = transport.Dial(ctx, "embedded", transport.DialConfig{URL: "embedded://kafka"})
	assert.ErrorContains(t, err, `import _ "github.com/ampyfin/ampy-bus/runtime/embedded"`)

	var got []optA
	transport.Register(func(_ context.Context, cfg transport.DialConfig) (transport.Dialed, error) {
		got = transport.OptionsFor[optA](cfg.Options)
		return transport.Dialed{URL: cfg.URL}, errors.New("dialed")
	}, "test-a", "test-a2")
	_, err = transport.Dial(ctx, "test-a2", transport.DialConfig{URL: "test-a2://x", Options: []transport.DialOption{optA("1"), optB(2), optA("3")}})
	assert.EqualError(t, err, "dialed")
	assert.Equal(t, []optA{"1", "3"}, got, "a binding reads its own options, in order, and ignores the others'")

	_, err = transport.Dial(ctx, "amqp", transport.DialConfig{URL: "amqp://x"})
	require.ErrorIs(t, err, transport.ErrNoBinding)
	assert.ErrorContains(t, err, "this program has test-a://, test-a2://")
	assert.Panics(t, func() { transport.Register(nil, "test-a") }, "a scheme registered twice")
}
