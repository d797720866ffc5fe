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
	"maps"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ampyfin/ampy-bus/runtime/blob"
	"github.com/ampyfin/ampy-bus/runtime/dedupe"
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
	// ErrBadURL: the bus URL is malformed, or names a binding this program
	// does not import (it also wraps transport.ErrNoBinding then).
	ErrBadURL = errors.New("bad bus URL")
	// ErrBackpressure: the async window is full; slow down or wait.
	ErrBackpressure = transport.ErrBackpressure
	// ErrForbidden: the broker refused this identity the action; the error
	// names the subject or topic and the right it lacks.
	ErrForbidden = transport.ErrForbidden
)

// DefaultURL opens an in-process NATS JetStream server: development and
// tests, in a program that imports the embedded package.
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
	// stopBinding runs after the transport closes: it shuts down an
	// in-process broker the bus started.
	stopBinding func()
	blobs       blob.Store
	hooks       hooks
	// provision: create and update streams on first use (WithProvisioning,
	// or a broker this process started); otherwise only check them.
	provision bool

	mu      sync.Mutex
	ensured map[streamKey]*ensureOnce
	// ready holds the streams known to be there, copied on each (rare)
	// write, so the steady state of every publish reads it without a lock.
	ready  atomic.Pointer[map[streamKey]transport.Stream]
	closed bool
	// retrying counts async publishes waiting for a retry.
	retrying retries

	// dedupe is the store of every subscription given no Dedupe option:
	// one per bus, so fan-out subscriptions share its memory instead of
	// each holding DefaultDedupeCapacity marks. subs numbers the
	// subscriptions without a group, which each need their own scope in it.
	dedupe *dedupe.Memory
	subs   atomic.Uint64

	// pressures holds each watched domain's backpressure (*DomainSpec →
	// *pressure); its watchers run until stopWatch.
	pressures  sync.Map
	watchers   sync.WaitGroup
	watchCtx   context.Context
	stopWatch  context.CancelFunc
	lagPoll    time.Duration
	slowRate   int
	noLagWatch bool
}

// DefaultDedupeCapacity is how many marks (one per applied message) the
// default dedupe store of a Bus holds, shared by its subscriptions: about
// 2 MiB when full. Pass Dedupe for a persistent store or another size.
const DefaultDedupeCapacity = 1 << 16

// defaultDedupeTTL keeps a default mark well past any redelivery of its
// message: an ack lost, a long backoff, a partition moved.
const defaultDedupeTTL = time.Hour

// streamKey names a stream the bus has checked, or provisioned: by its
// domain, whose prefix in the bus's env names it, so a publish builds no
// prefix string to find it.
type streamKey struct {
	d         *DomainSpec
	provision bool
}

// ensureOnce finds or provisions one stream once; a failure is forgotten,
// so a later call tries again.
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
	dialOpts    []transport.DialOption
	hooks       []Hook
	provision   bool
	blobs       blob.Store
	failFull    bool
	lagPoll     time.Duration
	slowRate    int
	noLagWatch  bool
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

// WithDialOptions passes binding-specific settings: natsbinding.ClientOptions
// (credentials, TLS), kafkabinding.ClientOptions (TLS, SASL),
// embedded.StoreDir. Each binding takes its own and ignores the rest, so one
// service carries both brokers' settings and only the URL picks.
func WithDialOptions(opts ...transport.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithProvisioning makes the bus create a stream or topic the contract
// names when it is missing, and bring an existing one to the contract's
// limits, on first use: for the service that owns its domains, holding the
// admin right. Without it the bus only checks that the stream exists (a
// publisher's or consumer's rights suffice) and fails with ErrNotFound
// saying how to provision it. A bus on an embedded:// broker provisions.
func WithProvisioning() Option { return func(o *options) { o.provision = true } }

// WithBlobStore turns on the pointer pattern: a payload still over its
// domain's max_payload after compression is put in store and the message
// carries blob_ref, blob_hash and blob_size instead. Consumers need the same
// store to fetch it.
func WithBlobStore(store blob.Store) Option { return func(o *options) { o.blobs = store } }

// Open connects to the bus at rawURL through the binding its scheme names.
// Only the URL differs between transports; a program links the bindings it
// imports, as database/sql links its drivers:
//
//	nats://host:4222[,nats://host2:4222]   NATS JetStream    import _ ".../runtime/natsbinding"
//	kafka://host1:9092,host2:9092          Kafka             import _ ".../runtime/kafkabinding"
//	embedded://nats, embedded://kafka      in-process broker import _ ".../runtime/embedded"
//
// An empty URL is DefaultURL.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Bus, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("open bus: %w", err)
	}
	rawURL = cmp.Or(rawURL, DefaultURL)
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("open bus %q: %w: want scheme://host, such as nats://127.0.0.1:4222 or kafka://127.0.0.1:9092", rawURL, ErrBadURL)
	}
	d, err := transport.Dial(ctx, u.Scheme, transport.DialConfig{
		URL: rawURL, Name: cmp.Or(o.producer, "ampy-bus"), AsyncWindow: o.asyncWindow, FailWhenFull: o.failFull,
		Logger: o.log, Options: o.dialOpts,
	})
	if errors.Is(err, transport.ErrNoBinding) {
		return nil, fmt.Errorf("open bus: %w: %w", ErrBadURL, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open bus: %w", err)
	}
	b := newBus(d.Transport, o)
	b.url, b.stopBinding = cmp.Or(d.URL, rawURL), d.Stop
	b.provision = b.provision || d.Owned
	return b, nil
}

// NewBus runs the bus over a transport the caller opened (a binding's own
// Open, or a wrapper around one). Closing the bus closes t.
func NewBus(t transport.Transport, opts ...Option) (*Bus, error) {
	if t == nil {
		return nil, errors.New("new bus: the transport is nil")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new bus: %w", err)
	}
	return newBus(t, o), nil
}

func newOptions(opts []Option) (options, error) {
	o := options{env: "dev", log: slog.Default(), lagPoll: DefaultLagPoll, slowRate: DefaultSlowRate}
	for _, opt := range opts {
		opt(&o)
	}
	if o.runID == "" {
		o.runID = "run_" + newRunSuffix()
	}
	if (o.producer == "") != (o.source == "") {
		return o, fmt.Errorf("%w: WithProducer needs both producer (svc@host) and source (svc)", ErrNoProducer)
	}
	if _, err := newHooks(o.hooks); err != nil {
		return o, err
	}
	if o.lagPoll <= 0 {
		return o, fmt.Errorf("WithLagPoll(%s): the interval must be positive", o.lagPoll)
	}
	if o.slowRate <= 0 {
		return o, fmt.Errorf("WithSlowRate(%d): the rate must be positive", o.slowRate)
	}
	if o.asyncWindow < 0 {
		return o, fmt.Errorf("WithAsyncWindow(%d): the window must be positive (0 takes the binding's default)", o.asyncWindow)
	}
	return o, nil
}

func newBus(t transport.Transport, o options) *Bus {
	h, _ := newHooks(o.hooks) // checked in newOptions
	b := &Bus{t: t, env: o.env, producer: o.producer, source: o.source, runID: o.runID, log: o.log, blobs: o.blobs,
		hooks: h, provision: o.provision, ensured: map[streamKey]*ensureOnce{}, dedupe: dedupe.NewMemory(DefaultDedupeCapacity),
		lagPoll: o.lagPoll, slowRate: o.slowRate, noLagWatch: o.noLagWatch}
	b.watchCtx, b.stopWatch = context.WithCancel(context.Background())
	return b
}

// Env is the environment the bus publishes and subscribes in.
func (b *Bus) Env() string { return b.env }

// URL is the broker URL the bus is connected to; for an embedded broker, its
// loopback address, so other processes can join it. Empty for a bus made
// with NewBus.
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
	b.stopWatch()
	b.watchers.Wait()
	err := b.t.Close()
	if b.stopBinding != nil {
		b.stopBinding()
	}
	return err
}

// stream returns the transport stream of a domain in this bus's env. On
// first use it provisions it (WithProvisioning) or checks that it exists.
func (b *Bus) stream(ctx context.Context, d *DomainSpec) (transport.Stream, error) {
	return b.streamOf(ctx, d, b.provision)
}

func (b *Bus) streamOf(ctx context.Context, d *DomainSpec, provision bool) (transport.Stream, error) {
	if !d.allowsEnv(b.env) {
		return transport.Stream{}, fmt.Errorf("%w: env %q is not one of the contract's envs (%s)", ErrContract, b.env, strings.Join(d.Envs, ", "))
	}
	key := streamKey{d, provision}
	if ready := b.ready.Load(); ready != nil {
		// The steady state of every publish: a lookup by pointer, unlocked.
		if s, ok := (*ready)[key]; ok {
			return s, nil
		}
		// A stream this bus provisioned needs no check as well.
		if s, ok := (*ready)[streamKey{d, true}]; ok && !provision {
			return s, nil
		}
	}
	b.mu.Lock()
	e, ok := b.ensured[key]
	if !ok {
		e = &ensureOnce{s: transport.Stream{
			Prefix:       d.Prefix(b.env),
			Retention:    d.RetentionIn(b.env),
			MaxPayload:   d.MaxPayload,
			Partitions:   d.Partitions,
			Replicas:     d.Replicas,
			DedupeWindow: d.DedupeWindow,
			Subtopics:    d.Shapes(),
		}}
		b.ensured[key] = e
	}
	b.mu.Unlock()
	e.once.Do(func() {
		if provision {
			e.err = b.t.EnsureStream(ctx, e.s)
			return
		}
		e.err = b.t.CheckStream(ctx, e.s)
		if errors.Is(e.err, transport.ErrNotFound) {
			e.err = fmt.Errorf("%w: provision it with ampybusctl ensure-topic --topic %s (an identity with the admin right), or open the bus of the service that owns it with ampybus.WithProvisioning()", e.err, e.s.Prefix)
		}
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.err != nil {
		// Let a later call retry: the broker may have been down.
		if b.ensured[key] == e {
			delete(b.ensured, key)
		}
		return e.s, e.err
	}
	ready := map[streamKey]transport.Stream{key: e.s}
	if old := b.ready.Load(); old != nil {
		maps.Copy(ready, *old)
	}
	b.ready.Store(&ready)
	return e.s, nil
}

// Ensure creates or updates the streams of the given domains now, whether
// or not the bus provisions on first use: what ampybusctl ensure-topic and
// a service that owns its domains call.
func (b *Bus) Ensure(ctx context.Context, domains ...*DomainSpec) error {
	for _, d := range domains {
		if _, err := b.streamOf(ctx, d, true); err != nil {
			return fmt.Errorf("ensure %s: %w", d.Prefix(b.env), err)
		}
	}
	return nil
}
