// Package ampybus is the runtime behind the generated publishers and
// consumers: it opens a bus from a URL, stamps the envelope, derives topics,
// and runs the consumer engine. The same code runs on every transport; only
// the URL changes.
package ampybus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

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
	// ErrUnavailable: the broker cannot be reached.
	ErrUnavailable = transport.ErrUnavailable
	// ErrClosed: the bus or subscription is closed.
	ErrClosed = transport.ErrClosed
	// ErrBadURL: the bus URL names no known transport.
	ErrBadURL = errors.New("bad bus URL")
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
	embedded *natsbinding.Embedded

	mu      sync.Mutex
	ensured map[string]*ensureOnce
	closed  bool
}

type ensureOnce struct {
	once sync.Once
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
	storeDir    string
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

// WithNATSOptions passes nats.go options (credentials, TLS) to a nats:// bus.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) { o.natsOpts = append(o.natsOpts, opts...) }
}

// WithStoreDir keeps an embedded broker's data in dir, so it survives a restart.
func WithStoreDir(dir string) Option { return func(o *options) { o.storeDir = dir } }

// Open connects to the bus at rawURL:
//
//	nats://host:4222[,nats://host2:4222]   NATS with JetStream
//	embedded://nats                        an in-process JetStream server (also "")
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
	b := &Bus{env: o.env, producer: o.producer, source: o.source, runID: o.runID, log: o.log, ensured: map[string]*ensureOnce{}}
	if rawURL == "" {
		rawURL = DefaultURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open bus %q: %w: %v", rawURL, ErrBadURL, err)
	}
	natsURL := rawURL
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	case "embedded":
		if u.Host != "nats" && u.Opaque != "nats" {
			return nil, fmt.Errorf("open bus %q: %w: the embedded broker is embedded://nats", rawURL, ErrBadURL)
		}
		e, err := natsbinding.StartEmbedded(natsbinding.EmbeddedOptions{StoreDir: o.storeDir})
		if err != nil {
			return nil, fmt.Errorf("open bus %q: %w", rawURL, err)
		}
		b.embedded = e
		natsURL = e.URL()
	default:
		return nil, fmt.Errorf("open bus %q: %w: use nats://host:4222 or embedded://nats", rawURL, ErrBadURL)
	}
	t, err := natsbinding.Open(ctx, natsbinding.Config{
		URL: natsURL, Name: orDefault(o.producer, "ampy-bus"), AsyncWindow: o.asyncWindow,
		Options: o.natsOpts, Logger: o.log,
	})
	if err != nil {
		if b.embedded != nil {
			b.embedded.Shutdown()
		}
		return nil, fmt.Errorf("open bus: %w", err)
	}
	b.t, b.url = t, natsURL
	return b, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
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
	return nil
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
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
	return err
}

// stream returns the transport stream of a domain in this bus's env, creating
// or updating it on first use so its limits follow the contract.
func (b *Bus) stream(ctx context.Context, d *DomainSpec) (transport.Stream, error) {
	if !d.allowsEnv(b.env) {
		return transport.Stream{}, fmt.Errorf("%w: env %q is not one of the contract's envs (%s)", ErrContract, b.env, strings.Join(d.Envs, ", "))
	}
	s := transport.Stream{
		Prefix:       d.Prefix(b.env),
		Retention:    d.Retention,
		MaxPayload:   d.MaxPayload,
		Partitions:   d.Partitions,
		DedupeWindow: d.DedupeWindow,
	}
	b.mu.Lock()
	e, ok := b.ensured[s.Prefix]
	if !ok {
		e = &ensureOnce{}
		b.ensured[s.Prefix] = e
	}
	b.mu.Unlock()
	e.once.Do(func() { e.err = b.t.EnsureStream(ctx, s) })
	if e.err != nil {
		// Let a later call retry: the broker may have been down.
		b.mu.Lock()
		if b.ensured[s.Prefix] == e {
			delete(b.ensured, s.Prefix)
		}
		b.mu.Unlock()
		return s, e.err
	}
	return s, nil
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
