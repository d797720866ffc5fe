// Package embedded runs real brokers inside the process, on loopback: a
// NATS JetStream server (one node or a cluster) and a Kafka cluster
// (franz-go's kfake). Importing it registers the embedded:// bus URL, and
// the NATS and Kafka bindings with it, for development, demos and tests.
// A service in production does not import it and links neither server.
package embedded

import (
	"cmp"
	"context"
	"fmt"
	"net/url"

	// The brokers started here are reached through the real bindings.
	_ "github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	_ "github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

func init() { transport.Register(dial, "embedded") }

// storeDir is the StoreDir option.
type storeDir string

func (storeDir) Binding() string { return "embedded" }

// StoreDir keeps an embedded broker's data in dir, so it survives a
// restart; without it the data lives in a temporary directory (NATS) or in
// memory (Kafka) and is gone on Close.
func StoreDir(dir string) transport.DialOption { return storeDir(dir) }

// dial starts the broker an embedded:// URL names and opens its binding;
// the broker stops when the bus closes.
func dial(ctx context.Context, cfg transport.DialConfig) (transport.Dialed, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return transport.Dialed{}, fmt.Errorf("embedded broker URL %q: %w", cfg.URL, err)
	}
	var dir string
	for _, o := range transport.OptionsFor[storeDir](cfg.Options) {
		dir = string(o)
	}
	var (
		addr, scheme string
		stop         func()
	)
	switch kind := cmp.Or(u.Host, u.Opaque); kind {
	case "nats":
		n, err := StartNATS(NATSOptions{StoreDir: dir})
		if err != nil {
			return transport.Dialed{}, err
		}
		addr, scheme, stop = n.URL(), "nats", n.Shutdown
	case "kafka":
		k, err := StartKafka(KafkaOptions{DataDir: dir})
		if err != nil {
			return transport.Dialed{}, err
		}
		addr, scheme, stop = k.URL(), "kafka", k.Shutdown
	default:
		return transport.Dialed{}, fmt.Errorf("%w: %q names no embedded broker: use embedded://nats or embedded://kafka", transport.ErrNoBinding, cfg.URL)
	}
	cfg.URL = addr
	d, err := transport.Dial(ctx, scheme, cfg)
	if err != nil {
		stop()
		return transport.Dialed{}, err
	}
	d.Owned = true
	inner := d.Stop
	d.Stop = func() {
		if inner != nil {
			inner()
		}
		stop()
	}
	return d, nil
}
