// Package loadbench is the load generator behind `ampybusctl bench`: N
// publishers and a consumer group of M members move BarBatch messages over
// the bars domain, through the generated typed API or through the raw broker
// client carrying the same envelope, and each run reports throughput,
// publish→handler latency, and what the client cost this process (CPU,
// allocations, goroutines, heap). Flag parsing and printing stay in
// internal/busctl; this package measures.
package loadbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/ampyfin/ampy-bus/generated/bars"
	"github.com/ampyfin/ampy-bus/runtime/ampybus"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
)

// Mode says which side of the bus a run measures.
type Mode string

// The modes: both sides at once, publishers alone, or a group draining a
// preloaded stream (the consumer engine against a raw consumer).
const (
	E2E     Mode = "e2e"
	Publish Mode = "publish"
	Consume Mode = "consume"
)

// Client names the code under test: the generated typed API, or the raw
// broker client (nats.go's jetstream, franz-go) writing the same envelope.
type Client string

// The two clients a comparison alternates.
const (
	Typed Client = "typed"
	Raw   Client = "raw"
)

// Config is one benchmark: the load, the broker and how to reach it.
type Config struct {
	// URL is the broker: nats://… (or tls://, ws://, wss://) or kafka://….
	// An embedded broker is started by the caller (StartChild, StartInProcess).
	URL string
	// Env is the contract env whose bars stream is used (default dev).
	Env  string
	Mode Mode
	// Publishers and Consumers are separate clients, as separate service
	// instances would be; the consumers are members of one group.
	Publishers, Consumers int
	// Concurrency is how many partition keys each consumer handles at once.
	Concurrency int
	// Fanout is how many subscriptions each consumer opens on its one
	// connection, each its own group that sees every message: one service
	// with several independent handlers of a stream (default 1).
	Fanout int
	// NoGroup subscribes outside any consumer group, one consumer reading
	// every partition: the engine without a group's partitioned delivery
	// (on NATS, a push consumer per partition).
	NoGroup bool
	// Messages is the total published per run, over Keys partition keys.
	Messages, Keys int
	// Size is the marshalled BarBatch size to reach, in bytes.
	Size int
	// Rate is total messages per second across publishers; 0 is unpaced.
	Rate float64
	// Sync waits for each publish's ack instead of publishing async.
	Sync bool
	// RawVTProto has the raw clients encode and decode with the payload's
	// generated MarshalVT and UnmarshalVT, as the typed API does, instead of
	// proto.Marshal and proto.Unmarshal as a hand-written client would: the
	// ratio then shows the typed layer's own cost, with the codec the same
	// on both sides.
	RawVTProto bool
	// Timeout bounds each run (default 10 minutes).
	Timeout time.Duration
	// OwnBroker says the broker was started for this benchmark: its bars
	// stream is purged before each run so every run starts equal.
	OwnBroker bool
	// Provision creates or updates the bars stream first (needs admin
	// rights); always done on an OwnBroker.
	Provision bool
	// Producer and Source are the envelope's producer and source headers.
	Producer, Source string
	// NATSOptions and KafkaOptions carry credentials and TLS to every
	// client, typed and raw alike.
	NATSOptions  []nats.Option
	KafkaOptions []kgo.Opt
	// BrokerCPU, when set, reads the broker's CPU time (Broker.CPU of a
	// child): runs then report the broker's CPU per message too, since a
	// client can be cheap for itself and costly for the broker.
	BrokerCPU func() (time.Duration, error)
	// ProfileDir, when set, receives a CPU profile of each run's measured
	// window: the client's, and the broker's through BrokerProfile (Broker.
	// Profile of a child), named transport-mode-client-rN.{client,broker}.pprof.
	ProfileDir    string
	BrokerProfile func(path string) (stop func(context.Context) error, err error)
	// Logger receives the typed runtime's warnings and the bench's own.
	Logger *slog.Logger
	// Progress, when set, is called about four times a second during a run.
	Progress func(Progress)
	// Observe, when set, is called with the message id of every message a
	// run counts as handled; tests use it to check ids are unique.
	Observe func(c Client, messageID string)
}

// Progress is a running run's counts, for a progress line.
type Progress struct {
	Client              Client
	Phase               string
	Published, Consumed int64
	Total               int
}

// Defaults fills what cfg leaves zero with the command's defaults.
func (cfg Config) Defaults() Config {
	cfg.Env = cmp.Or(cfg.Env, "dev")
	cfg.Mode = cmp.Or(cfg.Mode, E2E)
	cfg.Publishers = cmp.Or(cfg.Publishers, 4)
	cfg.Consumers = cmp.Or(cfg.Consumers, 1)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 1)
	cfg.Fanout = cmp.Or(cfg.Fanout, 1)
	cfg.Messages = cmp.Or(cfg.Messages, 200000)
	cfg.Keys = cmp.Or(cfg.Keys, 100)
	cfg.Size = cmp.Or(cfg.Size, 512)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Minute)
	cfg.Producer = cmp.Or(cfg.Producer, "ampybusctl-bench@local")
	cfg.Source = cmp.Or(cfg.Source, "ampybusctl-bench")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg
}

// Check reports a load the benchmark cannot run; New checks the URL too.
func (cfg Config) Check() error {
	switch {
	case cfg.Mode != E2E && cfg.Mode != Publish && cfg.Mode != Consume:
		return fmt.Errorf("mode %q: use e2e, publish or consume", cfg.Mode)
	case cfg.Publishers < 1, cfg.Consumers < 1, cfg.Concurrency < 1, cfg.Fanout < 1, cfg.Messages < 1, cfg.Keys < 1:
		return errors.New("publishers, consumers, concurrency, fanout, messages and keys must be at least 1")
	case cfg.Size < 1 || int64(cfg.Size) > bars.Domain.CompressAbove:
		return fmt.Errorf("size %d: give 1 to %d bytes (above that the bars domain gzips payloads)", cfg.Size, bars.Domain.CompressAbove)
	case cfg.NoGroup && cfg.Consumers != 1:
		return errors.New("without a group each consumer would see every message: give one consumer")
	case cfg.Rate < 0:
		return errors.New("rate must not be negative")
	}
	return nil
}

// transportOf is the broker kind a URL names.
func transportOf(u string) (string, error) {
	scheme, _, ok := strings.Cut(u, "://")
	switch {
	case !ok:
		return "", fmt.Errorf("bus URL %q: give nats://host:port or kafka://host:port", u)
	case scheme == "kafka":
		return "kafka", nil
	case scheme == "nats" || scheme == "tls" || scheme == "ws" || scheme == "wss":
		return "nats", nil
	case scheme == "embedded":
		return "", fmt.Errorf("bus URL %q: start the embedded broker with StartChild or StartInProcess and pass its URL", u)
	}
	return "", fmt.Errorf("bus URL %q: the benchmark runs on nats:// or kafka://", u)
}

// Bench runs benchmarks on one broker; runs share its stream, each with its
// own consumer group and run id, one run at a time.
type Bench struct {
	cfg       Config
	transport string
	keys      *keyspace
	prefix    string // ampy.{env}.bars.v1: the Kafka topic, and the NATS subjects' prefix
	adm       admin
	runs      int
}

// admin is what the bench does on the broker besides the load: learn the
// stream's layout, purge it between runs, remove a run's group.
type admin interface {
	purge(ctx context.Context) error
	dropGroup(ctx context.Context, group string) error
	// ready waits until the group's members pull every partition.
	ready(ctx context.Context, group string, members int) error
	close()
}

// New checks cfg, provisions the bars stream when asked (or when the broker
// is the bench's own) and connects the bench's admin client.
func New(ctx context.Context, cfg Config) (*Bench, error) {
	cfg = cfg.Defaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	kind, err := transportOf(cfg.URL)
	if err != nil {
		return nil, err
	}
	b := &Bench{cfg: cfg, transport: kind, keys: newKeyspace(cfg.Keys), prefix: bars.Domain.Prefix(cfg.Env)}
	if cfg.Provision || cfg.OwnBroker {
		ctl, err := ampybus.Open(ctx, cfg.URL, b.busOptions("ampybusctl-bench-admin", ampybus.WithProvisioning())...)
		if err != nil {
			return nil, err
		}
		err = ctl.Ensure(ctx, bars.Domain)
		_ = ctl.Close()
		if err != nil {
			return nil, fmt.Errorf("provision the bars stream: %w", err)
		}
	}
	if kind == "nats" {
		b.adm, err = newNATSAdmin(ctx, b)
	} else {
		b.adm, err = newKafkaAdmin(ctx, b)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// PayloadBytes is the marshalled size of the BarBatch the runs publish.
func (b *Bench) PayloadBytes() int {
	bt := newBatch(b.cfg.Size, b.keys.symbols[len(b.keys.symbols)-1])
	bt.set(b.keys.symbols[0], b.cfg.Messages-1)
	return proto.Size(bt.msg)
}

// Close disconnects the admin client; the broker is the caller's.
func (b *Bench) Close() error {
	b.adm.close()
	return nil
}

// busOptions opens a typed bus as a service instance named name would.
func (b *Bench) busOptions(name string, extra ...ampybus.Option) []ampybus.Option {
	return append([]ampybus.Option{
		ampybus.WithEnv(b.cfg.Env),
		ampybus.WithProducer(b.cfg.Producer, b.cfg.Source),
		ampybus.WithLogger(b.cfg.Logger.With("client", name)),
		ampybus.WithDialOptions(natsbinding.ClientOptions(b.cfg.NATSOptions...), kafkabinding.ClientOptions(b.cfg.KafkaOptions...)),
	}, extra...)
}

// Compare alternates typed and raw runs, rounds times (typed first in odd
// rounds, raw first in even ones, so neither always runs on a warmer
// broker), and returns every run.
func (b *Bench) Compare(ctx context.Context, rounds int) ([]*Result, error) {
	var out []*Result
	for i := range max(rounds, 1) {
		order := []Client{Typed, Raw}
		if i%2 == 1 {
			order = []Client{Raw, Typed}
		}
		for _, c := range order {
			r, err := b.Run(ctx, c)
			if err != nil {
				return out, fmt.Errorf("round %d, %s: %w", i+1, c, err)
			}
			r.Round = i + 1
			out = append(out, r)
		}
	}
	return out, nil
}

// pollUntil checks cond every 20 ms until it holds, giving up after limit.
func pollUntil(ctx context.Context, limit time.Duration, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
