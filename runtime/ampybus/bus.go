// Package ampybus is the runtime behind the generated publishers and
// consumers: it opens a bus from a URL, stamps the envelope, derives topics,
// and runs the consumer engine. The same code runs on every transport; only
// the URL changes.
package ampybus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/kafkabinding"
	"github.com/ampyfin/ampy-bus/runtime/natsbinding"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Errors callers branch on. Returned errors wrap them; test with errors.Is.
var (
	// ErrContract: the message breaks the contract (bad subtopic token, key
	// field empty, payload that disagrees with its topic). Nothing was published.
	ErrContract = errors.New("contract violation")
	// ErrNoProducer: the bus was opened without a producer identity, which
	// every published envelope must carry.
	ErrNoProducer = errors.New("no producer identity")
	// ErrTooLarge: the payload exceeds the domain's max_payload even compressed.
	ErrTooLarge = transport.ErrTooLarge
	// ErrUnavailable: the broker cannot be reached or did not answer in time.
	ErrUnavailable = transport.ErrUnavailable
	// ErrMaybeStored: a publish failed after the broker may have stored the
	// message. Republish with WithMessageID and the same id: a stored copy
	// makes the broker (NATS) or the consumers (Kafka) drop the repeat.
	ErrMaybeStored = transport.ErrMaybeStored
	// ErrClosed: the bus or subscription is closed.
	ErrClosed = transport.ErrClosed
	// ErrBadURL: the bus URL names no known transport.
	ErrBadURL = errors.New("bad bus URL")
	// ErrBackpressure: the async window is full; slow down or wait.
	ErrBackpressure = transport.ErrBackpressure
)

// DefaultURL opens an in-process NATS JetStream server: development and tests.
const DefaultURL = "embedded://nats"

// Bus is an open connection to the broker, with this process's identity.
// It is safe for concurrent use; open one per process and share it.
type Bus struct {
	t        transport.Transport
	env      string
	producer string
	source   string
	runID    string
	log      *slog.Logger
	url      string
	// stopEmbedded shuts down an in-process broker the bus started.
	stopEmbedded func()
	blobs        blob.Store

	mu      sync.Mutex
	ensured map[string]*ensureOnce
	closed  bool
	// retrying counts async publishes waiting for a retry.
	retrying retries
}

type ensureOnce struct {
	once sync.Once
	s    transport.Stream
	err  error
}

type options struct {
	env         string
	producer    string
	source      string
	runID       string
	log         *slog.Logger
	asyncWindow int
	natsOpts    []nats.Option
	kafkaOpts   []kgo.Opt
	storeDir    string
	blobs       blob.Store
	failFull    bool
}

// Option configures Open.
type Option func(*options)

// WithEnv selects the environment (dev, paper, prod) the topics live in; dev by default.
func WithEnv(env string) Option { return func(o *options) { o.env = env } }

// WithProducer sets who publishes: producer is the service instance
// (yfinance-go@ingest-1), source the upstream system (yfinance-go).
// Publishing without it fails with ErrNoProducer.
func WithProducer(producer, source string) Option {
	return func(o *options) { o.producer, o.source = producer, source }
}

// WithRunID sets run_id, which correlates the records of one pipeline run;
// by default each Open starts a new run.
func WithRunID(runID string) Option { return func(o *options) { o.runID = runID } }

// WithLogger sets where the bus logs reconnects, retries and dead letters.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAsyncWindow bounds async publishes awaiting their ack; when full,
// PublishAsync waits for room until its context ends.
func WithAsyncWindow(n int) Option { return func(o *options) { o.asyncWindow = n } }

// WithAsyncFailFast makes PublishAsync fail at once with ErrBackpressure
// when the async window is full, instead of waiting for room; for producers
// that would rather shed or batch than block.
func WithAsyncFailFast() Option { return func(o *options) { o.failFull = true } }

// WithNATSOptions passes nats.go options (credentials, TLS) to a nats:// bus.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) { o.natsOpts = append(o.natsOpts, opts...) }
}

// WithKafkaOptions passes franz-go options (TLS, SASL) to a kafka:// bus.
func WithKafkaOptions(opts ...kgo.Opt) Option {
	return func(o *options) { o.kafkaOpts = append(o.kafkaOpts, opts...) }
}

// WithBlobStore turns on the pointer pattern: a payload still over its
// domain's max_payload after compression is put in store and the message
// carries blob_ref, blob_hash and blob_size instead. Consumers need the same
// store to fetch it.
func WithBlobStore(store blob.Store) Option { return func(o *options) { o.blobs = store } }

// WithStoreDir keeps an embedded broker's data in dir, so it survives a restart.
func WithStoreDir(dir string) Option { return func(o *options) { o.storeDir = dir } }

// Open connects to the bus at rawURL. Only the URL differs between transports:
//
//	nats://host:4222[,nats://host2:4222]   NATS with JetStream
//	kafka://host1:9092,host2:9092          Kafka
//	embedded://nats                        an in-process JetStream server (also "")
//	embedded://kafka                       an in-process Kafka cluster (kfake)
func Open(ctx context.Context, rawURL string, opts ...Option) (*Bus, error) {
	o := options{env: "dev", log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.runID == "" {
		o.runID = "run_" + newRunSuffix()
	}
	if (o.producer == "") != (o.source == "") {
		return nil, fmt.Errorf("open bus: %w: WithProducer needs both producer (svc@host) and source (svc)", ErrNoProducer)
	}
	b := &Bus{env: o.env, producer: o.producer, source: o.source, runID: o.runID, log: o.log, blobs: o.blobs, ensured: map[string]*ensureOnce{}}
	if rawURL == "" {
		rawURL = DefaultURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open bus %q: %w: %v", rawURL, ErrBadURL, err)
	}
	t, addr, err := b.connect(ctx, u, rawURL, o)
	if err != nil {
		if b.stopEmbedded != nil {
			b.stopEmbedded()
		}
		return nil, fmt.Errorf("open bus: %w", err)
	}
	b.t, b.url = t, addr
	return b, nil
}

// connect opens the binding the URL names, starting an embedded broker first
// for embedded:// URLs.
func (b *Bus) connect(ctx context.Context, u *url.URL, rawURL string, o options) (transport.Transport, string, error) {
	scheme, addr := u.Scheme, rawURL
	if scheme == "embedded" {
		switch kind := cmp.Or(u.Host, u.Opaque); kind {
		case "nats":
			e, err := natsbinding.StartEmbedded(natsbinding.EmbeddedOptions{StoreDir: o.storeDir})
			if err != nil {
				return nil, "", err
			}
			b.stopEmbedded, scheme, addr = e.Shutdown, "nats", e.URL()
		case "kafka":
			e, err := kafkabinding.StartEmbedded(kafkabinding.EmbeddedOptions{DataDir: o.storeDir})
			if err != nil {
				return nil, "", err
			}
			b.stopEmbedded, scheme, addr = e.Shutdown, "kafka", e.URL()
		default:
			return nil, "", fmt.Errorf("%w %q: the embedded brokers are embedded://nats and embedded://kafka", ErrBadURL, rawURL)
		}
	}
	switch scheme {
	case "nats", "tls", "ws", "wss":
		t, err := natsbinding.Open(ctx, natsbinding.Config{
			URL: addr, Name: cmp.Or(o.producer, "ampy-bus"), AsyncWindow: o.asyncWindow, FailWhenFull: o.failFull,
			Options: o.natsOpts, Logger: o.log,
		})
		return t, addr, err
	case "kafka":
		brokers := strings.Split(strings.TrimPrefix(addr, "kafka://"), ",")
		t, err := kafkabinding.Open(ctx, kafkabinding.Config{
			Brokers: brokers, AsyncWindow: o.asyncWindow, FailWhenFull: o.failFull, Options: o.kafkaOpts, Logger: o.log,
		})
		return t, addr, err
	}
	return nil, "", fmt.Errorf("%w %q: use nats://host:4222, kafka://host:9092[,host2:9092], embedded://nats or embedded://kafka", ErrBadURL, rawURL)
}

// Env is the environment the bus publishes and subscribes in.
func (b *Bus) Env() string { return b.env }

// URL is the broker URL the bus is connected to; for an embedded broker, its
// loopback address, so other processes can join it.
func (b *Bus) URL() string { return b.url }

// Transport exposes the binding for tools that operate on the broker itself.
func (b *Bus) Transport() transport.Transport { return b.t }

// Identity returns the producer, source and run id stamped on every message.
func (b *Bus) Identity() (producer, source, runID string) { return b.producer, b.source, b.runID }

// Flush waits until every async publish so far has been acknowledged or failed.
func (b *Bus) Flush(ctx context.Context) error {
	if err := b.t.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	// Publishes being retried complete after the transport's flush.
	select {
	case <-b.retrying.idle():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush: async publishes still being retried: %w", ctx.Err())
	}
}

// Close flushes pending async publishes, closes the connection and stops an
// embedded broker. Subscriptions should be stopped first.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	err := b.t.Close()
	if b.stopEmbedded != nil {
		b.stopEmbedded()
	}
	return err
}

// stream returns the transport stream of a domain in this bus's env, creating
// or updating it on first use so its limits follow the contract.
func (b *Bus) stream(ctx context.Context, d *DomainSpec) (transport.Stream, error) {
	if !d.allowsEnv(b.env) {
		return transport.Stream{}, fmt.Errorf("%w: env %q is not one of the contract's envs (%s)", ErrContract, b.env, strings.Join(d.Envs, ", "))
	}
	prefix := d.Prefix(b.env)
	b.mu.Lock()
	e, ok := b.ensured[prefix]
	if !ok {
		e = &ensureOnce{s: transport.Stream{
			Prefix:       prefix,
			Retention:    d.Retention,
			MaxPayload:   d.MaxPayload,
			Partitions:   d.Partitions,
			Replicas:     d.Replicas,
			DedupeWindow: d.DedupeWindow,
			Subtopics:    d.Shapes(),
		}}
		b.ensured[prefix] = e
	}
	b.mu.Unlock()
	e.once.Do(func() { e.err = b.t.EnsureStream(ctx, e.s) })
	if e.err != nil {
		// Let a later call retry: the broker may have been down.
		b.mu.Lock()
		if b.ensured[prefix] == e {
			delete(b.ensured, prefix)
		}
		b.mu.Unlock()
		return e.s, e.err
	}
	return e.s, nil
}

// Ensure creates or updates the streams of the given domains now, rather
// than on first use.
func (b *Bus) Ensure(ctx context.Context, domains ...*DomainSpec) error {
	for _, d := range domains {
		if _, err := b.stream(ctx, d); err != nil {
			return fmt.Errorf("ensure %s: %w", d.Prefix(b.env), err)
		}
	}
	return nil
}
