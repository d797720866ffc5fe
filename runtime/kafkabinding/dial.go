package kafkabinding

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Importing the binding makes kafka://host:9092[,host2:9092] bus URLs open it.
func init() { transport.Register(dial, "kafka") }

type clientOptions []kgo.Opt

func (clientOptions) Binding() string { return "kafka" }

// ClientOptions passes franz-go options (TLS, SASL) to a Kafka bus; a NATS
// bus ignores them, so a service can carry both brokers' settings.
func ClientOptions(opts ...kgo.Opt) transport.DialOption { return clientOptions(opts) }

func dial(ctx context.Context, cfg transport.DialConfig) (transport.Dialed, error) {
	var opts []kgo.Opt
	for _, o := range transport.OptionsFor[clientOptions](cfg.Options) {
		opts = append(opts, o...)
	}
	t, err := Open(ctx, Config{
		Brokers:     strings.Split(strings.TrimPrefix(cfg.URL, "kafka://"), ","),
		AsyncWindow: cfg.AsyncWindow, FailWhenFull: cfg.FailWhenFull, Options: opts, Logger: cfg.Logger,
	})
	if err != nil {
		return transport.Dialed{}, err
	}
	return transport.Dialed{Transport: t, URL: cfg.URL}, nil
}
