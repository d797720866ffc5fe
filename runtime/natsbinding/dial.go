package natsbinding

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Importing the binding makes nats://, tls://, ws:// and wss:// bus URLs open it.
func init() { transport.Register(dial, "nats", "tls", "ws", "wss") }

type clientOptions []nats.Option

func (clientOptions) Binding() string { return "nats" }

// ClientOptions passes nats.go options (credentials, TLS) to a NATS bus; a
// Kafka bus ignores them, so a service can carry both brokers' settings.
func ClientOptions(opts ...nats.Option) transport.DialOption { return clientOptions(opts) }

func dial(ctx context.Context, cfg transport.DialConfig) (transport.Dialed, error) {
	var opts []nats.Option
	for _, o := range transport.OptionsFor[clientOptions](cfg.Options) {
		opts = append(opts, o...)
	}
	t, err := Open(ctx, Config{
		URL: cfg.URL, Name: cfg.Name, AsyncWindow: cfg.AsyncWindow, FailWhenFull: cfg.FailWhenFull,
		Options: opts, Logger: cfg.Logger,
	})
	if err != nil {
		return transport.Dialed{}, err
	}
	return transport.Dialed{Transport: t, URL: cfg.URL}, nil
}
