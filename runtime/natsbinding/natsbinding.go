// Package natsbinding carries the bus over NATS JetStream (nats.go and its
// jetstream API): one stream per env and domain, Nats-Msg-Id for publish
// dedupe, a push consumer per partition for consumer groups (group.go) and
// pull consumers otherwise, and settlement only when the caller says so.
package natsbinding

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ampyfin/ampy-bus/runtime/certfiles"
	"github.com/ampyfin/ampy-bus/runtime/envelope"
	"github.com/ampyfin/ampy-bus/runtime/transport"
)

// Config says how to reach the NATS server.
type Config struct {
	// URL is one or more comma-separated nats:// URLs.
	URL string
	// Name identifies the connection in server monitoring.
	Name string
	// AsyncWindow bounds PublishAsync messages awaiting their ack (default 4096).
	AsyncWindow int
	// FailWhenFull makes PublishAsync fail at once with ErrBackpressure when
	// the window is full, instead of waiting for room.
	FailWhenFull bool
	// Options are extra nats.go options (credentials, TLS).
	Options []nats.Option
	Logger  *slog.Logger
}

// Transport is the JetStream binding; it implements transport.Transport.
type Transport struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	window *transport.Window
	// inflight completes async publishes from nats.go's ack handlers.
	inflight *inflight
	// done closes when Close begins: no new async publishes are taken.
	done chan struct{}
	// opened is the origin of clock, which times async acks; unswept
	// stops the sweeper of unanswered ones.
	opened  time.Time
	unswept chan struct{}

	mu      sync.Mutex
	streams map[string]jetstream.Stream
	// routes is how publishes reach each ensured stream: its partition
	// count as the broker holds it, and the publish options naming it.
	routes map[string]*route

	// closeMu orders async publishes against Close: senders hold it shared,
	// Close exclusively, so none registers after Close began waiting.
	closeMu sync.RWMutex
	closed  bool
	// denials fails operations the server refuses at once.
	denials *denials
}

var _ transport.Transport = (*Transport)(nil)

// Open connects and checks that the server runs JetStream.
func Open(ctx context.Context, cfg Config) (*Transport, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	window := cfg.AsyncWindow
	if window <= 0 {
		window = 4096
	}
	wnd := transport.NewWindow(window, cfg.FailWhenFull)
	pending := newInflight(wnd, "")
	refusals := &denials{async: pending.refused}
	opts := append([]nats.Option{
		nats.Name(cmp.Or(cfg.Name, "ampy-bus")),
		// Replies come back on the service's own inbox, which its generated
		// permissions let it read (see Rights).
		nats.CustomInboxPrefix(InboxPrefix(ServiceOf(cmp.Or(cfg.Name, "ampy-bus")))),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// A dead or blackholed connection is noticed within about 6s (the
		// default is minutes), and the client moves to another server.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected; reconnecting", "url", cfg.URL, "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A refusal fails its operation; the rest are worth a line.
			if !refusals.refused(err) {
				log.Warn("nats error", "err", err)
			}
		}),
	}, cfg.Options...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, connectErr(cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ictx, w, release := refusals.guard(ctx, "$JS.API.INFO")
	_, err = js.AccountInfo(ictx)
	release()
	if err = forbidden(w, err); err != nil {
		nc.Close()
		if errors.Is(err, transport.ErrForbidden) {
			return nil, fmt.Errorf("NATS server at %s: %w", cfg.URL, err)
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return nil, fmt.Errorf("NATS server at %s has no JetStream: %w: start it with nats-server -js (or jetstream {} in its config)", cfg.URL, transport.ErrUnavailable)
		}
		return nil, fmt.Errorf("NATS server at %s did not answer a JetStream request: %w: %v (start it with -js)", cfg.URL, transport.ErrUnavailable, err)
	}
	// Async publishes are answered on one wildcard subscription.
	pending.prefix = nc.NewInbox() + "."
	if _, err := nc.Subscribe(pending.prefix+"*", pending.reply); err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS server at %s: subscribe to publish acks: %w", cfg.URL, mapErr(err))
	}
	t := &Transport{
		nc: nc, js: js, log: log, denials: refusals,
		window: wnd, inflight: pending, opened: time.Now(), unswept: make(chan struct{}),
		done:    make(chan struct{}),
		streams: map[string]jetstream.Stream{},
		routes:  map[string]*route{},
	}
	go t.sweepAsync()
	return t, nil
}

// Name implements transport.Transport.
func (t *Transport) Name() string { return "nats" }

// Conn exposes the underlying connection for tools that need raw access.
func (t *Transport) Conn() *nats.Conn { return t.nc }

// StreamName is the JetStream stream that holds a topic prefix:
// ampy.prod.bars.v1 → AMPY_PROD_BARS_V1 (stream names cannot contain dots).
func StreamName(prefix string) string {
	return strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(prefix))
}

// route is what a publish to one stream needs, computed once per stream.
type route struct {
	partitions int
	// stream is the name every publish expects to land in.
	stream string
}

// HeaderAllowance is the room kept above a domain's max payload for headers;
// JetStream rejects headers over 64 KiB anyway.
const HeaderAllowance = 64 << 10

// stream returns the stream of s, looking it up once when this process did
// not ensure it.
func (t *Transport) stream(ctx context.Context, s transport.Stream) (jetstream.Stream, error) {
	t.mu.Lock()
	st, ok := t.streams[s.Prefix]
	t.mu.Unlock()
	if ok {
		return st, nil
	}
	gctx, w, release := t.denials.guard(ctx, "$JS.API.STREAM.")
	st, err := t.js.Stream(gctx, StreamName(s.Prefix))
	release()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName(s.Prefix), mapErr(forbidden(w, err)))
	}
	return st, t.ensured(s.Prefix, st)
}

// toNats builds the stored message: the topic with its key's partition
// token, the envelope as headers, and the broker dedupe id. Every header's
// one-value slice shares one backing array: a message costs a map and one
// array, not a slice per header.
func toNats(r *route, m *transport.Message) *nats.Msg {
	n := m.Headers.Count() + 2
	h := make(nats.Header, n)
	vals := make([]string, 0, n)
	m.Headers.Each(func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	})
	// JetStream drops a message id it has stored within the stream's duplicate window.
	id := m.Headers.MessageID
	if m.DedupeID != "" {
		id = m.DedupeID
	}
	vals = append(vals, id)
	h[jetstream.MsgIDHeader] = vals[len(vals)-1 : len(vals) : len(vals)]
	// The server refuses a message that would land in another stream.
	vals = append(vals, r.stream)
	h[jetstream.ExpectedStreamHeader] = vals[len(vals)-1 : len(vals) : len(vals)]
	return &nats.Msg{Subject: Subject(m.Topic, m.Headers.PartitionKey, r.partitions), Header: h, Data: m.Payload}
}

// Publish implements transport.Transport.
func (t *Transport) Publish(ctx context.Context, s transport.Stream, m *transport.Message) (transport.PublishAck, error) {
	r, err := t.route(ctx, s)
	if err != nil {
		return transport.PublishAck{}, err
	}
	msg := toNats(r, m)
	gctx, w, release := t.denials.guard(ctx, msg.Subject)
	ack, err := t.js.PublishMsg(gctx, msg)
	release()
	if ferr := forbidden(w, err); ferr != err {
		return transport.PublishAck{}, ferr
	}
	if err != nil {
		return transport.PublishAck{}, publishErr(err)
	}
	return transport.PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// mapErr wraps nats errors in the transport's sentinels so callers can branch.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrMaxPayload), strings.Contains(err.Error(), "message size exceeds maximum"):
		return fmt.Errorf("%w: %v (raise max_payload on the server, see templates/nats/nats-server.conf)", transport.ErrTooLarge, err)
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("%w: %v", transport.ErrNotFound, err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrMsgIteratorClosed):
		return fmt.Errorf("%w: %v", transport.ErrClosed, err)
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrStaleConnection):
		return fmt.Errorf("%w: %w", transport.ErrUnavailable, err)
	}
	return err
}

// publishErr classifies a publish failure. No responders means no stream
// leader answered (an election, a node down): the message was not stored.
// A timeout or a connection lost after sending means it may have been.
func publishErr(err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return fmt.Errorf("%w: no stream leader answered: %w", transport.ErrUnavailable, err)
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrStaleConnection):
		return fmt.Errorf("%w: %w: %w", transport.ErrUnavailable, transport.ErrMaybeStored, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", transport.ErrMaybeStored, err)
	}
	return mapErr(err)
}

// isNatsHeader reports headers JetStream itself sets (Nats-Msg-Id, Nats-Expected-Stream).
func isNatsHeader(k string) bool { return strings.HasPrefix(k, "Nats-") }

// parseHeaders decodes a received message's envelope.
func parseHeaders(h nats.Header) (envelope.Headers, error) {
	var buf [24]string
	keys := buf[:0]
	repeated := false
	for k, v := range h {
		if !isNatsHeader(k) {
			keys = append(keys, k)
			repeated = repeated || len(v) > 1
		}
	}
	env, err := envelope.Parse(keys, h.Get)
	if err == nil && !repeated {
		return env, nil
	}
	// A bad message: read again in sorted order, so its dlq_reason reads
	// the same each time.
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		if n := len(h[k]); n > 1 {
			errs = append(errs, envelope.Repeated(k, n))
		}
	}
	env, err = envelope.Parse(keys, h.Get)
	return env, errors.Join(append(errs, err)...)
}

// route is how publishes reach s, looking the stream up once when this
// process did not ensure it.
func (t *Transport) route(ctx context.Context, s transport.Stream) (*route, error) {
	t.mu.Lock()
	r, ok := t.routes[s.Prefix]
	t.mu.Unlock()
	if ok {
		return r, nil
	}
	if _, err := t.stream(ctx, s); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.routes[s.Prefix], nil
}

// Partitions is the partition count of an ensured stream as the broker holds
// it (1 before the stream is ensured).
func (t *Transport) Partitions(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.routes[prefix]; ok {
		return max(r.partitions, 1)
	}
	return 1
}

// connectErr says why a connection failed and what to do: credentials and
// certificates are the operator's to fix, a server that is not there is
// worth retrying.
func connectErr(url string, err error) error {
	if fix := certfiles.Explain(err); fix != "" {
		return fmt.Errorf("connect to NATS at %s: %w: %v (%s)", url, transport.ErrForbidden, err, fix)
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return fmt.Errorf("connect to NATS at %s: %w: authentication failed: %v (check the user and password, the .creds or nkey file, or the client certificate the server maps to a user)", url, transport.ErrForbidden, err)
	case errors.Is(err, nats.ErrTLS):
		// The server ended the connection during or right after the
		// handshake: with TLS 1.3 a missing or refused client certificate
		// shows only this way.
		return fmt.Errorf("connect to NATS at %s: %w: the TLS handshake failed: %v (a server that verifies clients needs a client certificate: pass --tls-cert and --tls-key; check that the CA signs it)", url, transport.ErrForbidden, err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Errorf("connect to NATS at %s: %w: the server requires TLS: use a tls:// URL or pass --tls-ca", url, transport.ErrForbidden)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("connect to NATS at %s: %w: the server does not speak TLS: use a nats:// URL without TLS options", url, transport.ErrForbidden)
	}
	return fmt.Errorf("connect to NATS at %s: %w: %v (is nats-server running there with JetStream enabled, -js?)", url, transport.ErrUnavailable, err)
}
